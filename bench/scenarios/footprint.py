"""What participants cost at rest: `memory` (RSS per tier before and after N participants joined
and published) and `idle_polls` (one process holding N waiting long polls: its CPU and RSS)."""

from __future__ import annotations

import time
from collections import Counter

import gevent
from gevent.pool import Pool

from bench.procstats import sample_process
from bench.protocol import Client, Fixtures, PeerClient, System


def _clients(system: System, count: int, per_room: int, prefix: str) -> list[Client]:
    clients: list[Client] = []
    for i in range(count // per_room):
        room = system.room(per_room)
        clients += [room.client(f"{prefix}{i}-{j}") for j in range(per_room)]
    return clients


def memory(system: System, fx: Fixtures, count: int = 200, per_room: int = 10) -> dict:
    """RSS delta per tier per 100 participants joined and published (answer read once each)."""
    before = system.rss_mib()
    members = _clients(system, count, per_room, "m")
    outcome: Counter[str] = Counter()

    def join_publish(member: Client) -> None:
        try:
            member.connect()
            member.join(confirm=False)
            member.offer(fx.publish, timeout=10)
            outcome["answered"] += 1
        except Exception:  # noqa: BLE001
            outcome["failures"] += 1

    Pool(8).map(join_publish, members)
    gevent.sleep(2)
    after = system.rss_mib()
    for member in members:
        member.stop()
    answered = outcome["answered"]
    return {
        "participants": count,
        "answered": answered,
        "failures": outcome["failures"],
        "rss_before_mib": before,
        "rss_after_mib": after,
        "rss_mib_per_100_participants": {
            k: round((after[k] - before.get(k, 0.0)) * 100 / max(answered, 1), 2) for k in after
        },
    }


def _enter_all(clients: list[Client], deadline: float) -> list[Client]:
    entered: list[Client] = []

    def enter(client: Client) -> None:
        if time.monotonic() > deadline:
            return
        try:
            client.enter_idle()
            entered.append(client)
        except Exception:  # noqa: BLE001
            pass

    Pool(20).map(enter, clients)
    return entered


def _drain_twice(clients: list[Client], deadline: float) -> int:
    """Take the backlog (our participantJoined), so that the next poll idles. Twice: the workers
    announce the last joins a moment after their POSTs were answered, and a poll that finds such
    a late message would return instead of idling."""
    peers = [c for c in clients if isinstance(c, PeerClient)]
    drained = 0

    def drain(client: PeerClient) -> None:
        nonlocal drained
        if time.monotonic() > deadline:
            return
        try:
            client.drain()
            drained += 1
        except Exception:  # noqa: BLE001
            pass

    Pool(20).map(drain, peers)
    gevent.sleep(3)
    Pool(20).map(drain, peers)
    return drained // 2


def _hold(clients: list[Client], wait: float) -> dict:
    """Every client holds one poll; the process is sampled while they wait."""
    outcome = {"returned_early": 0, "errors": 0}

    def hold(client: Client) -> None:
        try:
            client.idle_poll(wait)
            outcome["returned_early"] += 1
        except Exception:  # noqa: BLE001
            outcome["errors"] += 1

    holders = [gevent.spawn(hold, c) for c in clients]
    gevent.sleep(5)
    return {"holders": holders, "outcome": outcome}


def idle_polls(system: System, count: int = 2000, per_room: int = 10, wait: float = 30, budget_s: float = 120) -> dict:
    """One process (`system.poll_holder_pid`) holding `count` waiting polls: its CPU and RSS."""
    names, pid = system.idle_names, system.poll_holder_pid
    started = time.monotonic()
    baseline = sample_process(pid, 3)
    entering = time.monotonic()  # the baseline's 3 s are not part of getting clients there
    entered = _enter_all(_clients(system, count, per_room, "i"), started + budget_s)
    entered_s = time.monotonic() - entering
    drained = _drain_twice(entered, started + budget_s + 30)
    held = _hold(entered, wait)
    loaded = sample_process(pid, 10)
    pending = sum(1 for g in held["holders"] if not g.dead)
    outcome = dict(held["outcome"])
    gevent.killall(held["holders"], block=True, timeout=10)
    for client in entered:
        client.stop()
    result = {"polls_wanted": count, names.entered: len(entered), names.entered_s: round(entered_s, 1)}
    if any(isinstance(c, PeerClient) for c in entered):
        result["drained"] = drained
    return result | {
        "polls_pending_during_sample": pending,
        "polls_returned_before_sample_end": outcome["returned_early"],
        "poll_errors_before_sample_end": outcome["errors"],
        f"{names.process}_at_rest": baseline,
        f"{names.process}_holding_polls": loaded,
    }
