"""`python -m bench soak` runs end to end (a short run, sampled often) and reports every series.

Checks what was sampled and counted, never a timing nor a slope's verdict (30 s is no soak).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from signaling_cli.processes import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROCESSES = ("web", "worker1", "worker2", "mongo", "kms", "kms2", "loadgen", "rabbitmq")
RABBITMQ = ("queues", "messages", "consumers", "connections", "channels")
KMS = ("pipelines", "webrtc_endpoints", "other_elements", "sessions")


@pytest.mark.timeout(240)
def test_a_short_soak_churns_sessions_and_samples_every_resource(tmp_path):
    argv = [sys.executable, "-m", "bench", "soak", "--duration", "30", "--sample", "5", "--rate", "0.5"]
    done = subprocess.run([*argv, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["load_at_start"]["cpu_count"] >= 1 and "loadavg_1_5_15" in result["machine"]
    assert not result["sample_errors"]

    churn = result["churn"]
    # Not "none failed": on a loaded machine a step may time out, which the soak reports, not hides.
    assert churn["sessions_completed"] >= 3, churn

    samples = result["samples"]
    assert len(samples) >= 4
    names = set(samples[-1]["values"])
    expected = {f"{kind}/{p}" for kind in ("rss_mib", "fds", "threads") for p in PROCESSES}
    expected |= {f"rabbitmq/{k}" for k in RABBITMQ} | {f"kms/{n}/{k}" for n in ("kms", "kms2") for k in KMS}
    expected |= {"mongodb/sessions", "mongodb/participants", "mongodb/outbox", "mongodb/data_mib"}
    assert expected <= names, expected - names
    assert max(s["values"]["kms/kms/pipelines"] + s["values"]["kms/kms2/pipelines"] for s in samples) >= 1
    assert max(s["values"]["mongodb/participants"] for s in samples) >= 4
    assert samples[-1]["values"]["rss_mib/web"] > 10 and samples[-1]["values"]["threads/worker1"] >= 2

    # Every session closed: the drained sample has every series too.
    assert expected <= set(result["drained"]["values"])

    fits = result["slopes"]["after_warmup"]
    assert expected <= set(fits)
    assert all(f["verdict"] in ("flat", "noisy", "GROWS", "falls", "too few samples") for f in fits.values())
    assert (tmp_path / "soak.png").stat().st_size > 0


def test_the_verdict_tells_a_trend_from_a_flat_or_scattered_series():
    from bench.soak import slope, verdict

    minutes = [120 + 30 * k for k in range(17)]
    rising = verdict("rss_mib/web", slope([(t, 100 + t / 60) for t in minutes]))  # +1 MiB/min
    assert rising["slope_per_min"] == 1.0 and rising["growth_pct_of_mean_per_10min"] > 5
    assert rising["verdict"] == "GROWS"
    assert verdict("rss_mib/web", slope([(t, 100.0) for t in minutes]))["verdict"] == "flat"
    # +1 fd over the run: under the floor of 2 per 10 min.
    assert verdict("fds/web", slope([(t, 10 + (t > 300)) for t in minutes]))["verdict"] == "flat"
    scattered = [(t, 10.0 + (20 if k % 2 else 0) + (8 if k == 16 else 0)) for k, t in enumerate(minutes)]
    assert verdict("kms/kms/pipelines", slope(scattered))["verdict"] == "noisy"
    assert verdict("fds/web", slope([(0, 1), (30, 2)]))["verdict"] == "too few samples"
