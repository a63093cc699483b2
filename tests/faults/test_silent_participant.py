"""A participant stops polling in the middle of a call (its browser tab froze, its laptop slept).

After PARTICIPANT_TIMEOUT_S without a poll the service removes it as if it had left: the others
get `participantLeft {reason: "timeout"}` and `streamUnpublished`, its endpoints and the
subscriptions to its stream are released, its place is freed. Its RabbitMQ queue, no longer
bound to the session, is deleted by the broker PARTICIPANT_QUEUE_EXPIRES_S after its last poll
(x-expires). Short settings for the test; the defaults are 60 s and 300 s.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, queue_names, record_figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 4
QUEUE_EXPIRES_S = 10


def test_a_participant_that_stops_polling_is_removed_and_its_queue_expires(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=2,
        worker_count=3,
        web_count=2,
        extra_env={"PARTICIPANT_TIMEOUT_S": str(TIMEOUT_S), "PARTICIPANT_QUEUE_EXPIRES_S": str(QUEUE_EXPIRES_S)},
    ).start()
    call = None
    try:
        stack.connect_db()
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.connect_everyone()
        call.chat_round(2)
        call.wait_chat()

        silent = call.clients[0]
        queue = f"{stack.env['SIGNALING_PREFIX']}.participant.{silent.participant_id}"
        assert queue in queue_names(vhost_url)
        call.depart(silent)  # stops polling (and sending) from here on
        silent.stop_polling()
        went_silent = silent.last_answer_at
        call.chat_round(1)  # the call goes on without it

        others = call.members(silent)
        left = []
        for c in others:
            c.wait_until(
                lambda cl: any(m["participant_id"] == silent.participant_id for m in cl.messages("participantLeft")),
                TIMEOUT_S + 30,
                "participantLeft of the silent participant",
            )
            message = next(m for m in c.messages("participantLeft") if m["participant_id"] == silent.participant_id)
            assert message["reason"] == "timeout", message
            left.append(
                c.arrival_of(lambda m: m["type"] == "participantLeft" and m["participant_id"] == silent.participant_id)
                - went_silent
            )
            assert any(m["participant_id"] == silent.participant_id for m in c.messages("streamUnpublished"))

        deadline = time.monotonic() + QUEUE_EXPIRES_S + 30
        while queue in queue_names(vhost_url):
            assert time.monotonic() < deadline, f"{queue} never expired"
            time.sleep(0.5)
        queue_gone = time.monotonic() - went_silent

        call.chat_round(1)
        call.wait_chat()
        delivery = call.check_delivery()
        state = call.check_state(stack.kms_urls)
        record_figures(
            "silent_participant",
            {
                "participant_timeout_s": TIMEOUT_S,
                "participant_left_after_last_poll_s": round(max(left), 2),
                "participant_queue_expires_s": QUEUE_EXPIRES_S,
                "queue_deleted_after_last_poll_s": round(queue_gone, 1),
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
