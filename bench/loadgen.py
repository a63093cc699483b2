"""Load generator for our REST contract: many participants, each with its own long poll.

Scenarios (each bounded by a deadline; greenlets still running at the deadline are killed and
counted as timeouts, so a slow or broken service never hangs the benchmark):

- `calls`: sessions of N participants join at a given rate, publish (chromium-publish.sdp +
  its candidates, trickled in one POST), subscribe to every other publisher (chromium-subscribe.sdp
  + candidates), send one broadcast and one direct message, then leave.
- `fanout`: one session of 50 long-polling participants; a broadcast POST until all 50 have it;
  and a newcomer's join until all 50 have its participantJoined.
- `sustained`: open-loop offers at stepped rates over a pool of joined, published, long-polling
  participants (re-offers on the publish stream) until p95 offer-to-answer exceeds the SLO.
- `memory`: RSS of every tier before and after 200 participants joined and published.
- `idle_polls`: 2,000 participants each holding one `wait=30` poll against one web process.

Run alone: `python -m bench.loadgen --sessions 10 --participants 4` (prints JSON).
"""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import psutil
from gevent.pool import Pool

from bench.client import Participant, Service
from bench.stats import summary

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "browser-sdp"


def fixtures() -> dict:
    read = (FIXTURES / "chromium-publish.sdp").read_text, (FIXTURES / "chromium-subscribe.sdp").read_text
    return {
        "publish": read[0](),
        "subscribe": read[1](),
        "publish_candidates": json.loads((FIXTURES / "chromium-publish.candidates.json").read_text()),
        "subscribe_candidates": json.loads((FIXTURES / "chromium-subscribe.candidates.json").read_text()),
    }


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
    gevent.joinall(greenlets, timeout=max(0.0, deadline - time.monotonic()))
    unfinished = [g for g in greenlets if not g.dead]
    for _ in unfinished:
        rec.error("deadline", TimeoutError("participant still busy at the scenario deadline"))
    gevent.killall(unfinished, block=True, timeout=5)
    return len(unfinished)


# --- calls: sessions of N participants ----------------------------------------------------------


def calls(
    base: str,
    sessions: int = 50,
    participants: int = 4,
    rate: float = 50.0,
    duration: float = 60.0,
    step_timeout: float = 15.0,
    fx: dict | None = None,
) -> dict:
    """Every participant joins, publishes, subscribes to all others, sends messages, leaves."""
    fx = fx or fixtures()
    rec = Recorder()
    service = Service(base)
    rooms = [service.create_session(max_participants=max(participants, 2)) for _ in range(sessions)]
    published: dict[str, list[Participant]] = {r["session_id"]: [] for r in rooms}
    everyone_published = {r["session_id"]: gevent.event.Event() for r in rooms}
    members: list[Participant] = []
    started = time.monotonic()
    deadline = started + duration

    def script(room: dict, index: int) -> None:
        me = Participant(base, room, f"p{index}")
        members.append(me)
        sid = room["session_id"]
        if not rec.timed("join_to_ready", me.join):
            return
        ok = rec.timed(
            "offer_to_answer",
            lambda: me.offer(fx["publish"], "publish", fx["publish_candidates"], timeout=step_timeout),
        )
        if ok:
            published[sid].append(me)
        if len(published[sid]) >= participants or not ok:
            everyone_published[sid].set()
        everyone_published[sid].wait(step_timeout)
        for other in list(published[sid]):
            if other is not me:
                rec.timed(
                    "subscribe_offer_to_answer",
                    lambda o=other: me.offer(
                        fx["subscribe"], o.participant_id, fx["subscribe_candidates"], timeout=step_timeout
                    ),
                )
        try:
            me.send({"hello": me.name})
            peers = [o for o in published[sid] if o is not me]
            if peers:
                me.send({"direct": me.name}, to=random.choice(peers).participant_id)
        except Exception as exc:  # noqa: BLE001
            rec.error("message", exc)

    greenlets = []
    total = sessions * participants
    for index in range(total):
        room = rooms[index % sessions]
        at = started + index / rate
        gevent.sleep(max(0.0, at - time.monotonic()))
        greenlets.append(gevent.spawn(script, room, index))
    unfinished = run_bounded(greenlets, deadline, rec)
    elapsed = time.monotonic() - started
    for member in members:
        if member.participant_id:
            member.leave()
        member.stop()
    result = rec.report()
    result.update(
        sessions=sessions,
        participants=participants,
        join_rate_per_s=rate,
        elapsed_s=round(elapsed, 1),
        unfinished_participants=unfinished,
        poll_errors=sum(m.errors for m in members),
        messages_received=sum(len(m.inbox) for m in members),
    )
    return result


# --- fanout: 50 participants ------------------------------------------------------------------------


def fanout(base: str, size: int = 50, rounds: int = 20, join_rounds: int = 10, timeout: float = 10.0) -> dict:
    service = Service(base)
    room = service.create_session(max_participants=size + join_rounds + 1)
    members = [Participant(base, room, f"f{i}") for i in range(size)]
    pool = Pool(10)
    pool.map(lambda m: m.join(poll=False), members)
    for member in members:
        member.start_polling()
    rec = Recorder()
    last = members[-1]
    for member in members:  # everyone has seen the last join: the backlog is drained
        try:
            member.wait_for(
                lambda m: m["type"] == "participantJoined" and m["participant_id"] == last.participant_id,
                timeout=10 if not rec.errors else 0.5,
            )
        except TimeoutError as exc:
            rec.error("backlog", exc)
    per_receiver: list[float] = []
    incomplete = 0

    def all_have(predicate, t0: float, marks: list[int]) -> float | None:
        waits = [gevent.spawn(m.wait_for, predicate, timeout, mark) for m, mark in zip(members, marks, strict=True)]
        gevent.joinall(waits, timeout=timeout + 1)
        got = [w.value[0] for w in waits if w.successful() and w.value]
        per_receiver.extend((g - t0) * 1000 for g in got)
        return (max(got) - t0) * 1000 if len(got) == len(members) else None

    for k in range(rounds):
        marks = [len(m.inbox) for m in members]
        t0 = time.perf_counter()
        try:
            members[0].send({"round": k})
        except Exception as exc:  # noqa: BLE001
            rec.error("broadcast", exc)
            continue
        ms = all_have(lambda m, k=k: m["type"] == "message" and m.get("payload", {}).get("round") == k, t0, marks)
        if ms is None:
            incomplete += 1
        else:
            rec.add("broadcast_all_50", ms)
        gevent.sleep(0.05)
    broadcast_receivers = list(per_receiver)
    per_receiver.clear()
    join_incomplete = 0
    for k in range(join_rounds):
        if rec.errors.get("join_announce", 0) >= 2:
            break  # the web tier refuses joins: do not spend the budget on more
        newcomer = Participant(base, room, f"new{k}")
        marks = [len(m.inbox) for m in members]
        t0 = time.perf_counter()
        try:
            newcomer.join(poll=False)
        except Exception as exc:  # noqa: BLE001
            rec.error("join_announce", exc)
            continue
        pid = newcomer.participant_id
        ms = all_have(lambda m, pid=pid: m["type"] == "participantJoined" and m["participant_id"] == pid, t0, marks)
        if ms is None:
            join_incomplete += 1
        else:
            rec.add("join_announce_all_50", ms)
        newcomer.leave()
        newcomer.stop()
        gevent.sleep(0.05)
    for member in members:
        member.leave()
        member.stop()
    result = rec.report()
    result.update(
        size=size,
        rounds=rounds,
        broadcast_incomplete_rounds=incomplete,
        join_incomplete_rounds=join_incomplete,
        broadcast_per_receiver_ms=summary(broadcast_receivers),
        join_announce_per_receiver_ms=summary(per_receiver),
        poll_errors=sum(m.errors for m in members),
    )
    return result


# --- sustained offers/s -------------------------------------------------------------------------------


def step_rates(
    rates: list[float], step_s: float, slo_ms: float, offer_once: Callable[[object], float], idle: list, timeout: float
) -> dict:
    """Open-loop offers at each rate on idle pool members; stop at the first step over the SLO."""
    steps = []
    best = 0.0
    for rate in rates:
        rec = Recorder()
        free = list(idle)
        skipped = 0
        greenlets = []
        started = time.monotonic()
        scheduled = int(rate * step_s)

        def one(member, rec=rec, free=free) -> None:
            try:
                rec.timed("offer_to_answer", lambda: offer_once(member))
            finally:
                free.append(member)

        for i in range(scheduled):
            gevent.sleep(max(0.0, started + i / rate - time.monotonic()))
            if not free:
                skipped += 1
                continue
            greenlets.append(gevent.spawn(one, free.pop(random.randrange(len(free)))))
        gevent.joinall(greenlets, timeout=timeout + 2)
        gevent.killall([g for g in greenlets if not g.dead], block=True, timeout=5)
        elapsed = time.monotonic() - started
        lat = rec.samples.get("offer_to_answer", [])
        s = summary(lat)
        done = len(lat)
        errors = sum(rec.errors.values()) + skipped
        ok = s["p95"] is not None and s["p95"] <= slo_ms and done >= 0.95 * scheduled
        steps.append(
            {
                "offered_per_s": rate,
                "scheduled": scheduled,
                "answered": done,
                "achieved_per_s": round(done / max(elapsed, step_s), 1),
                "errors": errors,
                "skipped_no_idle_client": skipped,
                "offer_to_answer_ms": s,
                "within_slo": ok,
                "first_errors": rec.first_errors[:3],
            }
        )
        print(f"bench:   {rate:>5.0f} offers/s -> answered {done}/{scheduled}, p95 {s['p95']} ms", flush=True)
        if not ok:
            break
        best = rate
        gevent.sleep(1.0)
    return {"sustained_offers_per_s": best, "slo_p95_ms": slo_ms, "step_s": step_s, "steps": steps}


def sustained(
    base: str,
    rates: list[float],
    step_s: float = 5.0,
    slo_ms: float = 50.0,
    pool_size: int = 24,
    fx: dict | None = None,
) -> dict:
    fx = fx or fixtures()
    service = Service(base)
    members = []
    for i in range(pool_size // 2):
        room = service.create_session(max_participants=2)
        members += [Participant(base, room, f"s{i}a"), Participant(base, room, f"s{i}b")]
    Pool(8).map(lambda m: m.join(poll=False), members)
    for member in members:
        member.start_polling()
    ready = []
    setup_deadline = time.monotonic() + 30

    def first_publish(member: Participant) -> None:
        try:
            member.offer(fx["publish"], "publish", timeout=max(0.1, setup_deadline - time.monotonic()))
            ready.append(member)
        except Exception:  # noqa: BLE001 - a member that cannot publish stays out of the pool
            pass

    Pool(8).map(first_publish, members)
    result = step_rates(
        rates, step_s, slo_ms, lambda m: m.offer(fx["publish"], "publish", timeout=10), ready, timeout=10
    )
    result.update(pool=len(ready), pool_wanted=pool_size, poll_errors=sum(m.errors for m in members))
    for member in members:
        member.leave()
        member.stop()
    return result


# --- sequential single client ---------------------------------------------------------------------------


def single_client(base: str, rounds: int = 100, fx: dict | None = None) -> dict:
    """One participant, one offer at a time: the floor with no concurrency at all."""
    fx = fx or fixtures()
    room = Service(base).create_session(max_participants=2)
    me = Participant(base, room, "solo")
    rec = Recorder()
    rec.timed("join_to_ready", me.join)
    for _ in range(10):
        me.offer(fx["publish"])
    for _ in range(rounds):
        rec.timed("offer_to_answer", lambda: me.offer(fx["publish"], "publish", fx["publish_candidates"]))
    me.leave()
    me.stop()
    return rec.report()


def tree_cpu_s(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def tiers_cpu_s(procs: dict) -> dict:
    """CPU seconds (user + system) used so far per tier, RabbitMQ's own server included."""
    out: dict[str, float] = {}
    for name, proc in procs.items():
        tier = "workers" if name.startswith("worker") else ("emulator" if name == "kms" else name)
        out[tier] = out.get(tier, 0.0) + tree_cpu_s(proc.pid)
    beams = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"]
    out["rabbitmq"] = sum(sum(p.cpu_times()[:2]) for p in beams)
    return out


def cpu_per_offer(base: str, procs: dict, rounds: int = 200, fx: dict | None = None) -> dict:
    """CPU milliseconds each tier spends on one offer, one client at a time (the profile by hop).

    An offer as the client of `single_client` makes it: POST of the offer, one POST of its
    candidates, long polls until the answer. On a machine whose cores every tier shares, the
    sum bounds the offers per second the deployment can answer at all.
    """
    fx = fx or fixtures()
    room = Service(base).create_session(max_participants=2)
    me = Participant(base, room, "profiled")
    me.join()
    for _ in range(10):
        me.offer(fx["publish"])
    gevent.sleep(1)
    before, started = tiers_cpu_s(procs), time.monotonic()
    for _ in range(rounds):
        me.offer(fx["publish"], "publish", fx["publish_candidates"])
    gevent.sleep(0.5)  # the candidates and events that follow the last answer
    after, elapsed = tiers_cpu_s(procs), time.monotonic() - started
    me.leave()
    me.stop()
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


# --- memory and idle polls --------------------------------------------------------------------------------


def tree_rss_mib(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def tiers_rss(procs: dict) -> dict:
    """RSS per tier (workers summed), MiB."""
    out: dict[str, float] = {}
    for name, proc in procs.items():
        tier = "workers" if name.startswith("worker") else ("emulator" if name == "kms" else name)
        out[tier] = out.get(tier, 0.0) + tree_rss_mib(proc.pid)
    return {k: round(v, 1) for k, v in out.items()}


def memory(base: str, procs: dict, count: int = 200, per_session: int = 10, fx: dict | None = None) -> dict:
    """RSS delta per tier per 100 participants joined and published (polls drained once each)."""
    fx = fx or fixtures()
    service = Service(base)
    before = tiers_rss(procs)
    members = []
    for i in range(count // per_session):
        room = service.create_session(max_participants=per_session)
        members += [Participant(base, room, f"m{i}-{j}") for j in range(per_session)]
    failures = 0

    def join_publish(member: Participant) -> None:
        nonlocal failures
        try:
            member.join(poll=False)
            member.cmd.call(
                "POST", f"{member._path}/offers", {"stream": "publish", "sdp": fx["publish"]}, headers=member._auth
            )
        except Exception:  # noqa: BLE001
            failures += 1

    Pool(8).map(join_publish, members)
    answered = 0

    def drain(member: Participant) -> None:
        nonlocal answered
        if not member.participant_id:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                member.poll_once(1)
            except Exception:  # noqa: BLE001
                return
            if any(m["type"] == "sdpAnswer" for _, m in member.inbox):
                answered += 1
                return

    Pool(8).map(drain, members)
    gevent.sleep(2)
    after = tiers_rss(procs)
    for member in members:
        member.stop()
    per_100 = {k: round((after[k] - before.get(k, 0.0)) * 100 / max(answered, 1), 2) for k in after}
    return {
        "participants": count,
        "answered": answered,
        "failures": failures,
        "rss_before_mib": before,
        "rss_after_mib": after,
        "rss_mib_per_100_participants": per_100,
    }


def sample_process(pid: int, seconds: float = 10.0) -> dict:
    """CPU (% of one core) and RSS of a process tree over `seconds`, one-second samples."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for p in tree:
        p.cpu_percent(None)
    cpu, rss = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        gevent.sleep(1.0)
        cpu.append(sum(p.cpu_percent(None) for p in tree))
        rss.append(sum(p.memory_info().rss for p in tree) / 2**20)
    return {
        "cpu_percent_of_one_core": round(sum(cpu) / len(cpu), 2),
        "cpu_max": round(max(cpu), 2),
        "rss_mib": round(max(rss), 1),
    }


def idle_polls(
    base: str, web_pid: int, count: int = 2000, per_session: int = 10, wait: float = 30, budget_s: float = 120
) -> dict:
    """One web process holding `count` waiting polls: its CPU and RSS over ~10 s."""
    service = Service(base)
    started = time.monotonic()
    baseline = sample_process(web_pid, 3)
    members = []
    for i in range(count // per_session):
        room = service.create_session(max_participants=per_session)
        members += [Participant(base, room, f"i{i}-{j}") for j in range(per_session)]
    joined = []

    def join(member: Participant) -> None:
        if time.monotonic() - started > budget_s:
            return
        try:
            member.join(poll=False)
            member.cmd.close()  # only the poll connection stays open
            joined.append(member)
        except Exception:  # noqa: BLE001
            pass

    Pool(20).map(join, members)
    join_s = time.monotonic() - started
    drained = 0

    def drain(member: Participant) -> None:  # take the participantJoined backlog, so the next poll idles
        nonlocal drained
        if time.monotonic() - started > budget_s + 30:
            return
        try:
            member.poll_once(0)
            drained += 1
        except Exception:  # noqa: BLE001
            pass

    # Twice: the workers announce the last joins a moment after their POSTs were answered, and a
    # poll that finds such a late participantJoined would return instead of idling.
    Pool(20).map(drain, joined)
    gevent.sleep(3)
    Pool(20).map(drain, joined)
    drained //= 2
    outcome = {"returned_early": 0, "errors": 0}

    def hold(member: Participant) -> None:
        try:
            member.poll_once(wait)
            outcome["returned_early"] += 1
        except Exception:  # noqa: BLE001
            outcome["errors"] += 1

    holders = [gevent.spawn(hold, m) for m in joined]
    gevent.sleep(5)
    loaded = sample_process(web_pid, 10)
    pending = sum(1 for g in holders if not g.dead)
    outcome_at_sample = dict(outcome)
    gevent.killall(holders, block=True, timeout=10)
    for member in joined:
        member.stop()
    return {
        "polls_wanted": count,
        "participants_joined": len(joined),
        "join_s": round(join_s, 1),
        "drained": drained,
        "polls_pending_during_sample": pending,
        "polls_returned_before_sample_end": outcome_at_sample["returned_early"],
        "poll_errors_before_sample_end": outcome_at_sample["errors"],
        "web_at_rest": baseline,
        "web_holding_polls": loaded,
    }


def main() -> None:
    from bench.stack import deployment

    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0, help="joins per second")
    parser.add_argument("--duration", type=float, default=60.0, help="hard limit, seconds")
    args = parser.parse_args()
    with deployment() as (base, _procs):
        print(json.dumps(calls(base, args.sessions, args.participants, args.rate, args.duration), indent=2))


if __name__ == "__main__":
    main()
