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
        if ax.get_legend_handles_labels()[0]:
            ax.legend()


def _throughput(axes: Any, ours: dict, janus: dict, rates: list[float]) -> None:
    for col, key, title in (
        (0, "achieved_per_s", "answered offers/s vs offered"),
        (1, "p95", "p95 offer to answer vs offered load"),
    ):
        ax = axes[1][col]
        ran = False
        for name, res, color in (("ours", ours, OURS), ("Janus", janus, JANUS)):
            steps = get(res, "sustained", "steps", default=[]) or []
            ys = [s[key] if key in s else s["offer_to_answer_ms"]["p95"] for s in steps]
            ax.plot([s["offered_per_s"] for s in steps], ys, marker="o", label=name, color=color)
            ran = ran or any(isinstance(y, (int, float)) and y > 0 for y in ys)
        if not ran:
            ax.set_title(f"{title} (not run)")
            continue
        if key == "p95":
            ax.axhline(50, color="#888", linestyle="--", label="SLO 50 ms")
            ax.set_yscale("log")
        else:
            ax.plot(rates, rates, color="#ccc", linestyle=":", label="offered")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("offered offers/s (log)")
        ax.legend()


def _targets(ax: Any, goals: list[dict]) -> None:
    """Each of issue 13's figures as a fraction of its target: under 1 (the dashed line) is met."""
    shown = [g for g in goals if isinstance(g["ours"], (int, float)) and g["limit"] is not None]
    names, values, colors = [], [], []
    for g in shown:
        ours, limit = float(g["ours"]), float(g["limit"])
        if limit == 0:  # "none failed": 0 is met, n failed is drawn as 1 + n
            value = 1.0 + ours if ours else 0.0
        else:
            value = ours / limit if g["at_most"] else (limit / ours if ours else 10.0)
        names.append(f"{g['figure']}: {g['ours']} ({g['target']})")
        values.append(max(value, 1e-3))
        colors.append("#3a9d5d" if g["met"] else OURS)
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="#444", linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("figure / target (log; at most 1 = met; for 'at least' targets: target / figure)")
    ax.set_title("issue 13: each figure against its target (green: met)")


def plot(
    raw_ours: dict,
    raw_janus: dict,
    ours: dict,
    janus: dict,
    rates: list[float],
    path: Path,
    goals: list[dict] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 13))
    grid = fig.add_gridspec(3, 2, height_ratios=[1, 1, 1.1])
    axes = [[fig.add_subplot(grid[r, c]) for c in range(2)] for r in range(2)]
    _latencies(axes, raw_ours, raw_janus)
    _throughput(axes, ours, janus, rates)
    _targets(fig.add_subplot(grid[2, :]), goals or [])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
