"""TTL indexes whose lifetime is a setting.

MongoDB deletes a document once the date in a TTL-indexed field is `expireAfterSeconds` old
(its TTL monitor runs every 60 s). The lifetime is a setting (IDEMPOTENCY_TTL_S, RETENTION_S), so
these indexes are made at run time by the leading worker rather than declared in a document's
meta, and changed in place (`collMod`) when the setting changes. The nx-27017 stand-in stores
TTL indexes but never applies them: the leading worker's sweep (media_tasks.lifetimes) deletes
the same documents, so the lifetimes hold on both.
"""

from __future__ import annotations

import logging

from pymongo.errors import OperationFailure

from models.base import Document

log = logging.getLogger(__name__)


def ensure_ttl_index(document: type[Document], field: str, seconds: int) -> None:
    collection = document._get_collection()
    name = f"{field}_ttl"
    try:
        collection.create_index([(field, 1)], name=name, expireAfterSeconds=int(seconds))
        return
    except OperationFailure as exc:
        log.info("TTL index %s.%s: %s; changing it in place", collection.name, name, exc)
    try:
        collection.database.command(
            "collMod", collection.name, index={"name": name, "expireAfterSeconds": int(seconds)}
        )
    except OperationFailure:
        # A server without collMod: make the index again with the new lifetime.
        collection.drop_index(name)
        collection.create_index([(field, 1)], name=name, expireAfterSeconds=int(seconds))
