"""The full run: every figure for our service and for Janus, their ratio, the machine, a plot."""

from __future__ import annotations

import json
import platform
import subprocess
import time
import traceback
from pathlib import Path

import psutil

from bench import janus as janus_bench
from bench import loadgen
from bench.stats import summary

RESULTS = Path(__file__).resolve().parent / "results"
RATES = [10, 20, 40, 80, 160, 320, 640]


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {
        "cpu_model": cpu,
        "cores": psutil.cpu_count(logical=True),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
    }
    # Other work on the box skews every figure: record the load average seen by the run.
    out["loadavg_1_5_15"] = [round(x, 2) for x in psutil.getloadavg()]
    for pkg in ("celery", "kombu", "gevent", "gunicorn", "Flask", "nx-27017"):
        try:
            from importlib.metadata import version

            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            pass
    try:
        status = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30)
        out["rabbitmq"] = status.stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    try:
        out["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent.parent
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent.parent,
        ).stdout.strip()
        out["worktree_dirty"] = bool(dirty)
    except Exception:  # noqa: BLE001
        pass
    return out


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _step(results: dict, key: str, fn, *args, **kwargs):
    print(f"bench: {key}...", flush=True)
    t0 = time.monotonic()
    try:
        results[key] = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one failed figure must not lose the others
        results[key] = {"failed": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-1500:]}
    results[key]["_seconds"] = round(time.monotonic() - t0, 1)
    print(f"bench: {key} done in {results[key]['_seconds']} s", flush=True)
    return results[key]


def run_ours(quick: bool) -> tuple[dict, dict]:
    from bench.dispatch import DispatchRecorder
    from bench.stack import deployment

    res: dict = {}
    raw: dict = {}
    fx = loadgen.fixtures()
    with deployment(workers=2, kms_mode="signaling") as (base, procs):
        web = procs["web"]
        res["rss_at_rest_mib"] = loadgen.tiers_rss(procs)
        recorder = DispatchRecorder(web.extra["worker_metrics"])
        _step(res, "single_client", loadgen.single_client, base, 30 if quick else 100, fx)
        _step(res, "cpu_per_offer", loadgen.cpu_per_offer, base, procs, 50 if quick else 200, fx)
        recorder.reset()
        calls = _step(
            res,
            "calls",
            _calls_with_samples,
            loadgen.calls,
            base,
            10 if quick else 50,
            4,
            50.0,
            30.0 if quick else 60.0,
            fx=fx,
        )
        raw["calls"] = calls.pop("_samples", {})
        samples = recorder.samples()
        res["dispatch_ms"] = {name: summary(v) for name, v in samples.items()}
        raw["dispatch_ms"] = samples.get("all", [])
        _step(res, "fanout", loadgen.fanout, base, 50, 10 if quick else 20, 5 if quick else 10)
        _step(
            res,
            "sustained",
            loadgen.sustained,
            base,
            RATES[:4] if quick else RATES,
            3.0 if quick else 5.0,
            50.0,
            24,
            fx,
        )
        _step(res, "memory", loadgen.memory, base, procs, 100 if quick else 200, 10, fx)
        _step(
            res, "idle_polls", loadgen.idle_polls, base, web.pid, 500 if quick else 2000, 10, 30, 60 if quick else 150
        )
    return res, raw


def _calls_with_samples(fn, *args, **kwargs) -> dict:
    """Run a calls scenario and keep its raw samples for the plot."""
    original = loadgen.Recorder.report

    captured: dict = {}

    def report(self) -> dict:
        captured.update(self.samples)
        return original(self)

    loadgen.Recorder.report = report
    try:
        result = fn(*args, **kwargs)
    finally:
        loadgen.Recorder.report = original
    result["_samples"] = captured
    return result


def run_janus(quick: bool) -> tuple[dict, dict]:
    from bench.janus_server import janus_server

    res: dict = {}
    raw: dict = {}
    fx = loadgen.fixtures()
    with janus_server() as (base, proc, version):
        res["version"] = version
        res["rss_at_rest_mib"] = round(loadgen.tree_rss_mib(proc.pid), 1)
        rounds = 30 if quick else 100
        cpu_before = loadgen.tree_cpu_s(proc.pid)
        _step(res, "single_client", janus_bench.single_client, base, rounds, fx)
        # Each round is a whole join + publish + trickle + leave: an upper bound of Janus's cost per offer.
        res["cpu_per_offer"] = {
            "total_cpu_ms_per_offer": round((loadgen.tree_cpu_s(proc.pid) - cpu_before) * 1000 / (rounds + 10), 2)
        }
        calls = _step(
            res,
            "calls",
            _calls_with_samples,
            janus_bench.calls,
            base,
            10 if quick else 50,
            4,
            50.0,
            30.0 if quick else 60.0,
            fx=fx,
        )
        raw["calls"] = calls.pop("_samples", {})
        _step(res, "fanout", janus_bench.fanout, base, 50, 5 if quick else 10)
        _step(
            res,
            "sustained",
            janus_bench.sustained,
            base,
            RATES[:4] if quick else RATES,
            3.0 if quick else 5.0,
            50.0,
            24,
            fx,
        )
        _step(res, "memory", janus_bench.memory, base, proc.pid, 100 if quick else 200, 10, fx)
        _step(res, "idle_polls", janus_bench.idle_polls, base, proc.pid, 500 if quick else 2000)
    return res, raw


def _get(d: dict, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def table(ours: dict, janus: dict) -> list[dict]:
    """The headline rows: metric, ours, Janus, ratio ours/Janus (lower is better unless noted)."""
    rows = []

    def row(metric: str, a, b, note: str = "") -> None:
        ratio = round(a / b, 2) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
        rows.append({"metric": metric, "ours": a, "janus": b, "ratio_ours_over_janus": ratio, "note": note})

    for q in ("p50", "p95", "p99"):
        row(
            f"offer_to_answer_ms {q} (50 sessions x 4)",
            _get(ours, "calls", "latency_ms", "offer_to_answer", q),
            _get(janus, "calls", "latency_ms", "offer_to_answer", q),
        )
    for q in ("p50", "p99"):
        row(
            f"offer_to_answer_ms {q} (1 client, sequential)",
            _get(ours, "single_client", "latency_ms", "offer_to_answer", q),
            _get(janus, "single_client", "latency_ms", "offer_to_answer", q),
        )
    for q in ("p50", "p95", "p99"):
        row(
            f"join_to_ready_ms {q} (50 sessions x 4)",
            _get(ours, "calls", "latency_ms", "join_to_ready", q),
            _get(janus, "calls", "latency_ms", "join_to_ready", q),
            "ours: POST join -> own participantJoined on the poll; Janus: create+attach+join -> joined",
        )
    for q in ("p50", "p99"):
        row(
            f"subscribe offer_to_answer_ms {q}",
            _get(ours, "calls", "latency_ms", "subscribe_offer_to_answer", q),
            "n/a",
            "Janus subscribers need a publisher whose ICE completed",
        )
    for q in ("p50", "p99"):
        row(
            f"event_fanout_ms {q} (broadcast POST -> all 50)",
            _get(ours, "fanout", "latency_ms", "broadcast_all_50", q),
            "n/a",
            "Janus has no REST broadcast",
        )
        row(
            f"event_fanout_ms {q} (join -> all 50 notified)",
            _get(ours, "fanout", "latency_ms", "join_announce_all_50", q),
            _get(janus, "fanout", "latency_ms", "join_announce_all_50", q),
            "Janus: videoroom notify_joining",
        )
    for q in ("p50", "p99"):
        row(
            f"dispatch_ms {q} (enqueue -> task start)",
            _get(ours, "dispatch_ms", "all", q),
            "n/a",
            "no task queue in Janus",
        )
    row(
        "CPU ms per offer, all tiers (1 client)",
        _get(ours, "cpu_per_offer", "total_cpu_ms_per_offer"),
        _get(janus, "cpu_per_offer", "total_cpu_ms_per_offer"),
        "ours: web, workers, emulator, MongoDB stand-in and RabbitMQ; Janus: one join+publish+leave",
    )
    for tier, value in (_get(ours, "cpu_per_offer", "cpu_ms_per_offer", default={}) or {}).items():
        row(f"CPU ms per offer: {tier}", value, None)
    row(
        "sustained_offers_per_s (p95 <= 50 ms)",
        _get(ours, "sustained", "sustained_offers_per_s"),
        _get(janus, "sustained", "sustained_offers_per_s"),
        "higher is better; highest step tested 640/s",
    )
    row(
        "idle polls held (of 2000)",
        _get(ours, "idle_polls", "polls_pending_during_sample"),
        _get(janus, "idle_polls", "polls_pending_during_sample"),
        "higher is better",
    )
    row(
        "idle 2000 polls: CPU % of one core",
        _get(ours, "idle_polls", "web_holding_polls", "cpu_percent_of_one_core"),
        _get(janus, "idle_polls", "janus_holding_polls", "cpu_percent_of_one_core"),
    )
    row(
        "idle 2000 polls: RSS MiB",
        _get(ours, "idle_polls", "web_holding_polls", "rss_mib"),
        _get(janus, "idle_polls", "janus_holding_polls", "rss_mib"),
    )
    per100 = _get(ours, "memory", "rss_mib_per_100_participants", default={}) or {}
    total = round(sum(v for v in per100.values() if isinstance(v, (int, float))), 2) if per100 else None
    row(
        "RSS MiB per 100 participants (all tiers)",
        total,
        _get(janus, "memory", "rss_mib_per_100_participants", "janus"),
        "joined + published",
    )
    for tier, value in per100.items():
        row(f"RSS MiB per 100 participants: {tier}", value, None)
    return rows


def plot(raw_ours: dict, raw_janus: dict, ours: dict, janus: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))

    def cdf(ax, values, label, color):
        if not values:
            return
        ordered = sorted(values)
        ax.plot(
            ordered,
            [(i + 1) / len(ordered) for i in range(len(ordered))],
            label=f"{label} (n={len(values)})",
            color=color,
        )

    ax = axes[0][0]
    cdf(ax, raw_ours.get("calls", {}).get("offer_to_answer"), "ours", "#d8593b")
    cdf(ax, raw_janus.get("calls", {}).get("offer_to_answer"), "Janus", "#3b7dd8")
    cdf(ax, raw_ours.get("calls", {}).get("subscribe_offer_to_answer"), "ours, subscribe", "#e8a23b")
    ax.set_xscale("log")
    ax.set_title("offer to answer, 50 sessions x 4 participants")
    ax.set_xlabel("ms (log)")
    ax.set_ylabel("fraction")
    ax.legend()
    ax = axes[0][1]
    cdf(ax, raw_ours.get("calls", {}).get("join_to_ready"), "ours", "#d8593b")
    cdf(ax, raw_janus.get("calls", {}).get("join_to_ready"), "Janus", "#3b7dd8")
    cdf(ax, raw_ours.get("dispatch_ms"), "ours: dispatch (enqueue -> start)", "#8a8a8a")
    ax.set_xscale("log")
    ax.set_title("join to ready; dispatch")
    ax.set_xlabel("ms (log)")
    ax.legend()
    for col, key, title in (
        (0, "achieved_per_s", "answered offers/s vs offered"),
        (1, "p95", "p95 offer to answer vs offered load"),
    ):
        ax = axes[1][col]
        for name, res, color in (("ours", ours, "#d8593b"), ("Janus", janus, "#3b7dd8")):
            steps = _get(res, "sustained", "steps", default=[]) or []
            xs = [s["offered_per_s"] for s in steps]
            ys = [s[key] if key in s else s["offer_to_answer_ms"]["p95"] for s in steps]
            ax.plot(xs, ys, marker="o", label=name, color=color)
        if key == "p95":
            ax.axhline(50, color="#888", linestyle="--", label="SLO 50 ms")
            ax.set_yscale("log")
        else:
            ax.plot(RATES, RATES, color="#ccc", linestyle=":", label="offered")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("offered offers/s (log)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(quick: bool = False, skip_janus: bool = False) -> dict:
    t0 = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    load_at_start = [round(x, 2) for x in psutil.getloadavg()]
    ours, raw_ours = run_ours(quick)
    janus: dict = {}
    raw_janus: dict = {}
    if skip_janus:
        janus = {"skipped": True}
    else:
        try:
            janus, raw_janus = run_janus(quick)
        except Exception as exc:  # noqa: BLE001 - say clearly why there is no Janus column
            janus = {"failed": f"{type(exc).__name__}: {exc}"}
            print(f"bench: Janus could not run: {janus['failed']}", flush=True)
    result = {
        "machine": machine() | {"loadavg_at_start": load_at_start},
        "quick": quick,
        "table": table(ours, janus),
        "ours": ours,
        "janus": janus,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    (RESULTS / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    plot(raw_ours, raw_janus, ours, janus, RESULTS / "bench.png")
    width = max(len(r["metric"]) for r in result["table"])
    for r in result["table"]:
        print(f"{r['metric']:<{width}}  {r['ours']!s:>10}  {r['janus']!s:>10}  {r['ratio_ours_over_janus']!s:>8}")
    print(f"bench: wrote {RESULTS / 'bench.json'} and bench.png in {result['elapsed_s']} s", flush=True)
    return result
