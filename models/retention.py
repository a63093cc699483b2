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


def ttl_of(document: type[Document], field: str) -> tuple[str, int | None] | None:
    """(name, expireAfterSeconds) of the single-field index on `field`, None without one. Found by
    its key: nx-27017 names indexes its own way."""
    for name, info in document._get_collection().index_information().items():
        if [tuple(part) for part in info.get("key", [])] == [(field, 1)]:
            return name, info.get("expireAfterSeconds")
    return None


def ensure_ttl_index(document: type[Document], field: str, seconds: int) -> None:
    collection = document._get_collection()
    existing = ttl_of(document, field)
    if existing is None:
        collection.create_index([(field, 1)], name=f"{field}_ttl", expireAfterSeconds=int(seconds))
        return
    name, current = existing
    if current == int(seconds):
        return
    try:
        collection.database.command(
            "collMod", collection.name, index={"name": name, "expireAfterSeconds": int(seconds)}
        )
    except OperationFailure as exc:
        # A server without collMod: make the index again with the new lifetime.
        log.info("TTL index %s.%s: %s; making it again", collection.name, name, exc)
        collection.drop_index(name)
        collection.create_index([(field, 1)], name=f"{field}_ttl", expireAfterSeconds=int(seconds))
