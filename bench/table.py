"""The headline rows of bench.json: metric, ours, Janus, ratio ours/Janus (lower is better unless
noted). docs/benchmarks.md quotes them; their names and order are part of the format."""

from __future__ import annotations

from typing import Any

Path_ = tuple[str, ...]
NA = "n/a"

JOIN_NOTE = "ours: POST join -> own participantJoined on the poll; Janus: create+attach+join -> joined"
CALLS = ("calls", "latency_ms")

P3 = ("p50", "p95", "p99")
# (metric with {q} for the quantile, quantiles, path in both results, whether Janus has it, note)
LATENCIES: list[tuple[str, tuple[str, ...], Path_, bool, str]] = [
    ("offer_to_answer_ms {q} (50 sessions x 4)", P3, (*CALLS, "offer_to_answer"), True, ""),
    (
        "offer_to_answer_ms {q} (1 client, sequential)",
        ("p50", "p99"),
        ("single_client", "latency_ms", "offer_to_answer"),
        True,
        "",
    ),
    ("join_to_ready_ms {q} (50 sessions x 4)", P3, (*CALLS, "join_to_ready"), True, JOIN_NOTE),
    (
        "subscribe offer_to_answer_ms {q}",
        ("p50", "p99"),
        (*CALLS, "subscribe_offer_to_answer"),
        False,
        "Janus subscribers need a publisher whose ICE completed",
    ),
]
FANOUT: list[tuple[str, str, bool, str]] = [
    ("event_fanout_ms {q} (broadcast POST -> all 50)", "broadcast_all_50", False, "Janus has no REST broadcast"),
    ("event_fanout_ms {q} (join -> all 50 notified)", "join_announce_all_50", True, "Janus: videoroom notify_joining"),
]


def get(d: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


class _Rows:
    def __init__(self, ours: dict, janus: dict) -> None:
        self.ours, self.janus = ours, janus
        self.rows: list[dict] = []

    def add(self, metric: str, a: Any, b: Any, note: str = "") -> None:
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
        ratio = round(a / b, 2) if numbers and b else None
        self.rows.append({"metric": metric, "ours": a, "janus": b, "ratio_ours_over_janus": ratio, "note": note})

    def pair(self, metric: str, ours_path: Path_, janus_path: Path_ | None, note: str = "") -> None:
        janus = NA if janus_path is None else get(self.janus, *janus_path)
        self.add(metric, get(self.ours, *ours_path), janus, note)

    def per_tier(self, prefix: str, values: dict) -> None:
        for tier, value in values.items():
            self.add(f"{prefix}: {tier}", value, None)


def _latencies(rows: _Rows) -> None:
    for metric, quantiles, path, janus_has, note in LATENCIES:
        for q in quantiles:
            rows.pair(metric.format(q=q), (*path, q), (*path, q) if janus_has else None, note)
    for q in ("p50", "p99"):
        for metric, key, janus_has, note in FANOUT:
            path = ("fanout", "latency_ms", key, q)
            rows.pair(metric.format(q=q), path, path if janus_has else None, note)
    for q in ("p50", "p99"):
        rows.pair(f"dispatch_ms {q} (enqueue -> task start)", ("dispatch_ms", "all", q), None, "no task queue in Janus")


def _costs(rows: _Rows) -> None:
    rows.pair(
        "CPU ms per offer, all tiers (1 client)",
        ("cpu_per_offer", "total_cpu_ms_per_offer"),
        ("cpu_per_offer", "total_cpu_ms_per_offer"),
        "ours: web, workers, emulator, MongoDB stand-in and RabbitMQ; Janus: one join+publish+leave",
    )
    rows.per_tier("CPU ms per offer", get(rows.ours, "cpu_per_offer", "cpu_ms_per_offer", default={}) or {})
    for flow in ("shared_token", "minted_token"):
        for label, key in (("CPU ms", "all_tiers_cpu_ms_per_join"), ("MongoDB ops", "mongo_ops_per_join")):
            rows.add(f"{label} per join ({flow.replace('_', ' ')})", get(rows.ours, "cost_per_join", flow, key), None)
    path = ("sustained", "sustained_offers_per_s")
    rows.pair("sustained_offers_per_s (p95 <= 50 ms)", path, path, "higher is better; highest step tested 640/s")
    path = ("idle_polls", "polls_pending_during_sample")
    rows.pair("idle polls held (of 2000)", path, path, "higher is better")
    for label, key in (("CPU % of one core", "cpu_percent_of_one_core"), ("RSS MiB", "rss_mib")):
        rows.pair(
            f"idle 2000 polls: {label}",
            ("idle_polls", "web_holding_polls", key),
            ("idle_polls", "janus_holding_polls", key),
        )
    per100 = get(rows.ours, "memory", "rss_mib_per_100_participants", default={}) or {}
    total = round(sum(v for v in per100.values() if isinstance(v, (int, float))), 2) if per100 else None
    janus = get(rows.janus, "memory", "rss_mib_per_100_participants", "janus")
    rows.add("RSS MiB per 100 participants (all tiers)", total, janus, "joined + published")
    rows.per_tier("RSS MiB per 100 participants", per100)


def table(ours: dict, janus: dict) -> list[dict]:
    rows = _Rows(ours, janus)
    _latencies(rows)
    _costs(rows)
    return rows.rows


# --- issue 13's targets -----------------------------------------------------------------------
def _target(figure: str, ours: Any, limit: float | None, at_most: bool = True, unit: str = "") -> dict:
    """One target row: `met` is None when the figure is missing (or has no target)."""
    met = None
    if isinstance(ours, (int, float)) and limit is not None:
        met = ours <= limit if at_most else ours >= limit
    text = "" if limit is None else f"{'<=' if at_most else '>='} {limit:g}{unit}"
    return {"figure": figure, "ours": ours, "target": text, "limit": limit, "at_most": at_most, "met": met}


def _failed_offers(ours: dict) -> int | None:
    """Publishes and subscribes of the calls scenario that never got an answer (errors or deadline)."""
    calls = get(ours, "calls", default={}) or {}
    if "sessions" not in calls:
        return None
    people, each = calls["sessions"] * calls["participants"], calls["participants"] - 1
    answered = sum(
        get(calls, "latency_ms", key, "n", default=0) or 0 for key in ("offer_to_answer", "subscribe_offer_to_answer")
    )
    return int(people + people * each - answered)


def targets(ours: dict, janus: dict) -> list[dict]:
    """Each of issue 13's figures next to its target, from this run's results."""
    p50 = ("single_client", "latency_ms", "offer_to_answer", "p50")
    ratio = None
    if isinstance(get(ours, *p50), (int, float)) and get(janus, *p50):
        ratio = round(get(ours, *p50) / get(janus, *p50), 2)
    cpu, counted = get(ours, "cpu_per_offer", default={}) or {}, get(ours, "counts_per_offer", default={}) or {}
    calls = get(ours, "calls", default={}) or {}
    size = f"{calls.get('sessions', 50)} x {calls.get('participants', 4)}"
    held = get(ours, "idle_polls", "polls_pending_during_sample")
    return [
        _target("offer to answer p50, one client: ours / Janus", ratio, 5, unit=" x"),
        _target(
            "CPU ms per offer, all tiers but the MongoDB stand-in", cpu.get("all_tiers_but_mongo_cpu_ms_per_offer"), 12
        ),
        _target("CPU ms per offer in the MongoDB stand-in", cpu.get("mongo_cpu_ms_per_offer"), 4),
        _target("MongoDB operations per offer (counted)", get(counted, "mongo", "ops_per_offer"), 8),
        _target("MongoDB writes per delivering poll (counted)", get(counted, "mongo", "writes_per_delivering_poll"), 1),
        _target("KMS round trips per offer (counted)", get(counted, "kms", "round_trips_per_offer"), 3),
        _target("KMS requests per offer (counted)", get(counted, "kms", "requests_per_offer"), None),
        _target("sustained offers/s with p95 <= 50 ms", get(ours, "sustained", "sustained_offers_per_s"), 100, False),
        _target(f"{size}: publish offer to answer p99 ms", get(calls, "latency_ms", "offer_to_answer", "p99"), 2000),
        _target(
            f"{size}: subscribe offer to answer p99 ms",
            get(calls, "latency_ms", "subscribe_offer_to_answer", "p99"),
            4000,
        ),
        _target(f"{size}: offers never answered", _failed_offers(ours), 0),
        _target(f"{size}: dispatch_ms p50 (task start latency)", get(ours, "dispatch_ms", "all", "p50"), None),
        _target(f"{size}: dispatch_ms p99 (task start latency)", get(ours, "dispatch_ms", "all", "p99"), None),
        _target("broadcast to 50 p99 ms", get(ours, "fanout", "latency_ms", "broadcast_all_50", "p99"), 100),
        _target(
            f"idle polls ({held} held): CPU % of one core",
            get(ours, "idle_polls", "web_holding_polls", "cpu_percent_of_one_core"),
            0.3,
        ),
    ]
