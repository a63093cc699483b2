"""Counted, not estimated: what one offer costs in MongoDB commands, KMS requests and broker messages.

- MongoDB: every web and worker process of a counting deployment (bench/stack.py, `count=True`)
  loads the `sitecustomize` below, a pymongo CommandListener. In the suite it counts only while
  a flag file exists (`Counts.on()`), in a window of its own after the CPU window: outside it
  the listener returns at once, so the CPU figures carry only pymongo's event dispatch. Each
  command is keyed by tier, command, collection and the web request's route ("-" outside a
  request), and every counted command rewrites the process's file, so a read is exact.
- KMS: the workers' Prometheus counters `signaling_kms_requests_total{method}` and
  `signaling_kms_round_trips_total{kind}` (absent in a build without it: reported as null).
- Broker: the vhost's message counters from RabbitMQ's management API (publish, confirm,
  deliver, ack, redeliver, get). The broker refreshes them every 5 s, so a read waits for that.

What the deployment does by itself (lease renewals, health checks, Celery heartbeats) is
measured in an idle window just before and subtracted at its rate.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from signaling_cli.rabbitmq_management import beside_broker

SITECUSTOMIZE = '''
"""Counts MongoDB commands of this process (bench/counting.py)."""
import json, os, sys, threading, time
from collections import Counter

_DIR = os.environ.get("BENCH_MONGO_OPS_DIR")
if _DIR:
    import pymongo.monitoring

    _TIER = os.environ.get("BENCH_TIER", "other")
    # Always counting (bench capacity), files written at most every 0.25 s; otherwise only while
    # the flag file exists (checked at most every 0.1 s), every command written at once.
    _ALWAYS = os.environ.get("BENCH_MONGO_OPS_ALWAYS") == "1"
    _FLAG = os.path.join(_DIR, "on")

    def _route():
        flask = sys.modules.get("flask")
        try:
            if flask is None or not flask.has_request_context():
                return "-"
            rule = flask.request.url_rule
            return flask.request.method + " " + (rule.rule if rule is not None else "?")
        except Exception:
            return "?"

    class _CommandCounter(pymongo.monitoring.CommandListener):
        def __init__(self):
            self.counts = Counter()
            self.lock = threading.Lock()
            self.active = _ALWAYS
            self.checked = 0.0
            self.flushed = 0.0

        def started(self, event):
            now = time.monotonic()
            if not _ALWAYS and now - self.checked > 0.1:
                self.checked = now
                self.active = os.path.exists(_FLAG)
            if not self.active:
                return
            target = event.command.get(event.command_name)
            key = event.command_name + ":" + (target if isinstance(target, str) else "")
            if not _ALWAYS:
                key = _TIER + "|" + key + "|" + _route()
            with self.lock:
                self.counts[key] += 1
                if _ALWAYS and now - self.flushed < 0.25:
                    return
                self.flushed = now
                path = os.path.join(_DIR, _TIER + "-" + str(os.getpid()) + ".json")
                with open(path + ".tmp", "w") as out:
                    out.write(json.dumps(self.counts))
                os.replace(path + ".tmp", path)

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    pymongo.monitoring.register(_CommandCounter())
'''

WRITES = {"insert", "update", "delete", "findAndModify"}
KMS_REQUESTS = "signaling_kms_requests_total"
KMS_ROUND_TRIPS = "signaling_kms_round_trips_total"
BROKER_FIELDS = ("publish", "confirm", "deliver", "deliver_no_ack", "ack", "redeliver", "get", "get_empty")
BROKER_REFRESH_S = 5.0  # RabbitMQ's collect_statistics_interval default
IDLE_S = 3.0


def install_hook(run_dir: Path, always: bool = False) -> dict[str, str]:
    """Writes the sitecustomize under run_dir; the environment that makes a process load it."""
    from signaling_cli import processes

    hook, ops = run_dir / "hook", run_dir / "mongo-ops"
    hook.mkdir(parents=True, exist_ok=True)
    ops.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"PYTHONPATH": f"{hook}:{processes.ROOT}", "BENCH_MONGO_OPS_DIR": str(ops)}
    return env | ({"BENCH_MONGO_OPS_ALWAYS": "1"} if always else {})


def mongo_counts(ops_dir: Path) -> Counter[str]:
    total: Counter[str] = Counter()
    for path in ops_dir.glob("*.json"):
        try:
            total.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return total


def kms_counts(metrics_urls: list[str]) -> dict[str, dict[str, float] | None]:
    """Requests by method and round trips by kind, summed over the workers (None: not exported)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict[str, float] | None] = {"requests": None, "round_trips": None}
    for url in metrics_urls:
        for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
            for sample in family.samples:
                if sample.name == KMS_REQUESTS:
                    key, label = "requests", sample.labels.get("method", "")
                elif sample.name == KMS_ROUND_TRIPS:
                    key, label = "round_trips", sample.labels.get("kind", "")
                else:
                    continue
                counter = found[key]
                if counter is None:
                    counter = found[key] = {}
                counter[label] = counter.get(label, 0.0) + sample.value
    return found


def broker_counts(rabbitmq_url: str, vhost: str | None) -> Counter[str] | None:
    if not vhost:
        return None
    try:
        body = requests.get(f"{beside_broker(rabbitmq_url)}vhosts/{quote(vhost, safe='')}", timeout=5).json()
    except (requests.RequestException, ValueError):
        return None
    stats = body.get("message_stats", {})
    return Counter({k: int(stats.get(k, 0)) for k in BROKER_FIELDS})


class Counts:
    """Snapshots of every counter of one counting deployment."""

    def __init__(self, ops_dir: Path, metrics_urls: list[str], rabbitmq_url: str, vhost: str | None) -> None:
        self.ops_dir, self.metrics_urls = ops_dir, metrics_urls
        self.rabbitmq_url, self.vhost = rabbitmq_url, vhost

    def on(self) -> None:
        (self.ops_dir / "on").touch()
        time.sleep(0.3)  # every process looks at the flag again within 0.1 s of a command

    def off(self) -> None:
        (self.ops_dir / "on").unlink(missing_ok=True)

    def snapshot(self, broker: bool = True) -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "mongo": mongo_counts(self.ops_dir),
            "kms": kms_counts(self.metrics_urls),
            "broker": broker_counts(self.rabbitmq_url, self.vhost) if broker else None,
        }


# --- per offer ------------------------------------------------------------------------------------
def net(start: Counter[str], end: Counter[str], idle_per_s: dict[str, float], seconds: float) -> dict[str, float]:
    """end - start, less what the deployment does by itself over `seconds`."""
    keys = set(end) | set(idle_per_s)
    return {k: max(0.0, end.get(k, 0) - start.get(k, 0) - idle_per_s.get(k, 0.0) * seconds) for k in keys}


def rate(a: Counter[str] | None, b: Counter[str] | None, seconds: float) -> dict[str, float]:
    if a is None or b is None or seconds <= 0:
        return {}
    return {k: (b.get(k, 0) - a.get(k, 0)) / seconds for k in set(a) | set(b)}


def _group(net: dict[str, float], part: int, offers: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in net.items():
        tier, command, route = key.split("|")
        name = (tier, command.split(":")[0], route)[part]
        out[name] = out.get(name, 0.0) + value
    return {k: round(v / offers, 2) for k, v in sorted(out.items()) if round(v / offers, 2)}


def _command(key: str) -> str:
    """The command of a "tier|command:collection|route" key."""
    return key.split("|")[1].split(":")[0]


def _is_poll(route: str) -> bool:
    return route.startswith("GET ") and route.endswith("/messages")


def mongo_per_offer(counted: dict[str, float], offers: int, delivering_polls: int) -> dict[str, Any]:
    """Per offer: total, by tier, by command; writes of the web tier per delivering poll (those in
    the poll request and those outside any request, e.g. a lease released after the response)."""
    poll_writes = sum(
        v
        for k, v in counted.items()
        if (parts := k.split("|"))[0] == "web" and _command(k) in WRITES and (_is_poll(parts[2]) or parts[2] == "-")
    )
    detail = {k: round(v / offers, 2) for k, v in sorted(counted.items()) if round(v / offers, 2)}
    return {
        "ops_per_offer": round(sum(counted.values()) / offers, 2),
        "writes_per_offer": round(sum(v for k, v in counted.items() if _command(k) in WRITES) / offers, 2),
        "by_tier": _group(counted, 0, offers),
        "by_command": _group(counted, 1, offers),
        "delivering_polls_per_offer": round(delivering_polls / offers, 2),
        "writes_per_delivering_poll": round(poll_writes / delivering_polls, 2) if delivering_polls else None,
        "detail_per_offer": detail,  # "tier|command:collection|route"
    }


def kms_per_offer(start: dict, end: dict, offers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("requests", "round_trips"):
        a, b = start[key], end[key]
        if b is None:
            out[f"{key}_per_offer"] = None
            continue
        delta = {k: (b.get(k, 0) - (a or {}).get(k, 0)) / offers for k in b}
        out[f"{key}_per_offer"] = round(sum(delta.values()), 2)
        out[f"{key}_by_label"] = {k: round(v, 2) for k, v in sorted(delta.items()) if round(v, 2)}
    return out


def broker_per_offer(
    start: Counter[str] | None, end: Counter[str] | None, idle_per_s: dict[str, float], seconds: float, offers: int
) -> dict[str, float] | None:
    if start is None or end is None:
        return None
    delta = net(start, end, idle_per_s, seconds)
    return {k: round(v / offers, 2) for k, v in sorted(delta.items()) if k in BROKER_FIELDS}
