"""Task start latency and the share of each worker under a burst: `python -m bench.task_burst`.

A throw-away deployment with two workers; 50 sessions of 4 participants join (not measured),
then all 200 participants offer at once. Reported from the workers' own metrics, over the burst
only: how many `media.process_offer` tasks each worker ran, and the dispatch delay (from the web
tier's enqueue to the task's start, `signaling_task_dispatch_seconds`) as bucket quantiles.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.stack import deployment
from bench.task_overhead import Member

SESSIONS, PER_SESSION = 50, 4
TASK = "media.process_offer"
SDP_PATH = "tests/fixtures/browser-sdp/chromium-publish.sdp"


def scrape(url: str) -> tuple[float, dict[float, float]]:
    """(tasks run, cumulative dispatch histogram by upper bound) of one worker."""
    ran, buckets = 0.0, {}
    for line in requests.get(url, timeout=10).text.splitlines():
        if line.startswith("signaling_tasks_total{") and f'task="{TASK}"' in line:
            ran += float(line.rsplit(" ", 1)[1])
        if line.startswith("signaling_task_dispatch_seconds_bucket{") and f'task="{TASK}"' in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return ran, buckets


def quantile(buckets: dict[float, float], q: float) -> float:
    total = max(buckets.values(), default=0)
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return float("nan")


def main() -> None:
    sdp = open(SDP_PATH).read()
    with deployment(workers=2) as (base, procs):
        members: list[Member] = []
        for _ in range(SESSIONS):
            session = Member.create_session(base)
            members += [Member(base, session, f"p{i}") for i in range(PER_SESSION)]
        metrics = procs["web"].extra["worker_metrics"]
        before = [scrape(url) for url in metrics]
        with ThreadPoolExecutor(64) as pool:
            request_ids = list(pool.map(lambda m: m.offer(sdp), members))
            answered = zip(members, request_ids, strict=True)
            list(pool.map(lambda mr: mr[0].wait_answer(mr[1]), answered))
        after = [scrape(url) for url in metrics]
        ran = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
        merged: dict[float, float] = {}
        for (_, a), (_, b) in zip(after, before, strict=True):
            for bound, count in a.items():
                merged[bound] = merged.get(bound, 0) + count - b.get(bound, 0)
        print(
            json.dumps(
                {
                    "offers": len(members),
                    "tasks_run_per_worker": ran,
                    "dispatch_s_p50_p95_p99_upper_bound": [quantile(merged, q) for q in (0.5, 0.95, 0.99)],
                    "dispatch_histogram": {str(k): v for k, v in sorted(merged.items())},
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
