"""Connection to MongoDB; lazy so that forked worker processes each open their own."""

from __future__ import annotations

import mongoengine

from settings import Settings


def connect_db(settings: Settings) -> None:
    # connect=False: pymongo must not open sockets before a fork (Celery, gunicorn).
    mongoengine.disconnect()
    mongoengine.connect(
        host=settings.mongodb_uri,
        connect=False,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=5000,
        tz_aware=True,
    )


def ping_db() -> bool:
    try:
        mongoengine.get_db().command("ping")
        return True
    except Exception:
        return False
