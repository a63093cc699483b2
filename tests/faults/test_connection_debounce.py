"""Client drops: a media connection that goes bad is reported only if it stays bad.

Real FAILED/DISCONNECTED events, raised by the emulator on endpoints of a running call (its
test-only control), travel the product's whole path: KMS routes them to the worker whose KMS
session subscribed them, `kms_events` starts the debounce clock and schedules the
`media.check_connection` countdown task on the session's quorum shard queue (Celery's native
delayed delivery), and the countdown decides. Three connections, the debounce at its default:
- X's publish endpoint goes FAILED, then DISCONNECTED, and stays bad: one `connectionFailed`.
- Y's publish endpoint goes DISCONNECTED and is CONNECTED again a second later: nothing.
- Z's subscription to another participant goes FAILED (ConnectionStateChanged): one
  `connectionFailed {stream: <that participant>}`.
"""

from __future__ import annotations

import time

import pytest

from models import PUBLISH, Endpoint
from tests.faults.callscript import Call, Client
from tests.faults.harness import FaultStack, record_figures, task_states
from tests.support.emulator_control import raise_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ICE = "IceComponentStateChanged"


def ice_state(state: str) -> dict:
    return {"streamId": 1, "componentId": 1, "state": state}


def raise_on(client: Client, stream: str, event_type: str, data: dict) -> float:
    """Raises the event on the client's stored endpoint; returns the monotonic time it was raised."""
    endpoint = Endpoint.find(client.participant_id, stream).kurento
    at = time.monotonic()
    assert raise_event(endpoint.client.url, endpoint.id, event_type, data) == 1, "no worker received the event"
    return at


def check_connection_runs(stack: FaultStack) -> int:
    return sum(
        t["succeeded"]
        for w in stack.all_workers
        for t in task_states(w.log_path).values()
        if t["name"] == "media.check_connection"
    )


def test_a_failed_connection_is_reported_after_the_debounce_unless_it_recovers(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir, vhost_url, kms_count=2, worker_count=3, web_count=2, kms_args=("--test-control",)
    ).start()
    call = None
    try:
        stack.connect_db()
        debounce = stack.settings().connection_debounce_s
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.connect_everyone()
        call.chat_round(1)
        call.wait_chat()
        x, y, z = call.clients[0], call.clients[1], call.clients[3]
        z_stream = call.members(z)[1].participant_id
        runs_before = check_connection_runs(stack)

        x_failed = raise_on(x, PUBLISH, ICE, ice_state("FAILED"))
        raise_on(x, PUBLISH, ICE, ice_state("DISCONNECTED"))  # still bad: no second countdown
        raise_on(y, PUBLISH, ICE, ice_state("DISCONNECTED"))
        z_failed = raise_on(z, z_stream, "ConnectionStateChanged", {"oldState": "CONNECTED", "newState": "FAILED"})
        time.sleep(1.0)  # Y's connection comes back well within the debounce
        raise_on(y, PUBLISH, ICE, ice_state("CONNECTED"))

        x.wait_until(lambda cl: cl.messages("connectionFailed"), debounce + 30, "connectionFailed")
        z.wait_until(lambda cl: cl.messages("connectionFailed"), debounce + 30, "connectionFailed")
        # Every countdown has run (Y's too) before the next chat round is sent, so a report to Y
        # would be in its queue ahead of that chat.
        deadline = time.monotonic() + debounce + 30
        while check_connection_runs(stack) < runs_before + 3:
            assert time.monotonic() < deadline, "the countdown tasks did not all run"
            time.sleep(0.2)
        call.chat_round(1)
        call.wait_chat()

        assert [m["stream"] for m in x.messages("connectionFailed")] == [PUBLISH]
        assert [m["stream"] for m in z.messages("connectionFailed")] == [z_stream]
        assert not y.messages("connectionFailed"), "a connection that recovered in time was reported"
        assert not [c.name for c in call.clients if c not in (x, z) and c.messages("connectionFailed")]
        assert check_connection_runs(stack) == runs_before + 3, "one countdown per failure, not per event"
        x_reported = x.arrival_of(lambda m: m["type"] == "connectionFailed") - x_failed
        z_reported = z.arrival_of(lambda m: m["type"] == "connectionFailed") - z_failed
        delivery = call.check_delivery()
        state = call.check_state(stack.kms_urls)
        record_figures(
            "connection_debounce",
            {
                "debounce_s": debounce,
                "failed_to_connection_failed_s": sorted([round(x_reported, 2), round(z_reported, 2)]),
                "recovered_within_debounce_messages": len(y.messages("connectionFailed")),
                "countdown_tasks_run": check_connection_runs(stack) - runs_before,
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
