"""A media server that fails one operation every time, then recovers (issue 16, fault 4).

Two emulators: one session (2 participants, publishing and subscribed to each other) on A, one
pinned to B. A's `processOffer` fails for good (`failOperation` with `count: 0`, an error code
the service does not map): every offer on A must end in `error {request_id, code: 502}` within
ERROR_BOUND_S, the endpoint each one created released at once (nothing half-made on A, the
stored endpoints unchanged), while B's participants keep being answered. The failure cleared,
the same participants offer again and are answered. Then the same with the creation of
WebRtcEndpoints failing on A (`create` of that type), and cleared again; last, the creation of a
new session's pipeline (every `create`): its first publish fails, and once cleared is answered.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.callscript import Call, Client, _live_media
from tests.faults.harness import FaultStack, record_figures
from tests.faults.test_kms_slow import answered_in
from tests.faults.test_media_server_loss import B_HEAVIER_KIB, PinnedToB, check_untouched
from tests.support.emulator_control import control

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = 0, 1
# An unmapped error fails the task at once (no retry): one KMS round trip, the error's publish.
ERROR_BOUND_S = 5.0
FAILURES = {
    "processOffer": {"operation": "processOffer"},
    "create WebRtcEndpoint": {"operation": "create", "type": "WebRtcEndpoint"},
}


def error_in(client: Client, request_id: str, timeout: float) -> tuple[float, dict]:
    """Seconds from the offer's acknowledgement to its `error`, and the error."""
    client.wait_until(
        lambda cl: any(m.get("request_id") == request_id for m in cl.messages("error")), timeout, "an error"
    )
    error = next(m for m in client.messages("error") if m["request_id"] == request_id)
    arrived = client.arrival_of(lambda m: m["type"] == "error" and m["request_id"] == request_id)
    return arrived - client.offers[request_id][1], error


def test_a_media_server_failing_an_operation_ends_each_offer_in_an_error_and_leaves_nothing(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=2,
        worker_count=2,
        web_count=1,
        kms_memory_offsets=(0, B_HEAVIER_KIB),
        kms_args=("--test-control",),
        # The sweep would release a leaked endpoint after ORPHAN_GRACE_S and hide the leak.
        extra_env={"ORPHAN_GRACE_S": "60"},
    ).start()
    call = pinned = None
    failing = False
    try:
        stack.connect_db()
        pinned = PinnedToB(stack)
        call = Call(stack.base_urls, sessions=2, per_session=2, on_created=pinned)
        call.connect_everyone()
        on_b = [c for c in call.clients if c.sid == call.sessions[-1]["session_id"]]
        on_a = [c for c in call.clients if c not in on_b]
        failed: set[str] = set()
        figures: dict = {}
        for name, failure in FAILURES.items():
            control(stack.kms_urls[A], "failOperation", code=40999, message=f"{name} broke", count=0, **failure)
            failing = True
            before = _live_media([stack.kms_urls[A]])
            errors = []
            for c in on_a:
                for stream in ("publish", next(o.participant_id for o in on_a if o is not c)):
                    request_id = c.offer(stream)
                    took, error = error_in(c, request_id, 30)
                    assert error["code"] == 502 and f"{name} broke" in error["message"], error
                    errors.append(took)
                    failed.add(request_id)
            others = [answered_in(c, c.offer("publish"), 30) for c in on_b]
            # Each failed offer's endpoint (created when processOffer failed) was released by its task.
            assert _live_media([stack.kms_urls[A]]) == before, "an endpoint of a failed offer was left on A"
            cleared = control(stack.kms_urls[A], "clearFailures")["cleared"]
            failing = False
            assert cleared == 1
            again = [answered_in(c, c.offer("publish"), 30) for c in on_a]
            figures[name] = {
                "offer_to_error_s": [round(x, 2) for x in errors],
                "other_server_offer_to_answer_s": [round(x, 2) for x in others],
                "offer_to_answer_once_cleared_s": [round(x, 2) for x in again],
            }

        # Exactly one outcome per offer: an error for those made during the failures, else one answer.
        for c in call.clients:
            answers = Counter(m["request_id"] for m in c.messages("sdpAnswer"))
            errors_by_request = Counter(m["request_id"] for m in c.messages("error"))
            for request_id in c.offers:
                want = (0, 1) if request_id in failed else (1, 0)
                got = (answers[request_id], errors_by_request[request_id])
                assert got == want, f"{c.name}: request {request_id} got {got} (answers, errors), wanted {want}"
        check_untouched(call, pinned)
        # The endpoints on the servers are exactly the stored ones, one per stream, each subscription
        # fed by its publisher's.
        state = call.check_state(stack.kms_urls, orphans_swept_within_s=0.0)

        # A new session's pipeline cannot be created on A: its first publish fails, and the claim on
        # the pipeline's creation must not outlive the failure (the same offer after it is answered
        # at once, not after the claim's lapse).
        control(stack.kms_urls[A], "failOperation", code=40999, message="no pipeline", count=0, operation="create")
        failing = True
        newcomer = Call(stack.base_urls, sessions=1, per_session=1)
        try:
            (new,) = newcomer.clients
            took, error = error_in(new, new.offer("publish"), 30)
            assert error["code"] == 502 and "no pipeline" in error["message"], error
            control(stack.kms_urls[A], "clearFailures")
            failing = False
            figures["create MediaPipeline"] = {
                "offer_to_error_s": [round(took, 2)],
                "offer_to_answer_once_cleared_s": [round(answered_in(new, new.offer("publish"), 30), 2)],
            }
        finally:
            newcomer.stop()
        record_figures("kms_failing", {**figures, "failed_offers": len(failed) + 1, **state})
        for name, measured in figures.items():
            assert max(measured["offer_to_error_s"]) < ERROR_BOUND_S, (name, measured)
    finally:
        if failing:
            control(stack.kms_urls[A], "clearFailures")
        if pinned:
            pinned.client.close()
        if call:
            call.stop()
        stack.stop()
