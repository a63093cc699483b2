"""The same client logic against Janus's REST API (VideoRoom plugin), for side-by-side figures.

Janus runs from the Debian package on loopback (bench/janus_server.py). Mapping of our steps:
join = create session + attach videoroom + `join` (ptype publisher) until the `joined` event on
the long poll; offer = `publish` with the same Chromium offer as jsep until the JSEP answer on the
long poll, then trickle the same candidates; re-offers (sustained load) = `configure` with jsep;
fan-out = a newcomer joins a room with `notify_joining` until every one of 50 long-polling
participants has the `joining` event. Janus has no REST chat, and its subscribers cannot attach
to a feed whose ICE never completes (signaling-only, no media), so broadcast messages and
subscribe offers have no Janus counterpart (reported as n/a).
"""

from __future__ import annotations

import time

import gevent
from gevent.pool import Pool

from bench.janus_client import JanusParticipant, _vr, create_room
from bench.loadgen import Recorder, fixtures, run_bounded, sample_process, step_rates, tree_rss_mib
from bench.stats import summary


def calls(
    base: str,
    sessions: int = 50,
    participants: int = 4,
    rate: float = 50.0,
    duration: float = 60.0,
    fx: dict | None = None,
) -> dict:
    fx = fx or fixtures()
    rec = Recorder()
    admin = JanusParticipant(base, "admin")
    admin.connect()
    rooms = [create_room(admin, publishers=max(participants, 2) + 2) for _ in range(sessions)]
    members: list[JanusParticipant] = []
    started = time.monotonic()

    def script(room: int, index: int) -> None:
        me = JanusParticipant(base, f"p{index}")
        members.append(me)

        def join() -> float:  # create + attach + join until `joined` is read by the long poll
            t0 = time.perf_counter()
            me.connect()
            me.join(room)
            return (time.perf_counter() - t0) * 1000

        if not rec.timed("join_to_ready", join):
            return

        def publish() -> float:
            ms = me.publish(fx["publish"])
            me.trickle(fx["publish_candidates"])
            return ms

        rec.timed("offer_to_answer", publish)

    greenlets = []
    for index in range(sessions * participants):
        gevent.sleep(max(0.0, started + index / rate - time.monotonic()))
        greenlets.append(gevent.spawn(script, rooms[index % sessions], index))
    unfinished = run_bounded(greenlets, started + duration, rec)
    elapsed = time.monotonic() - started
    for member in members:
        member.leave()
        member.stop()
    admin.leave()
    admin.stop()
    result = rec.report()
    result.update(
        sessions=sessions,
        participants=participants,
        join_rate_per_s=rate,
        elapsed_s=round(elapsed, 1),
        unfinished_participants=unfinished,
        poll_errors=sum(m.errors for m in members),
    )
    return result


def fanout(base: str, size: int = 50, join_rounds: int = 10, timeout: float = 10.0) -> dict:
    admin = JanusParticipant(base, "admin")
    admin.connect()
    room = create_room(admin, publishers=size + join_rounds + 2, notify_joining=True)
    members = [JanusParticipant(base, f"f{i}") for i in range(size)]

    def join(member: JanusParticipant) -> None:
        member.connect()
        member.join(room)

    Pool(10).map(join, members)
    rec = Recorder()
    per_receiver: list[float] = []
    incomplete = 0
    for k in range(join_rounds):
        newcomer = JanusParticipant(base, f"new{k}")
        newcomer.connect()
        marks = [len(m.inbox) for m in members]
        t0 = time.perf_counter()
        newcomer.message({"request": "join", "ptype": "publisher", "room": room, "display": newcomer.name})
        name = newcomer.name

        def is_join(e: dict, name=name) -> bool:
            return (_vr(e).get("joining") or {}).get("display") == name

        waits = [gevent.spawn(m.wait_for, is_join, timeout, mark) for m, mark in zip(members, marks, strict=True)]
        gevent.joinall(waits, timeout=timeout + 1)
        got = [w.value[0] for w in waits if w.successful() and w.value]
        per_receiver.extend((g - t0) * 1000 for g in got)
        if len(got) == len(members):
            rec.add("join_announce_all_50", (max(got) - t0) * 1000)
        else:
            incomplete += 1
        newcomer.leave()
        newcomer.stop()
        gevent.sleep(0.05)
    for member in [*members, admin]:
        member.leave()
        member.stop()
    result = rec.report()
    result.update(size=size, join_incomplete_rounds=incomplete, join_announce_per_receiver_ms=summary(per_receiver))
    return result


def sustained(
    base: str,
    rates: list[float],
    step_s: float = 5.0,
    slo_ms: float = 50.0,
    pool_size: int = 24,
    fx: dict | None = None,
) -> dict:
    fx = fx or fixtures()
    admin = JanusParticipant(base, "admin")
    admin.connect()
    members = []
    for i in range(pool_size // 2):
        room = create_room(admin, publishers=4)
        members += [(JanusParticipant(base, f"s{i}a"), room), (JanusParticipant(base, f"s{i}b"), room)]
    ready = []
    for member, room in members:
        try:
            member.connect()
            member.join(room)
            member.publish(fx["publish"])
            ready.append(member)
        except Exception:  # noqa: BLE001
            pass
    result = step_rates(rates, step_s, slo_ms, lambda m: m.publish(fx["publish"], configure=True), ready, timeout=10)
    result.update(pool=len(ready), pool_wanted=pool_size, poll_errors=sum(m.errors for m, _ in members))
    for member, _ in members:
        member.leave()
        member.stop()
    admin.leave()
    admin.stop()
    return result


def single_client(base: str, rounds: int = 100, fx: dict | None = None) -> dict:
    fx = fx or fixtures()
    admin = JanusParticipant(base, "admin")
    admin.connect()
    room = create_room(admin, publishers=rounds + 20)
    rec = Recorder()
    for i in range(rounds + 10):
        me = JanusParticipant(base, f"solo{i}")
        me.connect()
        join_ms = me.join(room)
        ms = me.publish(fx["publish"])
        me.trickle(fx["publish_candidates"])
        if i >= 10:
            rec.add("join_to_ready", join_ms)
            rec.add("offer_to_answer", ms)
        me.leave()
        me.stop()
    admin.leave()
    admin.stop()
    return rec.report()


def memory(base: str, pid: int, count: int = 200, per_room: int = 10, fx: dict | None = None) -> dict:
    fx = fx or fixtures()
    admin = JanusParticipant(base, "admin")
    admin.connect()
    before = tree_rss_mib(pid)
    members = []
    for _ in range(count // per_room):
        room = create_room(admin, publishers=per_room + 2)
        members += [(JanusParticipant(base, "m"), room) for _ in range(per_room)]
    answered = 0

    def join_publish(pair) -> None:
        nonlocal answered
        member, room = pair
        try:
            member.connect()
            member.join(room)
            member.publish(fx["publish"])
            answered += 1
        except Exception:  # noqa: BLE001
            pass

    Pool(8).map(join_publish, members)
    gevent.sleep(2)
    after = tree_rss_mib(pid)
    for member, _ in members:
        member.stop()
    return {
        "participants": count,
        "answered": answered,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "rss_mib_per_100_participants": {"janus": round((after - before) * 100 / max(answered, 1), 2)},
    }


def idle_polls(base: str, pid: int, count: int = 2000) -> dict:
    """`count` Janus sessions each with one long poll outstanding (Janus holds a poll 30 s)."""
    baseline = sample_process(pid, 3)
    members = [JanusParticipant(base, f"i{i}") for i in range(count)]
    created = []

    def create(member: JanusParticipant) -> None:
        try:
            member.session_id = member._post("", {"janus": "create"})["data"]["id"]
            member.cmd.close()
            created.append(member)
        except Exception:  # noqa: BLE001
            pass

    t0 = time.monotonic()
    Pool(20).map(create, members)
    create_s = time.monotonic() - t0
    outcome = {"returned": 0, "errors": 0}

    def hold(member: JanusParticipant) -> None:
        try:
            member.pollhttp.call("GET", f"/{member.session_id}?maxev=10")
            outcome["returned"] += 1
        except Exception:  # noqa: BLE001
            outcome["errors"] += 1

    holders = [gevent.spawn(hold, m) for m in created]
    gevent.sleep(5)
    loaded = sample_process(pid, 10)
    pending = sum(1 for g in holders if not g.dead)
    at_sample = dict(outcome)
    gevent.killall(holders, block=True, timeout=10)
    for member in created:
        member.stop()
    return {
        "polls_wanted": count,
        "sessions_created": len(created),
        "create_s": round(create_s, 1),
        "polls_pending_during_sample": pending,
        "polls_returned_before_sample_end": at_sample["returned"],
        "poll_errors_before_sample_end": at_sample["errors"],
        "janus_at_rest": baseline,
        "janus_holding_polls": loaded,
    }
