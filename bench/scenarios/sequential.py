"""One client, one offer at a time: the floor with no concurrency at all, and what each tier
spends on one offer (the profile by hop).

A system whose client re-offers (`fresh_client_per_offer` false, ours) keeps one participant;
otherwise (Janus) every round is a fresh participant: connect, join, publish + trickle, leave.
"""

from __future__ import annotations

import time

import gevent
import psutil

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
            ms = client.offer(self.fx.publish, self.fx.publish_candidates)
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


def cpu_per_offer(system: System, fx: Fixtures, rounds: int = 200) -> dict:
    """CPU milliseconds each tier spends on one offer of the sequence above.

    Ours: POST of the offer, one POST of its candidates, long polls until the answer. Janus:
    a whole join + publish + trickle + leave, an upper bound of its cost per offer. On a machine
    whose cores every tier shares, the sum bounds the offers per second the system can answer.
    """
    seq = OfferSequence(system, fx, "profiled", rounds + WARMUP)
    seq.start()
    seq.run(WARMUP)
    gevent.sleep(1)
    before, started = system.cpu_s(), time.monotonic()
    seq.run(rounds)
    gevent.sleep(0.5)  # the candidates and events that follow the last answer
    after, elapsed = system.cpu_s(), time.monotonic() - started
    seq.close()
    per_offer = {tier: round((after[tier] - before[tier]) * 1000 / rounds, 2) for tier in after}
    total = round(sum(per_offer.values()), 2)
    cores = psutil.cpu_count() or 1
    return {
        "offers": rounds,
        "cpu_ms_per_offer": per_offer,
        "total_cpu_ms_per_offer": total,
        "offers_per_s_ceiling": round(cores * 1000 / total, 1) if total else None,
        "measured_offers_per_s": round(rounds / elapsed, 1),
    }
