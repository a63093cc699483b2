"""`python -m kms_emulator --port 8888 --mode signaling|media` serves ws://HOST:PORT/kurento."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from kms_emulator.server import EmulatorConfig, MediaBackend, run_server


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    parser = argparse.ArgumentParser(prog="python -m kms_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--path", default="kurento", help="websocket path, without the leading slash")
    parser.add_argument("--mode", choices=("media", "signaling"), default="signaling")
    parser.add_argument("--memory-offset-kib", type=int, default=0, help="added to getUsedMemory's real RSS")
    parser.add_argument("--gc-period", type=float, default=240.0, help="session GC period in seconds")
    parser.add_argument("--request-cache-seconds", type=float, default=20.0)
    parser.add_argument(
        "--test-control",
        action="store_true",
        help="also serve the test-only control socket on /_emulator/control "
        "(drop client sockets, inspect sessions and endpoints)",
    )
    args = parser.parse_args(argv)
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        path=args.path,
        mode=args.mode,
        memory_offset_kib=args.memory_offset_kib,
        gc_period=args.gc_period,
        request_cache_seconds=args.request_cache_seconds,
        test_control=args.test_control,
    )


def create_backend(mode: str) -> MediaBackend:
    """Pick the media backend for --mode; must run inside the event loop."""
    if mode == "signaling":
        from kms_emulator.signaling import SignalingBackend

        return SignalingBackend()
    try:
        from kms_emulator.media import AiortcBackend
    except ImportError as error:
        raise SystemExit(f"--mode media needs kms_emulator/media.py (AiortcBackend), not available: {error}") from error
    return AiortcBackend()


async def main(config: EmulatorConfig) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)
    ready: asyncio.Future[int] = loop.create_future()
    task = loop.create_task(run_server(config, create_backend(config.mode), ready, stop))
    started: set[asyncio.Future[Any]] = {task, ready}
    await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        port = ready.result()
        print(f"kms_emulator listening on ws://{config.host}:{port}/{config.path} mode={config.mode}", flush=True)
    await task


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(parse_args()))
