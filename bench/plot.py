"""bench.png: latency distributions of both systems and throughput against offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.table import get

OURS, JANUS = "#d8593b", "#3b7dd8"


def _cdf(ax: Any, values: list[float] | None, label: str, color: str) -> None:
    if not values:
        return
    ordered = sorted(values)
    fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
    ax.plot(ordered, fractions, label=f"{label} (n={len(values)})", color=color)


def _latencies(axes: Any, raw_ours: dict, raw_janus: dict) -> None:
    calls_ours, calls_janus = raw_ours.get("calls", {}), raw_janus.get("calls", {})
    ax = axes[0][0]
    _cdf(ax, calls_ours.get("offer_to_answer"), "ours", OURS)
    _cdf(ax, calls_janus.get("offer_to_answer"), "Janus", JANUS)
    _cdf(ax, calls_ours.get("subscribe_offer_to_answer"), "ours, subscribe", "#e8a23b")
    ax.set_title("offer to answer, 50 sessions x 4 participants")
    ax.set_ylabel("fraction")
    ax = axes[0][1]
    _cdf(ax, calls_ours.get("join_to_ready"), "ours", OURS)
    _cdf(ax, calls_janus.get("join_to_ready"), "Janus", JANUS)
    _cdf(ax, raw_ours.get("dispatch_ms"), "ours: dispatch (enqueue -> start)", "#8a8a8a")
    ax.set_title("join to ready; dispatch")
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_xlabel("ms (log)")
        ax.legend()


def _throughput(axes: Any, ours: dict, janus: dict, rates: list[float]) -> None:
    for col, key, title in (
        (0, "achieved_per_s", "answered offers/s vs offered"),
        (1, "p95", "p95 offer to answer vs offered load"),
    ):
        ax = axes[1][col]
        for name, res, color in (("ours", ours, OURS), ("Janus", janus, JANUS)):
            steps = get(res, "sustained", "steps", default=[]) or []
            ys = [s[key] if key in s else s["offer_to_answer_ms"]["p95"] for s in steps]
            ax.plot([s["offered_per_s"] for s in steps], ys, marker="o", label=name, color=color)
        if key == "p95":
            ax.axhline(50, color="#888", linestyle="--", label="SLO 50 ms")
            ax.set_yscale("log")
        else:
            ax.plot(rates, rates, color="#ccc", linestyle=":", label="offered")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("offered offers/s (log)")
        ax.legend()


def plot(raw_ours: dict, raw_janus: dict, ours: dict, janus: dict, rates: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    _latencies(axes, raw_ours, raw_janus)
    _throughput(axes, ours, janus, rates)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
