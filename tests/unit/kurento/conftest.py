"""The real KMS emulator, in this process, for the client's unit tests (tests.support.emulator).

What the client tests need beyond KMS's protocol (the requests as sent, dropped sockets, a
request never answered, an event on demand) is the emulator's test control (kms_emulator.control).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.emulator import InProcessEmulator

# Added to getUsedMemory, so a test can tell the emulator's answer from any other number.
MEMORY_OFFSET_KIB = 10**9


@pytest.fixture
def kms_factory() -> Iterator[Callable[[int], InProcessEmulator]]:
    """Starts more emulators, e.g. a replacement on the port of a stopped one."""
    servers: list[InProcessEmulator] = []

    def start(port: int = 0) -> InProcessEmulator:
        server = InProcessEmulator("signaling", port=port, memory_offset_kib=MEMORY_OFFSET_KIB).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def kms(kms_factory: Callable[[int], InProcessEmulator]) -> InProcessEmulator:
    return kms_factory(0)
