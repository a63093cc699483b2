"""Two workers whose wall clocks disagree by 4 s (one 2 s ahead, one 2 s behind), each judging the
other's KMS-session heartbeats, leader lease and connection debounce clocks (issue 16, item 5).

The clocks are shifted inside the worker processes (tests/faults/skewed_clock): libfaketime, which
tests/faults/test_clock_skew.py uses on a web process, hangs threaded CPython here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from models import PUBLISH, KmsSession
from tests.faults.callscript import Call
from tests.faults.harness import ROOT, FaultStack, record_figures
from tests.faults.test_connection_debounce import ICE, ice_state, raise_on

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SKEWED_CLOCK = Path(__file__).resolve().parent / "skewed_clock"


def _skewed(seconds: float) -> dict[str, str]:
    """A worker's environment with its wall clock `seconds` off (skewed_clock/sitecustomize.py)."""
    return {"PYTHONPATH": f"{SKEWED_CLOCK}{os.pathsep}{ROOT}", "TEST_CLOCK_SKEW_S": str(seconds)}


def _owners() -> dict[str, str]:
    return {s.id: s.owner for s in KmsSession.objects()}


def test_kms_sessions_leases_and_the_debounce_hold_when_two_workers_clocks_differ_by_4_s(fault_dir, vhost_url):
    """One worker 2 s ahead, the other 2 s behind: each judges the other's heartbeats, leases and
    debounce clocks. On each worker's own clock, a live worker's KMS sessions looked stale to the other
    (HEARTBEAT_STALE_S is 4 s) and a connection flap of one second could be reported at once (the
    debounce clock started 2 s in the past, the countdown run 2 s early); on the database's clock
    (models.clock) neither happens."""
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=1,
        worker_count=2,
        web_count=1,
        kms_args=("--test-control",),
        worker_env={0: _skewed(2.0), 1: _skewed(-2.0)},
    ).start()
    call = None
    try:
        stack.connect_db()
        debounce = stack.settings().connection_debounce_s
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.connect_everyone()
        call.chat_round(1)
        call.wait_chat()
        owners = _owners()
        assert len(set(owners.values())) == 2, f"both workers hold KMS sessions: {owners}"

        # Flaps shorter than the debounce on every publication, and one failure that stays.
        stays, *flapping = call.clients
        failed_at = raise_on(stays, PUBLISH, ICE, ice_state("FAILED"))
        for client in flapping:
            raise_on(client, PUBLISH, ICE, ice_state("DISCONNECTED"))
        time.sleep(1.0)
        for client in flapping:
            raise_on(client, PUBLISH, ICE, ice_state("CONNECTED"))
        # The countdown may run up to the two clocks' difference late (Celery's ETA is set on one
        # worker's clock and kept on another's), then once more for the rest of the period.
        stays.wait_until(lambda cl: cl.messages("connectionFailed"), debounce + 4 + 10, "connectionFailed")
        reported_after = stays.arrival_of(lambda m: m["type"] == "connectionFailed") - failed_at
        time.sleep(max(0.0, debounce + 4 + 1 - (time.monotonic() - failed_at)))  # every countdown is due
        call.chat_round(1)
        call.wait_chat()

        assert reported_after >= debounce - 0.5, f"reported {reported_after:.2f} s after the failure"
        assert not [c.name for c in flapping if c.messages("connectionFailed")], "a flap was reported"
        assert _owners() == owners, "a live worker's KMS session was taken over"
        taken = [w.name for w in stack.all_workers if "took over KMS session" in w.log_path.read_text()]
        assert not taken, f"takeovers by {taken}"
        delivery = call.check_delivery()
        state = call.check_state(stack.kms_urls)
        record_figures(
            "clock_skew_workers_4s",
            {
                "debounce_s": debounce,
                "failed_to_connection_failed_s": round(reported_after, 2),
                "flaps_reported": 0,
                "kms_sessions_taken_over": 0,
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
