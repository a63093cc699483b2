"""Pooled broker connections for short administrative calls (declare, bind, delete)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from kombu import Connection
from kombu.pools import connections

from settings import Settings

if TYPE_CHECKING:
    from kombu.transport.virtual import Channel

_connections: dict[str, Connection] = {}


def _connection(settings: Settings) -> Connection:
    if settings.rabbitmq_url not in _connections:
        _connections[settings.rabbitmq_url] = Connection(settings.rabbitmq_url)
    return _connections[settings.rabbitmq_url]


@contextmanager
def broker_channel(settings: Settings) -> Iterator[Channel]:
    with connections[_connection(settings)].acquire(block=True, timeout=10) as conn:
        try:
            conn.ensure_connection(max_retries=2)
            yield conn.default_channel
        except Exception:
            conn.collect()  # a broken connection must not go back to the pool
            raise


def broker_reachable(settings: Settings) -> bool:
    try:
        with Connection(settings.rabbitmq_url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            return True
    except Exception:
        return False
