"""get_client: one client per URL per process, thread-safe, rebuilt after fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from kurento import KurentoClient, get_client, pool


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    pool.close_all()
    yield
    pool.close_all()


def test_one_client_per_url() -> None:
    first = get_client("ws://127.0.0.1:1/kurento")
    assert isinstance(first, KurentoClient)
    assert get_client("ws://127.0.0.1:1/kurento") is first
    assert get_client("ws://127.0.0.1:2/kurento") is not first


def test_concurrent_callers_share_one_client() -> None:
    clients: list[KurentoClient] = []
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        clients.append(get_client("ws://127.0.0.1:3/kurento"))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients) == 20 and len({id(c) for c in clients}) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_client() -> None:
    parent_client = get_client("ws://127.0.0.1:4/kurento")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether the pool handed back the parent's object
        try:
            fresh = get_client("ws://127.0.0.1:4/kurento")
            same_again = get_client("ws://127.0.0.1:4/kurento") is fresh
            os.write(write_end, b"ok" if fresh is not parent_client and same_again else b"shared")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 16)
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert get_client("ws://127.0.0.1:4/kurento") is parent_client
