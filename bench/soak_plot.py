"""soak.png: one panel per resource family, every series against time, the warm-up and the kill marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FAMILIES = (
    ("rss_mib/", "RSS per process tree, MiB"),
    ("fds/", "open file descriptors per process tree"),
    ("threads/", "threads per process tree"),
    ("rabbitmq/", "RabbitMQ: the deployment's vhost"),
    ("mongodb/", "MongoDB: documents per collection (data_mib: its files, MiB)"),
    ("kms/", "KMS emulators: pipelines, endpoints, sessions"),
)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    names = sorted({k for s in samples for k in s["values"]})
    fig, axes = plt.subplots(3, 2, figsize=(14, 13))
    for ax, (prefix, title) in zip(axes.flat, FAMILIES, strict=True):
        for name in (n for n in names if n.startswith(prefix)):
            ts = [s["t"] / 60 for s in samples]
            ys = [s["values"].get(name, 0.0) for s in samples]
            ax.plot(ts, ys, marker=".", label=name[len(prefix) :])
        _marks(ax, result)
        ax.set_title(title)
        ax.set_xlabel("minutes")
        if prefix in ("rss_mib/", "mongodb/"):
            ax.set_yscale("symlog")
        ax.legend(fontsize=7, ncol=2)
    churn = result["churn"]
    fig.suptitle(
        f"{result['name']}: {churn['sessions_completed']} sessions of {result['settings']['participants']} "
        f"({churn['completed_per_s']}/s), load at start {result['load_at_start']['loadavg_1min']} "
        f"on {result['load_at_start']['cpu_count']} CPUs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _marks(ax: Any, result: dict) -> None:
    ax.axvspan(0, result["settings"]["warmup_s"] / 60, color="#eee", zorder=0)
    if result.get("kill"):
        ax.axvline(result["kill"]["at_s"] / 60, color="#c33", linestyle="--")
