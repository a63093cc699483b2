"""`sustained`: open-loop offers at stepped rates over a pool of joined, published, long-polling
participants (re-offers on the published stream), until p95 offer-to-answer exceeds the SLO or
fewer than 95 % are answered."""

from __future__ import annotations

import random
import time

import gevent
from gevent.pool import Pool

from bench.procstats import own_cpu_s
from bench.protocol import Client, Fixtures, System
from bench.recorder import Recorder, paced
from bench.scenarios.common import leave_all
from bench.stats import summary


def _pool(system: System, fx: Fixtures, size: int) -> tuple[list[Client], list[Client]]:
    """(all members, those that published): pairs sharing a room, as in a call."""
    members: list[Client] = []
    for i in range(size // 2):
        room = system.room(2)
        members += [room.client(f"s{i}a"), room.client(f"s{i}b")]

    def enter(member: Client) -> None:
        member.connect()
        member.join(confirm=False)
        member.start_polling()

    Pool(8).map(enter, members)
    ready: list[Client] = []
    setup_deadline = time.monotonic() + 30

    def first_publish(member: Client) -> None:
        try:
            member.offer(fx.publish, timeout=max(0.1, setup_deadline - time.monotonic()))
            ready.append(member)
        except Exception:  # noqa: BLE001 - a member that cannot publish stays out of the pool
            pass

    Pool(8).map(first_publish, members)
    return members, ready


def _step(rate: float, step_s: float, slo_ms: float, sdp: str, idle: list[Client], timeout: float) -> dict:
    """One step: `rate` re-offers per second for `step_s`, each on a member not busy with one."""
    rec = Recorder()
    free = list(idle)
    skipped = 0
    scheduled = int(rate * step_s)
    started = time.monotonic()

    def one(member: Client) -> None:
        try:
            rec.timed("offer_to_answer", lambda: member.reoffer(sdp, timeout))
        finally:
            free.append(member)

    def launch(_i: int) -> gevent.Greenlet | None:
        nonlocal skipped
        if not free:
            skipped += 1
            return None
        return gevent.spawn(one, free.pop(random.randrange(len(free))))

    generator_before = own_cpu_s()
    greenlets = paced(scheduled, rate, launch)
    gevent.joinall(greenlets, timeout=timeout + 2)
    gevent.killall([g for g in greenlets if not g.dead], block=True, timeout=5)
    elapsed = time.monotonic() - started
    generator_s = own_cpu_s() - generator_before
    lat = rec.samples.get("offer_to_answer", [])
    s = summary(lat)
    return {
        "offered_per_s": rate,
        "scheduled": scheduled,
        "answered": len(lat),
        "achieved_per_s": round(len(lat) / max(elapsed, step_s), 1),
        "errors": sum(rec.errors.values()) + skipped,
        "skipped_no_idle_client": skipped,
        "offer_to_answer_ms": s,
        "within_slo": s["p95"] is not None and s["p95"] <= slo_ms and len(lat) >= 0.95 * scheduled,
        # The load generator shares the cores: its own CPU says whether it kept up (one core is
        # all a gevent process can use).
        "generator_cpu_percent_of_one_core": round(100 * generator_s / elapsed, 1),
        "generator_cpu_ms_per_offer": round(1000 * generator_s / max(1, len(lat)), 2),
        "first_errors": rec.first_errors[:3],
    }


def sustained(
    system: System, fx: Fixtures, rates: list[float], step_s: float = 5.0, slo_ms: float = 50.0, pool_size: int = 24
) -> dict:
    members, ready = _pool(system, fx, pool_size)
    gevent.sleep(2.0)  # the first publishes' candidates and events are not part of the first step
    steps = []
    best = 0.0
    for rate in rates:
        step = _step(rate, step_s, slo_ms, fx.publish, ready, timeout=10)
        steps.append(step)
        print(
            f"bench:   {rate:>5.0f} offers/s -> answered {step['answered']}/{step['scheduled']}, "
            f"p95 {step['offer_to_answer_ms']['p95']} ms, generator {step['generator_cpu_percent_of_one_core']} % "
            f"of a core ({step['generator_cpu_ms_per_offer']} ms/offer)",
            flush=True,
        )
        if not step["within_slo"]:
            break
        best = rate
        gevent.sleep(1.0)
    leave_all(members)
    per_offer = [s["generator_cpu_ms_per_offer"] for s in steps if s["answered"]]
    return {
        "sustained_offers_per_s": best,
        # What this generator could offer on one core of its own at its measured cost per offer.
        "generator_ceiling_offers_per_s": round(1000 / max(per_offer), 1) if per_offer and max(per_offer) else None,
        "generator_max_cpu_percent_of_one_core": max(
            (s["generator_cpu_percent_of_one_core"] for s in steps), default=None
        ),
        "slo_p95_ms": slo_ms,
        "step_s": step_s,
        "steps": steps,
        "pool": len(ready),
        "pool_wanted": pool_size,
        "poll_errors": sum(m.errors for m in members),
    }
