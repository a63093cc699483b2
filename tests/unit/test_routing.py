from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from media_tasks.routing import shard_for, shard_queues
from settings import Settings


def test_shard_is_stable_across_processes():
    # Python's hash() is salted per process; the router must not be.
    here = [shard_for(f"session-{i}", 8) for i in range(50)]
    code = "from media_tasks.routing import shard_for; print([shard_for(f'session-{i}', 8) for i in range(50)])"
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.strip()
    assert str(here) == there


def test_sessions_spread_over_every_shard():
    counts = [0] * 8
    for i in range(4000):
        counts[shard_for(f"{i:032x}", 8)] += 1
    assert min(counts) > 350  # 500 expected each


def test_quorum_shards_have_a_delivery_limit_and_dead_letter_exchange():
    queues = shard_queues(Settings(shards=3, name_prefix="x", task_delivery_limit=4, secret_key="k"))
    assert [q.name for q in queues] == ["x.shard.0", "x.shard.1", "x.shard.2"]
    args = queues[0].queue_arguments
    assert args["x-queue-type"] == "quorum" and args["x-delivery-limit"] == 4
    assert args["x-dead-letter-exchange"] == "x.dead"
    assert queues[0].exchange.type == "topic"


def test_classic_fallback_has_no_quorum_arguments():
    queues = shard_queues(Settings(shards=1, shard_queue_type="classic", secret_key="k"))
    assert queues[0].queue_arguments == {"x-queue-type": "classic"}
