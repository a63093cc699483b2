"""WebSocketTransport against a real websockets server: what reaches the client, and invalid UTF-8."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from kurento.transport import WebSocketTransport

pytestmark = pytest.mark.timeout(30)


class FrameServer:
    """Sends each client the given frames (bytes as text frames, unchecked), then waits for its close."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.close_codes: list[int | None] = []
        self.closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def _handler(self, websocket: ServerConnection) -> None:
        for frame in self.frames:
            await websocket.send(frame, text=True)  # websockets sends bytes as a text frame as they are
        await websocket.wait_closed()
        self.close_codes.append(websocket.close_code)
        self.closed.set()

    async def _start(self) -> Any:
        server = await serve(self._handler, "127.0.0.1", 0)
        self.port = next(iter(server.sockets)).getsockname()[1]
        return server

    def __enter__(self) -> FrameServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        asyncio.run_coroutine_threadsafe(self._server.wait_closed(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def received() -> Iterator[tuple[list[str], threading.Event]]:
    yield [], threading.Event()


def test_utf8_is_checked_by_our_decode_and_invalid_text_fails_the_connection(
    received: tuple[list[str], threading.Event],
) -> None:
    messages, closed = received
    good = '{"jsonrpc":"2.0","method":"onEvent","params":{"value":"caf\u00e9"}}'.encode()
    with FrameServer([good, b'{"jsonrpc":"2.0","id":1,"result":{"value":"\xff\xfe"}}', good]) as server:
        transport = WebSocketTransport.open(
            f"ws://127.0.0.1:{server.port}/", messages.append, lambda _t: closed.set(), connect_timeout=5
        )
        # websocket-client's own (pure-Python) check is off: the frame reaches our decode.
        assert transport._ws.frame_buffer.skip_utf8_validation is True
        assert closed.wait(5) and server.closed.wait(5)
    # The valid frame arrived decoded; the invalid one closed the connection with 1007, and
    # nothing after it was delivered.
    assert messages == [good.decode()]
    assert server.close_codes == [1007] and transport.closed
