"""The full run: every figure for our service and for Janus, their ratio, the machine, a plot.

Both systems play the same scenarios (bench/scenarios) through their adapters
(bench/client.py, bench/janus_client.py); only their set-up differs here.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.plot import plot
from bench.procstats import load_now
from bench.protocol import Fixtures, System
from bench.scenarios.calls import calls
from bench.scenarios.fanout import fanout
from bench.scenarios.footprint import idle_polls, memory
from bench.scenarios.rates import sustained
from bench.scenarios.sequential import cost_per_join, counts_per_offer, cpu_per_offer, single_client
from bench.stats import summary
from bench.table import table, targets

RESULTS = Path(__file__).resolve().parent / "results"
RATES: list[float] = [10, 20, 40, 80, 160, 320, 640]


SCENARIOS = (
    "single_client",
    "cpu_per_offer",
    "counts_per_offer",
    "cost_per_join",
    "calls",
    "fanout",
    "sustained",
    "memory",
    "idle_polls",
)
ONLY: set[str] = set(SCENARIOS)  # `--only` narrows it (a smoke test runs a few pieces)


def _step(results: dict, key: str, fn: Callable[..., dict], *args: Any) -> dict:
    if key not in ONLY:
        results[key] = {"skipped": "not in --only"}
        return results[key]
    load = load_now()
    print(f"bench: {key}... (load {load['loadavg_1min']} on {load['cpu_count']} CPUs)", flush=True)
    t0 = time.monotonic()
    try:
        results[key] = fn(*args)
    except Exception as exc:  # noqa: BLE001 - one failed figure must not lose the others
        results[key] = {"failed": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-1500:]}
    results[key]["_load_at_start"] = load
    results[key]["_seconds"] = round(time.monotonic() - t0, 1)
    print(f"bench: {key} done in {results[key]['_seconds']} s", flush=True)
    return results[key]


def run_scenarios(
    system: System, quick: bool, res: dict, raw: dict, around_calls: AbstractContextManager[None] | None = None
) -> None:
    """Every scenario, in the same order and sizes for both systems."""
    fx = Fixtures.load()
    _step(res, "single_client", single_client, system, fx, 30 if quick else 100)
    _step(res, "cpu_per_offer", cpu_per_offer, system, fx, 50 if quick else 200)
    _step(res, "counts_per_offer", counts_per_offer, system, fx, 20 if quick else 50)
    _step(res, "cost_per_join", cost_per_join, system, fx, 20 if quick else 60)
    with around_calls or nullcontext():
        done = _step(res, "calls", calls, system, fx, 10 if quick else 50, 4, 50.0, 30.0 if quick else 60.0)
    raw["calls"] = done.pop("_samples", {})
    _step(res, "fanout", fanout, system, 50, 10 if quick else 20, 5 if quick else 10)
    rates = RATES[:4] if quick else RATES
    _step(res, "sustained", sustained, system, fx, rates, 3.0 if quick else 5.0, 50.0, 24)
    _step(res, "memory", memory, system, fx, 100 if quick else 200, 10)
    _step(res, "idle_polls", idle_polls, system, 500 if quick else 2000, 10, 30, 60 if quick else 150)


@contextmanager
def _dispatch(urls: list[str], res: dict, raw: dict) -> Iterator[None]:
    """`dispatch_ms` of the tasks the scenario inside caused, from the workers' histograms."""
    from bench.dispatch import DispatchRecorder

    recorder = DispatchRecorder(urls)
    recorder.reset()
    yield
    samples = recorder.samples()
    res["dispatch_ms"] = {name: summary(v) for name, v in samples.items()}
    raw["dispatch_ms"] = samples.get("all", [])


def run_ours(quick: bool) -> tuple[dict, dict]:
    from bench.client import OurSystem
    from bench.stack import deployment

    res: dict = {}
    raw: dict = {}
    with deployment(workers=2, kms_mode="signaling", count=True) as (base, procs):
        system = OurSystem(base, procs)
        res["rss_at_rest_mib"] = system.rss_mib()
        run_scenarios(system, quick, res, raw, _dispatch(procs["web"].extra["worker_metrics"], res, raw))
        system.close()
    return res, raw


def run_janus(quick: bool) -> tuple[dict, dict]:
    from bench.janus_client import JanusSystem
    from bench.janus_server import janus_server

    res: dict = {}
    raw: dict = {}
    with janus_server() as (base, proc, version):
        system = JanusSystem(base, proc)
        res["version"] = version
        res["rss_at_rest_mib"] = system.rss_mib()["janus"]
        run_scenarios(system, quick, res, raw)
        system.close()
    return res, raw


def _janus_or_why(quick: bool, skip: bool) -> tuple[dict, dict]:
    if skip:
        return {"skipped": True}, {}
    try:
        return run_janus(quick)
    except Exception as exc:  # noqa: BLE001 - say clearly why there is no Janus column
        print(f"bench: Janus could not run: {type(exc).__name__}: {exc}", flush=True)
        return {"failed": f"{type(exc).__name__}: {exc}"}, {}


def main(quick: bool = False, skip_janus: bool = False, only: list[str] | None = None, out: Path = RESULTS) -> dict:
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    ONLY.clear()
    ONLY.update(only or SCENARIOS)
    load, loadavg = load_now(), [round(x, 2) for x in os.getloadavg()]
    print(f"bench: load at start {load['loadavg_1min']} (1 min) on {load['cpu_count']} CPUs", flush=True)
    ours, raw_ours = run_ours(quick)
    janus, raw_janus = _janus_or_why(quick, skip_janus)
    rows = table(ours, janus)
    goals = targets(ours, janus)
    result = {
        "machine": machine() | {"loadavg_at_start": loadavg},
        "load_at_start": load,
        "quick": quick,
        "only": sorted(ONLY),
        "table": rows,
        "targets": goals,
        "ours": ours,
        "janus": janus,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    plot(raw_ours, raw_janus, ours, janus, RATES, out / "bench.png", goals)
    print_report(rows, goals, load)
    print(f"bench: wrote {out / 'bench.json'} and bench.png in {result['elapsed_s']} s", flush=True)
    return result


def print_report(rows: list[dict], goals: list[dict], load: dict) -> None:
    width = max(len(r["metric"]) for r in rows)
    for r in rows:
        print(f"{r['metric']:<{width}}  {r['ours']!s:>10}  {r['janus']!s:>10}  {r['ratio_ours_over_janus']!s:>8}")
    print(f"\nissue 13's targets (load at start {load['loadavg_1min']} on {load['cpu_count']} CPUs):")
    width = max(len(g["figure"]) for g in goals)
    for g in goals:
        met = {True: "met", False: "NOT met", None: "n/a"}[g["met"]]
        print(f"  {g['figure']:<{width}}  {g['ours']!s:>12}  target {g['target']:<14} {met}")
