"""Steps several scenarios share."""

from __future__ import annotations

import time

from bench.protocol import Client


def connect_and_join(client: Client) -> float:
    """Everything a newcomer does until the system confirmed its join: ms."""
    started = time.perf_counter()
    client.connect()
    return (time.perf_counter() - started) * 1000 + client.join()


def leave_all(clients: list[Client]) -> None:
    for client in clients:
        client.leave()
        client.stop()
