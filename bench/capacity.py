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
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import gevent
import psutil
import requests
from gevent.pool import Pool

from bench.client import Participant, Service
from bench.loadgen import fixtures
from signaling_cli import processes
from tests.support.rabbit import create_vhost, delete_vhost

RESULTS = Path(__file__).resolve().parent / "results"
WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify"}
BACKGROUND_COLLECTIONS = {"media_servers", "leases", "lease"}

SITECUSTOMIZE = '''
"""Counts MongoDB commands of this process by name and collection (bench/capacity.py)."""
import json, os, threading, time
from collections import Counter

_DIR = os.environ.get("CAPACITY_MONGO_OPS_DIR")
if _DIR:
    import pymongo.monitoring

    class _CommandCounter(pymongo.monitoring.CommandListener):
        def __init__(self):
            self.counts = Counter()
            self.lock = threading.Lock()
            self.flushed = 0.0

        def started(self, event):
            target = event.command.get(event.command_name)
            key = f"{event.command_name}:{target if isinstance(target, str) else ''}"
            with self.lock:
                self.counts[key] += 1
                now = time.monotonic()
                if now - self.flushed < 0.25:
                    return
                self.flushed = now
                data = json.dumps(self.counts)
            path = os.path.join(_DIR, f"{os.getpid()}.json")
            with open(path + ".tmp", "w") as out:
                out.write(data)
            os.replace(path + ".tmp", path)

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    pymongo.monitoring.register(_CommandCounter())
'''


# --- the deployment ---------------------------------------------------------------------------
@contextmanager
def deployment(workers: int = 2):
    run_dir = Path(tempfile.mkdtemp(prefix="signaling-capacity-"))
    logs, hook, ops = run_dir / "logs", run_dir / "hook", run_dir / "mongo-ops"
    hook.mkdir(parents=True)
    ops.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    url, vhost = create_vhost()
    started: list[processes.ManagedProcess] = []
    try:
        mongo, mongo_uri = processes.start_mongo(run_dir / "mongo", logs)
        kms, kms_url = processes.start_emulator(logs, mode="signaling")
        started += [mongo, kms]
        env = {
            "RABBITMQ_URL": url,
            "MONGODB_URI": mongo_uri,
            "KMS_URLS": kms_url,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "SIGNALING_PREFIX": "cap",
            "SIGNALING_API_KEYS": "",
            # Every session creation and join comes from this one address, where real callers each
            # have their own bucket: a high rate, so none is refused; the default burst keeps the
            # bookkeeping as deployed (one bucket write per burst/10 requests of a caller).
            "RATE_LIMIT_PER_S": "1000",
            "PYTHONPATH": os.pathsep.join([str(hook), str(processes.ROOT)]),
            "CAPACITY_MONGO_OPS_DIR": str(ops),
        }
        metrics_ports = []
        for i in range(workers):
            port = processes.free_port()
            metrics_ports.append(port)
            worker_env = {**env, "WORKER_METRICS_PORT": str(port)}
            started.append(processes.start_worker(worker_env, logs, name=f"worker{i + 1}"))
        web = processes.start_web(env, logs)
        started.append(web)
        base = f"http://127.0.0.1:{web.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the deployment did not become ready")
            time.sleep(0.3)
        yield {
            "base": base,
            "procs": {p.name: p for p in started},
            "vhost": vhost,
            "ops_dir": ops,
            "metrics_ports": metrics_ports,
            "mongo_uri": mongo_uri,
        }
    finally:
        for proc in reversed(started):
            proc.stop()
        delete_vhost(vhost)
        shutil.rmtree(run_dir, ignore_errors=True)


# --- probes -------------------------------------------------------------------------------------
def tier(name: str) -> str:
    return {"kms": "emulator", "mongo": "mongodb"}.get(name, "workers" if name.startswith("worker") else name)


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_rss(procs: dict) -> dict:
    """Per tier: CPU seconds (user+sys) so far and RSS MiB, summed over each process tree."""
    out: dict[str, dict] = {}
    for name, proc in procs.items():
        entry = out.setdefault(tier(name), {"cpu_s": 0.0, "rss_mib": 0.0})
        for p in tree(proc.pid):
            try:
                times = p.cpu_times()
                entry["cpu_s"] += times.user + times.system
                entry["rss_mib"] += p.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                pass
    return out


def mongo_ops(ops_dir: Path) -> Counter:
    total = Counter()
    for path in ops_dir.glob("*.json"):
        try:
            total.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return total


def worker_metrics(ports: list[int]) -> dict:
    """Task counts and seconds by task name, summed over the workers."""
    from prometheus_client.parser import text_string_to_metric_families

    count, seconds = Counter(), Counter()
    for port in ports:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "signaling_task_seconds_count":
                    count[sample.labels["task"]] += sample.value
                elif sample.name == "signaling_task_seconds_sum":
                    seconds[sample.labels["task"]] += sample.value
    return {"count": count, "seconds": seconds}


def rabbit_queues(vhost: str | None) -> list[dict]:
    if not vhost:
        return []
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "memory", "messages", "type"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[1].isdigit():
            rows.append({"name": parts[0], "memory": int(parts[1]), "messages": int(parts[2]), "type": parts[3]})
    return rows


def erlang_processes() -> int | None:
    try:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "eval", "erlang:system_info(process_count)."],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return int(out.strip())
    except (ValueError, OSError, subprocess.TimeoutExpired):
        return None


class Probe:
    """Snapshot before a phase, deltas after it."""

    def __init__(self, dep: dict) -> None:
        self.dep = dep

    def snapshot(self) -> dict:
        # Let every process flush its MongoDB counters (they write at most every 0.25 s, on a command).
        requests.get(f"{self.dep['base']}/ready", timeout=10)
        gevent.sleep(0.6)
        requests.get(f"{self.dep['base']}/ready", timeout=10)
        return {
            "at": time.monotonic(),
            "cpu": cpu_rss(self.dep["procs"]),
            "ops": mongo_ops(self.dep["ops_dir"]),
            "tasks": worker_metrics(self.dep["metrics_ports"]),
        }

    def delta(self, before: dict, after: dict, background_cpu_per_s: dict | None = None) -> dict:
        seconds = after["at"] - before["at"]
        cpu = {}
        for name, now in after["cpu"].items():
            used = now["cpu_s"] - before["cpu"].get(name, {}).get("cpu_s", 0.0)
            if background_cpu_per_s:
                used = max(0.0, used - background_cpu_per_s.get(name, 0.0) * seconds)
            cpu[name] = {
                "cpu_s": round(used, 3),
                "rss_delta_mib": round(now["rss_mib"] - before["cpu"].get(name, {}).get("rss_mib", 0.0), 2),
                "rss_mib": round(now["rss_mib"], 1),
            }
        ops = after["ops"] - before["ops"]
        unit_ops = Counter({k: v for k, v in ops.items() if k.split(":", 1)[1] not in BACKGROUND_COLLECTIONS})
        tasks = {
            name: int(after["tasks"]["count"][name] - before["tasks"]["count"].get(name, 0))
            for name in after["tasks"]["count"]
        }
        task_s = {
            name: after["tasks"]["seconds"][name] - before["tasks"]["seconds"].get(name, 0.0)
            for name in after["tasks"]["seconds"]
        }
        return {
            "seconds": round(seconds, 2),
            "cpu": cpu,
            "mongo_writes": sum(v for k, v in unit_ops.items() if k.split(":")[0] in WRITE_COMMANDS),
            "mongo_reads": sum(v for k, v in unit_ops.items() if k.split(":")[0] in {"find", "aggregate", "count"}),
            "mongo_commands": dict(sorted((k, v) for k, v in unit_ops.items() if v)),
            "mongo_background_commands": dict(sorted((k, v) for k, v in ops.items() if k not in unit_ops and v)),
            "tasks": {k: v for k, v in tasks.items() if v},
            "task_wall_ms_mean": {k: round(1000 * task_s[k] / tasks[k], 2) for k in tasks if tasks[k]},
        }


def wait_tasks(probe: Probe, before: dict, expected: dict[str, int], timeout: float = 120) -> None:
    """Until the workers ran at least `expected` tasks of each name since `before`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = worker_metrics(probe.dep["metrics_ports"])["count"]
        if all(now[name] - before["tasks"]["count"].get(name, 0) >= n for name, n in expected.items()):
            gevent.sleep(0.3)
            return
        gevent.sleep(0.2)
    raise TimeoutError(f"tasks {expected} not done within {timeout} s")


def per_unit(delta: dict, units: int) -> dict:
    return {
        "units": units,
        "cpu_ms": {name: round(1000 * c["cpu_s"] / units, 3) for name, c in delta["cpu"].items()},
        "mongo_writes": round(delta["mongo_writes"] / units, 2),
        "mongo_reads": round(delta["mongo_reads"] / units, 2),
    }


# --- the phases ---------------------------------------------------------------------------------
def run(sessions: int = 40, per_session: int = 4, idle_polls: int = 1000) -> dict:
    fx = fixtures()
    results: dict = {
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
    with deployment() as dep:
        probe = Probe(dep)
        pool = Pool(8)
        queues_at_start = rabbit_queues(dep["vhost"])
        erl_start = erlang_processes()

        # Background: what the deployment costs doing nothing (health monitor, lease, heartbeats).
        first = probe.snapshot()
        gevent.sleep(8)
        idle = probe.snapshot()
        background = probe.delta(first, idle)
        bg_rate = {name: c["cpu_s"] / background["seconds"] for name, c in background["cpu"].items()}
        results["background_per_s"] = {
            "cpu_ms": {name: round(1000 * v, 2) for name, v in bg_rate.items()},
            "mongo_commands": {
                k: round(v / background["seconds"], 2) for k, v in background["mongo_background_commands"].items()
            },
        }
        phases: dict = {}

        def phase(name: str, units: int, work, expected_tasks: dict[str, int] | None = None) -> dict:
            before = probe.snapshot()
            work()
            if expected_tasks:
                wait_tasks(probe, before, expected_tasks)
            after = probe.snapshot()
            delta = probe.delta(before, after, bg_rate)
            phases[name] = {**delta, "per_unit": per_unit(delta, units)}
            return delta

        rooms: list[dict] = []

        def create(_i: int) -> dict:
            own = Service(dep["base"])  # one HTTP connection each: bench.http is not shared safely
            try:
                return own.create_session(max_participants=per_session + 1)
            finally:
                own.http.close()

        phase(
            "sessions",
            sessions,
            lambda: rooms.extend(pool.map(create, range(sessions))),
            {"media.create_session": sessions},
        )

        members = [
            Participant(dep["base"], room, f"c{i}-{j}") for i, room in enumerate(rooms) for j in range(per_session)
        ]
        count = len(members)
        phase("joins", count, lambda: pool.map(lambda m: m.join(poll=False), members), {"media.announce_join": count})
        queues_after_join = rabbit_queues(dep["vhost"])
        erl_after_join = erlang_processes()

        def by_member(pairs) -> list[list]:
            """A participant's requests one after another: its HTTP connection is not shared."""
            grouped: dict[int, list] = {}
            for member, stream in pairs:
                grouped.setdefault(id(member), []).append((member, stream))
            return list(grouped.values())

        def offers(stream_of) -> None:
            def some(pairs):
                for member, stream in pairs:
                    sdp = fx["publish"] if stream == "publish" else fx["subscribe"]
                    member.cmd.call(
                        "POST", f"{member._path}/offers", {"stream": stream, "sdp": sdp}, headers=member._auth
                    )

            pool.map(some, by_member(stream_of()))

        def candidates(stream_of) -> None:
            def some(pairs):
                for member, stream in pairs:
                    key = "publish_candidates" if stream == "publish" else "subscribe_candidates"
                    member.cmd.call(
                        "POST",
                        f"{member._path}/candidates",
                        {"stream": stream, "candidates": fx[key]},
                        headers=member._auth,
                    )

            pool.map(some, by_member(stream_of()))

        def publish_streams():
            return [(m, "publish") for m in members]

        def subscribe_streams():
            return [(m, o.participant_id) for m in members for o in members if o is not m and o.session is m.session]

        subs = len(subscribe_streams())
        phase("publish_offers", count, lambda: offers(publish_streams), {"media.process_offer": count})
        phase("publish_candidates", count, lambda: candidates(publish_streams), {"media.add_candidates": count})
        phase("subscribe_offers", subs, lambda: offers(subscribe_streams), {"media.process_offer": subs})
        phase("subscribe_candidates", subs, lambda: candidates(subscribe_streams), {"media.add_candidates": subs})
        queues_loaded = rabbit_queues(dep["vhost"])

        delivered = Counter()

        def drain(member: Participant) -> None:
            while True:
                got = member.poll_once(0)
                delivered["messages"] += len(got)
                delivered["polls"] += 1
                if not got:
                    return

        phase("polls_drain", count, lambda: pool.map(drain, members))
        phases["polls_drain"]["messages_delivered"] = delivered["messages"]
        phases["polls_drain"]["polls"] = delivered["polls"]
        polls_with_messages = delivered["polls"] - count
        phases["polls_drain"]["per_message"] = per_unit(phases["polls_drain"], max(delivered["messages"], 1))
        phase("polls_empty", count, lambda: pool.map(lambda m: m.poll_once(0), members))
        queues_drained = rabbit_queues(dep["vhost"])

        phase(
            "chat", count, lambda: pool.map(lambda m: m.send({"text": "hello"}), members), {"media.send_message": count}
        )
        delivered.clear()
        phase("chat_delivery_polls", count, lambda: pool.map(drain, members))
        phases["chat_delivery_polls"]["messages_delivered"] = delivered["messages"]
        for member in members:
            member.stop()

        results["phases"] = phases
        participant_queues = [q for q in queues_after_join if ".participant." in q["name"]]
        results["rabbitmq"] = {
            "queues_at_start": len(queues_at_start),
            "queues_at_start_by_type": dict(Counter(q["type"] for q in queues_at_start)),
            "participant_queues_after_joins": len(participant_queues),
            "participants": count,
            "queues_per_participant": round(len(participant_queues) / count, 3),
            "participant_queue_memory_bytes": summary_bytes(participant_queues),
            "participant_queue_memory_bytes_loaded": summary_bytes(
                [q for q in queues_loaded if ".participant." in q["name"]]
            ),
            "messages_waiting_per_participant_loaded": round(
                sum(q["messages"] for q in queues_loaded if ".participant." in q["name"]) / count, 1
            ),
            "participant_queue_memory_bytes_drained": summary_bytes(
                [q for q in queues_drained if ".participant." in q["name"]]
            ),
            "shard_queue_memory_bytes": summary_bytes([q for q in queues_drained if ".shard." in q["name"]]),
            "erlang_processes_delta_per_participant_queue_noisy": (
                round((erl_after_join - erl_start) / max(len(participant_queues), 1), 2)
                if erl_start and erl_after_join
                else None
            ),
            "note": "the broker is shared with whatever else runs on this machine; the process-count "
            "delta is indicative only",
        }
        results["polls_with_messages"] = polls_with_messages
        results["mongodb_documents"] = documents(dep["mongo_uri"], count, sessions)

        # Idle long polls on the one web process.
        from bench.loadgen import idle_polls as hold_idle_polls

        web_pid = dep["procs"]["web"].pid
        results["idle_polls"] = hold_idle_polls(
            dep["base"], web_pid, count=idle_polls, per_session=10, wait=30, budget_s=120
        )
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

    client = pymongo.MongoClient(mongo_uri)
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


def summarize(results: dict) -> dict:
    """The figures docs/scaling.md quotes, per unit."""
    p = results["phases"]
    count = p["joins"]["per_unit"]["units"]
    subs_per = p["subscribe_offers"]["per_unit"]["units"] / count

    def cpu(phase: str, name: str) -> float:
        return p[phase]["cpu"][name]["cpu_s"] if name in p[phase]["cpu"] else 0.0

    participant_phases = [
        "joins",
        "publish_offers",
        "publish_candidates",
        "subscribe_offers",
        "subscribe_candidates",
        "polls_drain",
        "polls_empty",
    ]
    tiers = ["web", "workers", "mongodb", "emulator"]
    participant_cpu_ms = {t: round(1000 * sum(cpu(ph, t) for ph in participant_phases) / count, 2) for t in tiers}
    rss_per_participant_kib = {
        t: round(
            1024 * sum(p[ph]["cpu"][t]["rss_delta_mib"] for ph in participant_phases if t in p[ph]["cpu"]) / count, 1
        )
        for t in tiers
    }
    idle = results["idle_polls"]
    held = max(idle.get("polls_pending_during_sample", 0), 1)
    task_cpu = {}
    for phase, task in [
        ("sessions", "media.create_session"),
        ("joins", "media.announce_join"),
        ("publish_offers", "media.process_offer"),
        ("publish_candidates", "media.add_candidates"),
        ("subscribe_offers", "media.process_offer (subscribe)"),
        ("subscribe_candidates", "media.add_candidates (subscribe)"),
        ("chat", "media.send_message"),
    ]:
        n = sum(p[phase]["tasks"].values()) or 1
        task_cpu[task] = {
            "worker_cpu_ms": round(1000 * cpu(phase, "workers") / n, 2),
            "wall_ms": next(iter(p[phase]["task_wall_ms_mean"].values()), None),
        }
    return {
        "session": {
            "cpu_ms": {t: round(1000 * cpu("sessions", t) / p["sessions"]["per_unit"]["units"], 2) for t in tiers},
            "mongo_writes": p["sessions"]["per_unit"]["mongo_writes"],
        },
        "participant": {
            "definition": f"joined, publishing, subscribed to {subs_per:.0f} others, "
            "candidates trickled, queue drained once",
            "cpu_ms": participant_cpu_ms,
            "rss_kib": rss_per_participant_kib,
            "mongo_writes": round(sum(p[ph]["mongo_writes"] for ph in participant_phases) / count, 1),
        },
        "mongo_writes_per": {
            "session_create": p["sessions"]["per_unit"]["mongo_writes"],
            "join": p["joins"]["per_unit"]["mongo_writes"],
            "offer_publish": p["publish_offers"]["per_unit"]["mongo_writes"],
            "offer_subscribe": p["subscribe_offers"]["per_unit"]["mongo_writes"],
            "candidates_post": p["publish_candidates"]["per_unit"]["mongo_writes"],
            "poll_with_messages": round(p["polls_drain"]["mongo_writes"] / max(results["polls_with_messages"], 1), 2),
            "message_delivered": p["polls_drain"]["per_message"]["mongo_writes"],
            "poll_empty": p["polls_empty"]["per_unit"]["mongo_writes"],
            "chat_post": p["chat"]["per_unit"]["mongo_writes"],
        },
        "idle_poll": {
            "held": idle.get("polls_pending_during_sample"),
            "web_rss_kib_per_poll": round(
                1024 * (idle["web_holding_polls"]["rss_mib"] - idle["web_at_rest"]["rss_mib"]) / held, 1
            ),
            "web_cpu_percent_of_core_per_1000_polls": round(
                1000
                * (
                    idle["web_holding_polls"]["cpu_percent_of_one_core"]
                    - idle["web_at_rest"]["cpu_percent_of_one_core"]
                )
                / held,
                2,
            ),
        },
        "task_cpu": task_cpu,
        "rabbitmq": {
            "queues_per_participant": results["rabbitmq"]["queues_per_participant"],
            "participant_queue_bytes_idle": results["rabbitmq"]["participant_queue_memory_bytes_drained"],
            "participant_queue_bytes_loaded": results["rabbitmq"]["participant_queue_memory_bytes_loaded"],
        },
    }


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
