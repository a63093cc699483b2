"""Per-unit costs on this machine, for the capacity model in docs/scaling.md.

`python -m bench capacity` (or `python -m bench.capacity`) starts a throw-away deployment (own
vhost, nx-27017, one signaling-mode emulator, 2 workers, 1 web process) and runs phases one
after the other, each of a single kind of work, so a phase's deltas are that unit's cost:

  sessions   create S sessions                      -> media.create_session
  joins      4 participants join each session       -> media.announce_join (+ one pipeline each)
  publish    every participant offers its publish stream, then trickles
  subscribe  every participant subscribes to the 3 others, then trickles
  polls      every participant drains its queue (wait=0), then one empty poll
  chat       every participant broadcasts one message, then everyone drains
  idle       N more participants each hold one waiting long poll on the web process

Measured per phase: CPU seconds (user+sys, whole process tree) of the web tier, the workers,
nx-27017 and the emulator; RSS; the tasks each worker ran (its `signaling_tasks_total` and
`signaling_task_seconds`); MongoDB commands by name and collection, counted in the web and
worker processes by a pymongo CommandListener installed through a `sitecustomize` on their
PYTHONPATH (nx-27017 has no `serverStatus` opcounters); RabbitMQ queues of the vhost with
their memory (`rabbitmqctl list_queues`). Background work that is not the unit's (the KMS
health monitor's `media_servers` writes, the leader lease) is reported apart.

Prints JSON and writes bench/results/capacity.json.
"""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import json
import os
import platform
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from gevent.pool import Pool

from bench.capacity_probe import Probe, deployment, erlang_processes, per_unit, rabbit_queues, wait_tasks
from bench.capacity_summary import summarize
from bench.client import OurSystem, Participant, Service
from bench.protocol import Fixtures
from bench.scenarios.footprint import idle_polls as hold_idle_polls

RESULTS = Path(__file__).resolve().parent / "results"
Stream = tuple[Participant, str]


def by_member(pairs: list[Stream]) -> list[list[Stream]]:
    """A participant's requests one after another: its HTTP connection is not shared."""
    grouped: dict[int, list[Stream]] = {}
    for member, stream in pairs:
        grouped.setdefault(id(member), []).append((member, stream))
    return list(grouped.values())


class Phases:
    """Runs one kind of work at a time and keeps its deltas (background CPU taken out)."""

    def __init__(self, dep: dict) -> None:
        self.dep, self.probe, self.pool = dep, Probe(dep), Pool(8)
        self.phases: dict = {}
        self.bg_rate: dict[str, float] = {}
        self.delivered: Counter[str] = Counter()

    def background(self, seconds: float = 8) -> dict:
        """What the deployment costs doing nothing (health monitor, lease, heartbeats)."""
        first = self.probe.snapshot()
        gevent.sleep(seconds)
        background = self.probe.delta(first, self.probe.snapshot())
        self.bg_rate = {name: c["cpu_s"] / background["seconds"] for name, c in background["cpu"].items()}
        commands = background["mongo_background_commands"].items()
        return {
            "cpu_ms": {name: round(1000 * v, 2) for name, v in self.bg_rate.items()},
            "mongo_commands": {k: round(v / background["seconds"], 2) for k, v in commands},
        }

    def run(self, name: str, units: int, work: Callable[[], object], tasks: dict[str, int] | None = None) -> dict:
        before = self.probe.snapshot()
        work()
        if tasks:
            wait_tasks(self.probe, before, tasks)
        delta = self.probe.delta(before, self.probe.snapshot(), self.bg_rate)
        self.phases[name] = {**delta, "per_unit": per_unit(delta, units)}
        return dict(self.phases[name])

    def each(self, fn: Callable[[Participant], object], members: list[Participant]) -> Callable[[], object]:
        return lambda: self.pool.map(fn, members)

    def streams(self, fn: Callable[[Participant, str], None], pairs: list[Stream]) -> Callable[[], object]:
        def some(group: list[Stream]) -> None:
            for member, stream in group:
                fn(member, stream)

        return lambda: self.pool.map(some, by_member(pairs))

    def drain(self, member: Participant) -> None:
        while True:
            got = member.poll_once(0)
            self.delivered["messages"] += len(got)
            self.delivered["polls"] += 1
            if not got:
                return


def _sessions(ph: Phases, sessions: int, per_session: int) -> list[dict]:
    rooms: list[dict] = []

    def create(_i: int) -> dict:
        own = Service(ph.dep["base"])  # one HTTP connection each: bench.http is not shared safely
        try:
            return own.create_session(max_participants=per_session + 1)
        finally:
            own.http.close()

    ph.run(
        "sessions",
        sessions,
        lambda: rooms.extend(ph.pool.map(create, range(sessions))),
        {"media.create_session": sessions},
    )
    return rooms


def _negotiations(ph: Phases, members: list[Participant], fx: Fixtures) -> None:
    publish = [(m, "publish") for m in members]
    subscribe = [(m, str(o.participant_id)) for m in members for o in members if o is not m and o.session is m.session]

    def offer(member: Participant, stream: str) -> None:
        member.post_offer(stream, fx.publish if stream == "publish" else fx.subscribe)

    def candidates(member: Participant, stream: str) -> None:
        member.post_candidates(stream, fx.publish_candidates if stream == "publish" else fx.subscribe_candidates)

    count, subs = len(publish), len(subscribe)
    ph.run("publish_offers", count, ph.streams(offer, publish), {"media.process_offer": count})
    ph.run("publish_candidates", count, ph.streams(candidates, publish), {"media.add_candidates": count})
    ph.run("subscribe_offers", subs, ph.streams(offer, subscribe), {"media.process_offer": subs})
    ph.run("subscribe_candidates", subs, ph.streams(candidates, subscribe), {"media.add_candidates": subs})


def _polls_and_chat(ph: Phases, members: list[Participant]) -> int:
    """Drain, empty polls, chat and its delivery; returns the polls that carried messages."""
    count = len(members)
    drained = ph.run("polls_drain", count, ph.each(ph.drain, members))
    ph.phases["polls_drain"]["messages_delivered"] = ph.delivered["messages"]
    ph.phases["polls_drain"]["polls"] = ph.delivered["polls"]
    ph.phases["polls_drain"]["per_message"] = per_unit(drained, max(ph.delivered["messages"], 1))
    polls_with_messages = ph.delivered["polls"] - count
    ph.run("polls_empty", count, ph.each(lambda m: m.poll_once(0), members))
    ph.run("chat", count, ph.each(lambda m: m.send({"text": "hello"}), members), {"media.send_message": count})
    ph.delivered.clear()
    ph.run("chat_delivery_polls", count, ph.each(ph.drain, members))
    ph.phases["chat_delivery_polls"]["messages_delivered"] = ph.delivered["messages"]
    return polls_with_messages


def _participant_queues(queues: list[dict]) -> list[dict]:
    return [q for q in queues if ".participant." in q["name"]]


def _rabbitmq(queues: dict[str, list[dict]], erl: dict[str, int | None], count: int) -> dict:
    joined = _participant_queues(queues["after_join"])
    loaded = _participant_queues(queues["loaded"])
    erl_start, erl_join = erl["start"], erl["after_join"]
    return {
        "queues_at_start": len(queues["start"]),
        "queues_at_start_by_type": dict(Counter(q["type"] for q in queues["start"])),
        "participant_queues_after_joins": len(joined),
        "participants": count,
        "queues_per_participant": round(len(joined) / count, 3),
        "participant_queue_memory_bytes": summary_bytes(joined),
        "participant_queue_memory_bytes_loaded": summary_bytes(loaded),
        "messages_waiting_per_participant_loaded": round(sum(q["messages"] for q in loaded) / count, 1),
        "participant_queue_memory_bytes_drained": summary_bytes(_participant_queues(queues["drained"])),
        "shard_queue_memory_bytes": summary_bytes([q for q in queues["drained"] if ".shard." in q["name"]]),
        "erlang_processes_delta_per_participant_queue_noisy": (
            round((erl_join - erl_start) / max(len(joined), 1), 2) if erl_start and erl_join else None
        ),
        "note": "the broker is shared with whatever else runs on this machine; the process-count "
        "delta is indicative only",
    }


def _config(sessions: int, per_session: int, idle_polls: int) -> dict:
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
        "config": {
            "sessions": sessions,
            "per_session": per_session,
            "idle_polls": idle_polls,
            "workers": 2,
            "web_processes": 1,
            "kms": "emulator, signaling mode",
        },
    }


def _measure(dep: dict, results: dict, sessions: int, per_session: int) -> list[Participant]:
    ph = Phases(dep)
    queues = {"start": rabbit_queues(dep["vhost"])}
    erl = {"start": erlang_processes()}
    results["background_per_s"] = ph.background()
    rooms = _sessions(ph, sessions, per_session)
    members = [Participant(dep["base"], room, f"c{i}-{j}") for i, room in enumerate(rooms) for j in range(per_session)]
    ph.run(
        "joins", len(members), ph.each(lambda m: m.join(confirm=False), members), {"media.announce_join": len(members)}
    )
    queues["after_join"], erl["after_join"] = rabbit_queues(dep["vhost"]), erlang_processes()
    _negotiations(ph, members, Fixtures.load())
    queues["loaded"] = rabbit_queues(dep["vhost"])
    results["polls_with_messages"] = _polls_and_chat(ph, members)
    queues["drained"] = rabbit_queues(dep["vhost"])
    results["phases"] = ph.phases
    results["rabbitmq"] = _rabbitmq(queues, erl, len(members))
    return members


def run(sessions: int = 40, per_session: int = 4, idle_polls: int = 1000) -> dict:
    results = _config(sessions, per_session, idle_polls)
    with deployment() as dep:
        members = _measure(dep, results, sessions, per_session)
        for member in members:
            member.stop()
        results["mongodb_documents"] = documents(dep["mongo_uri"], len(members), sessions)
        # Idle long polls on the one web process.
        system = OurSystem(dep["base"], dep["procs"])
        results["idle_polls"] = hold_idle_polls(system, count=idle_polls, per_room=10, wait=30, budget_s=120)
    results["units"] = summarize(results)
    return results


def summary_bytes(queues: list[dict]) -> dict:
    if not queues:
        return {}
    values = sorted(q["memory"] for q in queues)
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values)),
        "median": values[len(values) // 2],
        "max": values[-1],
    }


def documents(mongo_uri: str, participants: int, sessions: int) -> dict:
    """Documents per collection and their mean BSON size, per participant."""
    import bson
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_uri)
    try:
        db = client.get_default_database()
        out = {}
        for name in db.list_collection_names():
            docs = list(db[name].find())
            size = sum(len(bson.encode(d)) for d in docs)
            out[name] = {"documents": len(docs), "bytes": size, "per_participant": round(len(docs) / participants, 2)}
        return {"participants": participants, "sessions": sessions, "collections": out}
    finally:
        client.close()


def main(quick: bool = False) -> dict:
    results = run(sessions=10 if quick else 40, idle_polls=200 if quick else 1000)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "capacity.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    print(json.dumps(results, indent=2, sort_keys=True, default=str))
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.capacity")
    parser.add_argument("--quick", action="store_true")
    main(quick=parser.parse_args().quick)
