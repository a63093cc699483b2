"""Connections to MongoDB, one per database URI, and which one the models use right now.

A process usually serves one Settings, whose database is the process default (`connect_db`).
Two apps with different settings in one process (tests, an embedding application) each bind
their own database around their work (`bound_to`): the binding is a context variable, so it
follows each thread and each gevent greenlet (one per request). Connections are lazy so that
forked worker processes each open their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import mongoengine
from mongoengine.connection import get_db
from pymongo.database import Database

from settings import Settings

_bound: ContextVar[str | None] = ContextVar("signaling_database", default=None)
_process_default = mongoengine.DEFAULT_CONNECTION_NAME
_registered: dict[str, str] = {}  # alias -> URI


def database_alias(settings: Settings) -> str:
    return f"signaling:{settings.mongodb_uri}"


def connect_db(settings: Settings, *, process_default: bool = True) -> str:
    """Registers the settings' database (once per URI) and returns its alias; by default it also
    becomes what code outside any binding uses."""
    global _process_default
    alias = database_alias(settings)
    if alias not in _registered:
        # connect=False: pymongo must not open sockets before a fork (Celery, gunicorn).
        mongoengine.register_connection(
            alias,
            host=settings.mongodb_uri,
            connect=False,
            uuidRepresentation="standard",
            # Bounded waits: a paused or unreachable database makes a request answer 503
            # (pymongo's ConnectionFailure), never hang.
            serverSelectionTimeoutMS=int(settings.mongodb_server_selection_timeout_s * 1000),
            socketTimeoutMS=int(settings.mongodb_socket_timeout_s * 1000),
            connectTimeoutMS=int(settings.mongodb_server_selection_timeout_s * 1000),
            tz_aware=True,
            # An acknowledged write survives the loss of the primary: pinned here, whatever the URI says.
            w="majority",
        )
        _registered[alias] = settings.mongodb_uri
    if process_default:
        _process_default = alias
    return alias


def current_alias() -> str:
    return _bound.get() or _process_default


@contextlib.contextmanager
def bound_to(alias: str) -> Iterator[None]:
    """The models use this database inside the block (this thread or greenlet only)."""
    token = _bound.set(alias)
    try:
        yield
    finally:
        _bound.reset(token)


def current_db() -> Database[Any]:
    return get_db(current_alias())


def ping_db() -> bool:
    try:
        current_db().command("ping")
        return True
    except Exception:
        return False
