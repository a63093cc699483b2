"""`fanout`: one room of `size` long-polling participants. (a) Where the system has chat
(`PeerClient`): a broadcast until all have it, `rounds` times. (b) A newcomer's join until all
have the announcement of it, `join_rounds` times. The figure is the time until the last one has it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent
from gevent.pool import Pool

from bench.inbox import Predicate
from bench.protocol import Client, PeerClient, Room, System
from bench.recorder import Recorder
from bench.scenarios.common import leave_all
from bench.stats import summary


class _Audience:
    """The room's listeners and the arrival time at each of them, per receiver."""

    def __init__(self, members: list[Client], timeout: float) -> None:
        self.members, self.timeout = members, timeout
        self.per_receiver: list[float] = []

    def marks(self) -> list[int]:
        return [len(m.inbox) for m in self.members]

    def all_have(self, predicate: Predicate, t0: float, marks: list[int]) -> float | None:
        """ms until the last member had a matching message; None if one never did."""
        waits = [
            gevent.spawn(m.inbox.wait_for, predicate, self.timeout, mark)
            for m, mark in zip(self.members, marks, strict=True)
        ]
        gevent.joinall(waits, timeout=self.timeout + 1)
        got = [w.value[0] for w in waits if w.successful() and w.value]
        self.per_receiver.extend((g - t0) * 1000 for g in got)
        return (max(got) - t0) * 1000 if len(got) == len(self.members) else None

    def take_per_receiver(self) -> dict:
        values, self.per_receiver = self.per_receiver, []
        return summary(values)


def _settle(members: list[Client], rec: Recorder) -> None:
    """Until everyone saw the last join: the backlog of announcements is read."""
    last = members[-1]
    for member in members[:-1]:
        try:
            member.inbox.wait_for(last.announces_my_join, timeout=10 if not rec.errors else 0.5)
        except TimeoutError as exc:
            rec.error("backlog", exc)


def _rounds(rec: Recorder, name: str, count: int, one: Callable[[int], float | None]) -> int:
    """Run `count` rounds; returns how many were incomplete (someone never got it)."""
    incomplete = 0
    for k in range(count):
        if rec.errors.get(name, 0) >= 2:
            break  # the system refuses the step: do not spend the budget on more
        try:
            ms = one(k)
        except Exception as exc:  # noqa: BLE001
            rec.error(name, exc)
            continue
        if ms is None:
            incomplete += 1
        else:
            rec.add(f"{name}_all_50", ms)
        gevent.sleep(0.05)
    return incomplete


def _enter(member: Client) -> None:
    member.connect()
    member.join(confirm=False)


def _broadcast_round(audience: _Audience, sender: PeerClient, k: int) -> float | None:
    marks, t0 = audience.marks(), time.perf_counter()
    sender.send({"round": k})
    return audience.all_have(lambda m: sender.carries(m, {"round": k}), t0, marks)


def _join_round(audience: _Audience, room: Room, k: int) -> float | None:
    newcomer = room.client(f"new{k}")
    newcomer.connect()  # Janus: session and handle; the clock starts at the join itself
    marks, t0 = audience.marks(), time.perf_counter()
    try:
        newcomer.join(confirm=False)
        return audience.all_have(newcomer.announces_my_join, t0, marks)
    finally:
        newcomer.leave()
        newcomer.stop()


def fanout(system: System, size: int = 50, rounds: int = 20, join_rounds: int = 10, timeout: float = 10.0) -> dict:
    room = system.room(size + join_rounds + 1, announce_joins=True)
    members = [room.client(f"f{i}") for i in range(size)]
    # The last one joins when all others are in: its announcement then reaches every one of them.
    Pool(10).map(_enter, members[:-1])
    _enter(members[-1])
    for member in members:
        member.start_polling()
    rec = Recorder()
    _settle(members, rec)
    audience = _Audience(members, timeout)
    result: dict = {"size": size}
    if isinstance(sender := members[0], PeerClient):
        result["rounds"] = rounds
        result["broadcast_incomplete_rounds"] = _rounds(
            rec, "broadcast", rounds, lambda k: _broadcast_round(audience, sender, k)
        )
        result["broadcast_per_receiver_ms"] = audience.take_per_receiver()
    result["join_incomplete_rounds"] = _rounds(
        rec, "join_announce", join_rounds, lambda k: _join_round(audience, room, k)
    )
    result["join_announce_per_receiver_ms"] = audience.take_per_receiver()
    leave_all(members)
    return rec.report() | result | {"poll_errors": sum(m.errors for m in members)}
