"""The one way tests start a KMS emulator: a subprocess (`EmulatorProcess`) or in this process
(`InProcessEmulator`, for unit tests: no process start-up, and its state is at hand).

Both take the emulator's own options (mode, port, host, test control, memory offset). The
subprocess is spawned through `signaling_cli.processes`, the launcher `make run` uses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kms_emulator.__main__ import create_backend
from kms_emulator.control import run_command
from kms_emulator.server import Emulator, EmulatorConfig, run_server
from signaling_cli import processes

START_TIMEOUT_S = 30.0


class EmulatorProcess:
    """`python -m kms_emulator` on a fixed port, restartable there (a media server coming back)."""

    def __init__(
        self,
        log_dir: Path,
        mode: str = "signaling",
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        test_control: bool = False,
        memory_offset_kib: int = 0,
        name: str = "kms",
        extra_args: tuple[str, ...] = (),
        command: list[str] | None = None,
        netns: str | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.mode = mode
        self.port = port or processes.free_port()
        self.host = host
        self.test_control = test_control
        self.memory_offset_kib = memory_offset_kib
        self.name = name
        self.extra_args = extra_args
        # Another server's command line in place of the emulator's ({port} is substituted).
        self.command = command
        self.netns = netns  # run inside this network namespace (`ip netns exec`: same pid)
        self.process: processes.ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/kurento"

    def argv(self) -> list[str]:
        if self.command is not None:
            return [part.format(port=self.port) for part in self.command]
        argv = [*(["ip", "netns", "exec", self.netns] if self.netns else [])]
        argv += [processes.PYTHON, "-m", "kms_emulator", "--host", self.host, "--port", str(self.port)]
        argv += ["--mode", self.mode]
        if self.test_control:
            argv.append("--test-control")
        if self.memory_offset_kib:
            argv += ["--memory-offset-kib", str(self.memory_offset_kib)]
        return argv + list(self.extra_args)

    def start(self) -> EmulatorProcess:
        self.process = processes.spawn(self.name, self.argv(), {}, self.log_dir, self.port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not processes.port_open(self.port, self.host):
            if not self.process.alive():
                raise RuntimeError(f"{self.name} exited with {self.process.popen.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.process.kill()
                raise TimeoutError(f"{self.name} did not listen on {self.host}:{self.port}; see {self.log_path}")
            time.sleep(0.05)
        return self

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        """SIGTERM, as an orderly shutdown."""
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """SIGKILL, as a media server that crashes."""
        if self.process is not None:
            self.process.kill()


def start_emulator(log_dir: Path, mode: str = "signaling", **options: Any) -> tuple[processes.ManagedProcess, str]:
    """A started emulator subprocess as (process, url), for stacks that keep their processes in a list."""
    server = EmulatorProcess(log_dir, mode, **options).start()
    assert server.process is not None
    return server.process, server.url


@contextmanager
def emulator_process(log_dir: Path, mode: str = "signaling", **options: Any) -> Iterator[EmulatorProcess]:
    """A started emulator subprocess, stopped on exit; options as `EmulatorProcess`."""
    server = EmulatorProcess(log_dir, mode, **options).start()
    try:
        yield server
    finally:
        server.stop()


class InProcessEmulator:
    """The real emulator on its own asyncio loop in a thread of this process, with test control.

    `emulator` is its state (registry, sessions, the control record of requests received);
    `control(command, ...)` runs a test-control command exactly as the control socket does.
    """

    def __init__(self, mode: str = "signaling", *, port: int = 0, memory_offset_kib: int = 0) -> None:
        self.config = EmulatorConfig(port=port, mode=mode, memory_offset_kib=memory_offset_kib, test_control=True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kms-emulator", daemon=True)
        self._stop: asyncio.Future[None] | None = None
        self._serving: asyncio.Future[None] | None = None
        self.emulator: Emulator
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/kurento"

    def start(self) -> InProcessEmulator:
        self._thread.start()
        self.port = self.call(self._start())
        return self

    async def _start(self) -> int:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[int] = loop.create_future()
        self._stop = loop.create_future()
        # The backend is created inside the loop, as `python -m kms_emulator` does.
        self.emulator = Emulator(self.config, create_backend(self.config.mode))
        task = loop.create_task(run_server(self.config, self.emulator.backend, ready, self._stop, self.emulator))
        started: set[asyncio.Future[Any]] = {task, ready}
        await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            task.result()  # raises why it did not start (e.g. the port is taken)
        self._serving = task
        return ready.result()

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Runs a coroutine on the emulator's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def control(self, command: str, **params: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.call(run_command(self.emulator, {"command": command, **params}))
        return answer

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received on /kurento, in order, as the client sent it."""
        return list(self.control("requests")["requests"])

    @property
    def connections(self) -> int:
        """Client sockets accepted so far."""
        return int(self.control("requests")["connections"])

    def methods(self) -> list[str]:
        return [str(request.get("method", "")) for request in self.requests]

    async def _shutdown(self) -> None:
        assert self._stop is not None and self._serving is not None
        if not self._stop.done():
            self._stop.set_result(None)
        await self._serving

    def stop(self) -> None:
        """Closes the server and every client socket, as a media server that goes away."""
        if not self._thread.is_alive():
            return
        if self._serving is not None:
            self.call(self._shutdown(), timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@contextmanager
def in_process_emulator(mode: str = "signaling", **options: Any) -> Iterator[InProcessEmulator]:
    server = InProcessEmulator(mode, **options).start()
    try:
        yield server
    finally:
        server.stop()
