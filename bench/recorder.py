"""Samples and errors of one scenario, and the deadline that bounds it."""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent

from bench.stats import summary


class Recorder:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.first_errors: list[str] = []

    def add(self, name: str, ms: float) -> None:
        self.samples.setdefault(name, []).append(ms)

    def error(self, name: str, exc: BaseException) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1
        if len(self.first_errors) < 8:
            self.first_errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")

    def timed(self, name: str, step: Callable[[], float]) -> bool:
        try:
            self.add(name, step())
            return True
        except Exception as exc:  # noqa: BLE001 - every failure is a figure
            self.error(name, exc)
            return False

    def report(self) -> dict:
        return {
            "latency_ms": {k: summary(v) for k, v in self.samples.items()},
            "errors": self.errors,
            "first_errors": self.first_errors,
        }


def run_bounded(greenlets: list[gevent.Greenlet], deadline: float, rec: Recorder) -> int:
    """Join until the deadline; what still runs is killed and counted as a timeout."""
    gevent.joinall(greenlets, timeout=max(0.0, deadline - time.monotonic()))
    unfinished = [g for g in greenlets if not g.dead]
    for _ in unfinished:
        rec.error("deadline", TimeoutError("participant still busy at the scenario deadline"))
    gevent.killall(unfinished, block=True, timeout=5)
    return len(unfinished)


def paced(count: int, rate: float, spawn: Callable[[int], gevent.Greenlet | None]) -> list[gevent.Greenlet]:
    """Open loop: the i-th greenlet starts at i / rate seconds, however the earlier ones fare
    (`spawn` may decline one by returning None)."""
    started = time.monotonic()
    greenlets = []
    for index in range(count):
        gevent.sleep(max(0.0, started + index / rate - time.monotonic()))
        if (greenlet := spawn(index)) is not None:
            greenlets.append(greenlet)
    return greenlets
