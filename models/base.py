"""The base of every document: its collection is in the database bound right now.

MongoEngine caches one collection per document class; ours are cached per database alias
(models.connection), so two apps with different databases in one process each reach their own.
"""

from __future__ import annotations

from typing import Any

import mongoengine
from mongoengine.connection import get_db
from pymongo.collection import Collection
from pymongo.database import Database

from models.connection import current_alias


class Document(mongoengine.Document):
    meta: dict[str, Any] = {"abstract": True}

    @classmethod
    def _get_db(cls) -> Database[Any]:
        return get_db(current_alias())

    @classmethod
    def _get_collection(cls) -> Collection[Any]:
        alias = current_alias()
        collections: dict[str, Collection[Any]] | None = cls.__dict__.get("_collections_by_alias")
        if collections is None:
            collections = {}
            cls._collections_by_alias = collections
        collection = collections.get(alias)
        if collection is None:
            collection = get_db(alias)[cls._get_collection_name()]
            collections[alias] = collection  # before ensure_indexes, which asks for it again
            if cls._meta.get("auto_create_index", True):
                cls.ensure_indexes()
        return collection
