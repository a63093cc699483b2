"""`dispatch_ms`: from enqueue in the web tier until the task starts in a worker.

The web tier stamps every task with an `enqueued_at` header; a worker observes the difference
when the task body begins, in its `signaling_task_dispatch_seconds` histogram (broker, prefetch
and pool hand-off included; one machine, one clock). This reads the workers' metrics before and
after a scenario and turns the histogram's increase into percentiles, interpolating within
buckets the way Prometheus' histogram_quantile does.
"""

from __future__ import annotations

import re

import requests

METRIC = "signaling_task_dispatch_seconds_bucket"
_LINE = re.compile(r"^" + METRIC + r"\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def _buckets(urls: list[str]) -> dict[str, dict[float, float]]:
    """Cumulative counts per task name and upper bound (seconds), summed over the workers."""
    out: dict[str, dict[float, float]] = {}
    for url in urls:
        for line in requests.get(url, timeout=5).text.splitlines():
            match = _LINE.match(line)
            if not match:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            per_task = out.setdefault(labels["task"], {})
            per_task[bound] = per_task.get(bound, 0.0) + float(match["value"])
    return out


def _as_samples(cumulative: dict[float, float]) -> list[float]:
    """One value in milliseconds per observation, spread evenly inside its bucket."""
    samples: list[float] = []
    lower, below = 0.0, 0.0
    for bound in sorted(cumulative):
        count = int(round(cumulative[bound] - below))
        upper = bound if bound != float("inf") else lower * 2 or 1.0
        samples += [(lower + (upper - lower) * (i + 0.5) / count) * 1000 for i in range(count)]
        lower, below = upper, cumulative[bound]
    return samples


class DispatchRecorder:
    def __init__(self, metrics_urls: list[str]) -> None:
        self.urls = metrics_urls
        self._before: dict[str, dict[float, float]] = {}

    def reset(self) -> None:
        self._before = _buckets(self.urls)

    def samples(self) -> dict[str, list[float]]:
        """Milliseconds from enqueue to start since the last reset, per task name and under "all"."""
        out: dict[str, list[float]] = {"all": []}
        for name, after in _buckets(self.urls).items():
            before = self._before.get(name, {})
            values = _as_samples({bound: count - before.get(bound, 0.0) for bound, count in after.items()})
            if values:
                out[name] = values
                out["all"] += values
        out["all"].sort()
        return out
