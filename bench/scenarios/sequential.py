"""One client, one offer at a time: the floor with no concurrency at all, and what each tier
spends on one offer (the profile by hop).

A system whose client re-offers (`fresh_client_per_offer` false, ours) keeps one participant;
otherwise (Janus) every round is a fresh participant: connect, join, publish + trickle, leave.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import psutil

from bench import counting
from bench.counting import BROKER_REFRESH_S, IDLE_S
from bench.procstats import machine_cpu_s, own_cpu_s
from bench.protocol import Client, Fixtures, System
from bench.recorder import Recorder
from bench.scenarios.common import connect_and_join

WARMUP = 10


class OfferSequence:
    def __init__(self, system: System, fx: Fixtures, name: str, capacity: int) -> None:
        self.fx, self.name = fx, name
        self.fresh = system.fresh_client_per_offer
        self.room = system.room(capacity if self.fresh else 1)
        self.solo: Client | None = None
        self.count = 0
        self.offers = 0

    def start(self, rec: Recorder | None = None) -> None:
        """Join the one client that re-offers (a fresh-client system joins in every round)."""
        if not self.fresh:
            self.solo = self.room.client(self.name)
            ms = connect_and_join(self.solo)
            if rec:
                rec.add("join_to_ready", ms)

    def run(self, rounds: int, rec: Recorder | None = None) -> None:
        for _ in range(rounds):
            client = self.solo or self._newcomer(rec)
            self.offers += 1
            ms = client.offer(*self.fx.publish_generation(self.offers))
            if rec:
                rec.add("offer_to_answer", ms)
            if client is not self.solo:
                client.leave()
                client.stop()

    def _newcomer(self, rec: Recorder | None) -> Client:
        self.count += 1
        client = self.room.client(f"{self.name}{self.count}")
        ms = connect_and_join(client)
        if rec:
            rec.add("join_to_ready", ms)
        return client

    def close(self) -> None:
        if self.solo:
            self.solo.leave()
            self.solo.stop()


def single_client(system: System, fx: Fixtures, rounds: int = 100) -> dict:
    seq = OfferSequence(system, fx, "solo", rounds + WARMUP)
    rec = Recorder()
    seq.start(rec)
    seq.run(WARMUP)
    seq.run(rounds, rec)
    seq.close()
    return rec.report()


class Usage:
    """CPU seconds so far: each tier of the system, this load generator, the whole machine."""

    def __init__(self, system: System) -> None:
        self.at = time.monotonic()
        self.tiers = system.cpu_s()
        self.generator = own_cpu_s()
        self.busy, self.steal = machine_cpu_s()

    def per(self, later: Usage, units: float) -> dict[str, Any]:
        """ms of CPU per unit between this snapshot and `later`."""
        tiers = {t: (later.tiers[t] - self.tiers.get(t, 0.0)) * 1000 / units for t in later.tiers}
        generator = (later.generator - self.generator) * 1000 / units
        busy = (later.busy - self.busy) * 1000 / units
        return {
            "tiers": tiers,
            "generator": generator,
            # Whatever else ran on the machine meanwhile (other work slows every figure down).
            "other_processes": max(0.0, busy - sum(tiers.values()) - generator),
            "steal": (later.steal - self.steal) * 1000 / units,
        }


def _r(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in d.items()}


def cpu_per_offer(system: System, fx: Fixtures, rounds: int = 200) -> dict:
    """CPU milliseconds each tier spends on one offer of the sequence above.

    Ours: POST of the offer, one POST of its candidates, long polls until the answer, one after
    the other from one client (no sleep between offers); the window runs from just before the
    first offer to 0.5 s after the last answer (the candidates and events that follow it), and
    every tier's CPU in it counts, what the deployment does by itself (lease renewals, health
    checks, heartbeats) included: `idle_cpu_ms_per_s` says how much that is, measured for
    IDLE_S just before with the client holding its poll, and `net_of_idle_cpu_ms_per_offer`
    takes it out. Janus: a whole join + publish + trickle + leave, an upper bound of its cost per
    offer. On a machine whose cores every tier shares, the sum bounds the offers per second.
    """
    seq = OfferSequence(system, fx, "profiled", rounds + WARMUP)
    seq.start()
    seq.run(WARMUP)
    gevent.sleep(1)
    idle_start = Usage(system)
    gevent.sleep(IDLE_S)
    before = Usage(system)
    idle = idle_start.per(before, (before.at - idle_start.at) * 1000)  # ms per ms: x1000 = ms/s
    rec = Recorder()
    seq.run(rounds, rec)
    gevent.sleep(0.5)
    after = Usage(system)
    seq.close()
    window_s = after.at - before.at
    used = before.per(after, rounds)
    per_offer = _r(used["tiers"])
    idle_ms_per_s = {t: v * 1000 for t, v in idle["tiers"].items()}
    net = {t: max(0.0, v - idle_ms_per_s.get(t, 0.0) * window_s / rounds) for t, v in used["tiers"].items()}
    total = round(sum(used["tiers"].values()), 2)
    but_mongo = sum(v for t, v in used["tiers"].items() if t != "mongo")
    cores = psutil.cpu_count() or 1
    return {
        "offers": rounds,
        "cpu_ms_per_offer": per_offer,
        "total_cpu_ms_per_offer": total,
        "all_tiers_but_mongo_cpu_ms_per_offer": round(but_mongo, 2),
        "mongo_cpu_ms_per_offer": per_offer.get("mongo"),
        "idle_cpu_ms_per_s": _r(idle_ms_per_s),
        "net_of_idle_cpu_ms_per_offer": _r(net),
        "generator_cpu_ms_per_offer": round(used["generator"], 2),
        "other_processes_cpu_ms_per_offer": round(used["other_processes"], 2),
        "steal_ms_per_offer": round(used["steal"], 2),
        "window_s": round(window_s, 2),
        "offer_to_answer_ms": rec.report()["latency_ms"].get("offer_to_answer"),
        "offers_per_s_ceiling": round(cores * 1000 / total, 1) if total else None,
        "measured_offers_per_s": round(rounds / window_s, 1),
    }


def counts_per_offer(system: System, fx: Fixtures, rounds: int = 50) -> dict:
    """MongoDB commands, KMS requests and round trips, broker messages per offer, as counted
    (bench/counting.py), in a window of their own after the CPU window: the same sequence of
    offers, with the counting switched on only for it."""
    counts = getattr(system, "counts", None)
    if counts is None:
        return {"skipped": "no counters for this system"}
    seq = OfferSequence(system, fx, "counted", rounds + WARMUP)
    seq.start()
    seq.run(WARMUP)
    counts.on()
    try:
        gevent.sleep(BROKER_REFRESH_S + 1)  # the broker's figures catch up with the warm-up
        idle_start = counts.snapshot()
        gevent.sleep(BROKER_REFRESH_S + 1)  # what the deployment does by itself, for as long
        start = counts.snapshot()
        polls = getattr(seq.solo, "delivering_polls", 0)
        seq.run(rounds)
        gevent.sleep(0.5)
        end = counts.snapshot(broker=False)
        polls = getattr(seq.solo, "delivering_polls", 0) - polls
        gevent.sleep(BROKER_REFRESH_S + 1)  # the broker's figures catch up with the window
        broker_end = counts.snapshot()
    finally:
        counts.off()
        seq.close()
    idle_s = start["at"] - idle_start["at"]
    mongo_idle = counting.rate(idle_start["mongo"], start["mongo"], idle_s)
    mongo_net = counting.net(start["mongo"], end["mongo"], mongo_idle, end["at"] - start["at"])
    broker_idle = counting.rate(idle_start["broker"], start["broker"], idle_s)
    broker_s = broker_end["at"] - start["at"]
    return {
        "offers": rounds,
        "window_s": round(end["at"] - start["at"], 2),
        "idle_window_s": round(idle_s, 1),
        "mongo": counting.mongo_per_offer(mongo_net, rounds, polls)
        | {"idle_ops_per_s": round(sum(mongo_idle.values()), 2)},
        "kms": counting.kms_per_offer(start["kms"], end["kms"], rounds),
        "broker_messages_per_offer": counting.broker_per_offer(
            start["broker"], broker_end["broker"], broker_idle, broker_s, rounds
        ),
    }


def _join_round(system: System, rooms: list[Any], minted: bool, rounds: int) -> int:
    """`rounds` newcomers join one after the other (POST join, then their own participantJoined
    read from the poll), four to a room; with `minted`, each with a token the backend minted just
    before (issue 14's flow; the minting is the backend's call and counts too). Returns how many
    joined; they stay joined (their leave is not part of the figure)."""
    joined = 0
    for i in range(rounds):
        room = rooms[i // JOINERS_PER_ROOM]
        session = room.session
        if minted:
            token = system.service.mint_token(session["session_id"])  # type: ignore[attr-defined]
            if token is None:
                return 0
            session = {**session, "join_token": token}
        client = type(room)(room.base, session).client(f"j{i}")
        connect_and_join(client)
        client.stop()
        room.joiners.append(client)
        joined += 1
    return joined


JOINERS_PER_ROOM = 4


def cost_per_join(system: System, fx: Fixtures, rounds: int = 60) -> dict:
    """What one join costs: CPU per tier (as cpu_per_offer measures it, idle rate taken out) and
    MongoDB operations (counted, as counts_per_offer), for the shared join token and for a token
    the backend minted (issue 14: roles, single use), each newcomer in a room of four."""
    counts = getattr(system, "counts", None)
    if counts is None or not hasattr(system, "service"):
        return {"skipped": "ours only: the figures compare this service's join flows"}
    result: dict[str, Any] = {"joins": rounds}
    for flow, minted in (("shared_token", False), ("minted_token", True)):
        rooms = [system.room(JOINERS_PER_ROOM + 1) for _ in range(2 * (rounds // JOINERS_PER_ROOM + 1))]
        for room in rooms:
            room.joiners = []  # type: ignore[attr-defined]
        half = len(rooms) // 2
        idle_start = Usage(system)
        gevent.sleep(IDLE_S)
        before = Usage(system)
        idle = idle_start.per(before, (before.at - idle_start.at) * 1000)
        done = _join_round(system, rooms[:half], minted, rounds)
        if not done:
            result[flow] = {"skipped": "the service mints no join tokens"}
            continue
        gevent.sleep(0.5)
        after = Usage(system)
        window_s = after.at - before.at
        used = before.per(after, done)
        idle_ms_per_s = {t: v * 1000 for t, v in idle["tiers"].items()}
        net = {t: max(0.0, v - idle_ms_per_s.get(t, 0.0) * window_s / done) for t, v in used["tiers"].items()}
        # The counted window: the same flow again, with the counters on.
        counts.on()
        try:
            gevent.sleep(1)
            idle_counts = counts.snapshot(broker=False)
            gevent.sleep(IDLE_S)  # what the deployment does by itself, taken out at its rate
            start = counts.snapshot(broker=False)
            counted = _join_round(system, rooms[half:], minted, rounds)
            gevent.sleep(0.5)
            end = counts.snapshot(broker=False)
        finally:
            counts.off()
        mongo_idle = counting.rate(idle_counts["mongo"], start["mongo"], start["at"] - idle_counts["at"])
        mongo = counting.net(start["mongo"], end["mongo"], mongo_idle, end["at"] - start["at"])
        per_join = counting.mongo_per_offer(mongo, max(counted, 1), 0)
        result[flow] = {
            "cpu_ms_per_join": _r(used["tiers"]),
            "net_of_idle_cpu_ms_per_join": _r(net),
            "all_tiers_cpu_ms_per_join": round(sum(net.values()), 2),
            "mongo_ops_per_join": per_join["ops_per_offer"],
            "mongo_by_tier": per_join["by_tier"],
            "mongo_by_command": per_join["by_command"],
        }
        for room in rooms:
            for client in room.joiners:  # type: ignore[attr-defined]
                client.leave()
    return result
