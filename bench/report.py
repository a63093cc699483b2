"""`python -m bench.report`: the table of bench/results/bench.json as Markdown (for docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m.get('cpu_model')}, {m.get('cores')} vCPU, {m.get('ram_gib')} GiB RAM, kernel "
        f"{m.get('kernel')}, {m.get('os')}; Python {m.get('python')}, Celery {m.get('celery')}, "
        f"RabbitMQ {m.get('rabbitmq')}, {result.get('janus', {}).get('version', 'Janus n/a')}; "
        f"commit {m.get('commit')}{' + uncommitted changes' if m.get('worktree_dirty') else ''}; "
        f"whole run {result.get('elapsed_s')} s.",
        "",
        "| metric | ours | Janus | ours / Janus | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in result["table"]:
        cells = [row["metric"], row["ours"], row["janus"], row["ratio_ours_over_janus"], row["note"]]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads((RESULTS / "bench.json").read_text())))
