"""Offer-to-answer latency as one client sees it, and each process's memory at rest.

Each round a fresh participant joins and publishes; the clock runs from the POST of the
offer until its long poll returns the sdpAnswer. The emulator runs in signaling mode.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from bench.client import OurRoom, OurSystem
from bench.protocol import Fixtures
from bench.stack import deployment, rss_mib
from bench.stats import percentile

RESULTS = Path(__file__).resolve().parent / "results"


def measure(system: OurSystem, rounds: int, sdp: str) -> list[float]:
    """A fresh participant per round (no long poll held: it polls for its answer)."""
    latencies = []
    room: OurRoom | None = None
    for index in range(rounds):
        if room is None or index % 200 == 0:
            room = system.room(256)
        member = room.client(f"p{index}")
        member.join(confirm=False)
        latencies.append(member.offer(sdp))
        member.stop()
    return latencies


def plot(latencies: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(latencies, bins=50, color="#3b7dd8")
    ax.set_xlabel("offer to answer (ms), one client, signaling-mode emulator")
    ax.set_ylabel("offers")
    ax.set_title(f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(rounds: int = 300) -> dict:
    sdp = Fixtures.load().publish
    with deployment() as (base, procs):
        time.sleep(3)
        at_rest = {name: round(rss_mib(proc), 1) for name, proc in procs.items()}
        system = OurSystem(base, procs)
        measure(system, 20, sdp)  # warm-up: connections, pools, first pipeline
        latencies = measure(system, rounds, sdp)
    result = {
        "offer_to_answer_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p99": round(percentile(latencies, 99), 2),
            "mean": round(statistics.fmean(latencies), 2),
            "n": len(latencies),
        },
        "rss_at_rest_mib": at_rest,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "offer_latency.json").write_text(json.dumps(result, indent=2))
    plot(latencies, RESULTS / "offer_latency.png")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
