"""The MongoDB stand-in paused (SIGSTOP: its sockets stay open, nothing answers, as a frozen VM
or a partition without resets), then resumed.

Operations on open connections wait MONGODB_SOCKET_TIMEOUT_S, new ones
MONGODB_SERVER_SELECTION_TIMEOUT_S; either way every request that needs the database answers
503 in the error shape with a clear message (never 500, never a hang), and a join refused so
left nothing behind: no place taken, no participant. After the resume the same requests
succeed (the join repeated under its Idempotency-Key joins once), nothing acknowledged was
lost, and nobody was removed as silent or had their KMS session taken over.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.callscript import PUBLISH_SDP, Call
from tests.faults.harness import FaultStack, pause, record_figures, resume
from tests.faults.probe import is_error_shape, probe, until_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOCKET_TIMEOUT_S = 2
SELECTION_TIMEOUT_S = 2
BOUND_S = 15  # a request makes a few database operations, each waits at most one of the timeouts


def test_paused_mongodb_gives_clear_503s_and_no_half_applied_join(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=1,
        worker_count=2,
        web_count=2,
        extra_env={
            "MONGODB_SOCKET_TIMEOUT_S": str(SOCKET_TIMEOUT_S),
            "MONGODB_SERVER_SELECTION_TIMEOUT_S": str(SELECTION_TIMEOUT_S),
            "PARTICIPANT_TIMEOUT_S": "4",  # shorter than the pause: a silent-removal misfire would show
        },
    ).start()
    call = None
    try:
        stack.connect_db()
        call = Call(stack.base_urls, sessions=1, per_session=3)
        call.publish_all()
        call.wait_published()
        call.chat_round(1)
        call.wait_chat(30)
        base = stack.base_urls[0]
        lobby = requests.post(f"{base}/api/v1/sessions", json={"name": "lobby"}, timeout=30).json()
        alice = call.clients[0]
        session_path = f"{base}/api/v1/sessions/{alice.sid}"
        join_key = uuid.uuid4().hex
        join = (
            "POST",
            f"{base}/api/v1/sessions/{lobby['session_id']}/participants",
            {
                "json": {"display_name": "late", "join_token": lobby["join_token"]},
                "headers": {"Idempotency-Key": join_key},
            },
        )
        probes = {
            "ready": ("GET", f"{base}/ready", {}),
            "create_session": ("POST", f"{base}/api/v1/sessions", {"json": {"name": "during-pause"}}),
            "join": join,
            "chat": ("POST", f"{session_path}/messages", {"json": {"payload": {"probe": 1}}, "headers": alice.auth}),
            "offer": (
                "POST",
                f"{session_path}/participants/{alice.participant_id}/offers",
                {"json": {"stream": "publish", "sdp": PUBLISH_SDP}, "headers": alice.auth},
            ),
            "get_session": ("GET", session_path, {"headers": alice.auth}),
        }

        pause(stack.mongo)
        paused_at = time.monotonic()
        with ThreadPoolExecutor(len(probes)) as pool:
            answers = dict(zip(probes, pool.map(lambda p: probe(p[0], p[1], **p[2]), probes.values()), strict=True))
        resume(stack.mongo)
        paused_s = time.monotonic() - paused_at
        offer_status, _t, offer_body = answers["offer"]
        if offer_status == 202:
            # Accepted without the database (PARTICIPANT_CACHE_S): the worker owes it its answer.
            alice.offers[offer_body["request_id"]] = ("publish", time.monotonic())

        ready_after = stack.wait_ready(60)
        joined_s, (join_status, _t, join_body) = until_status(lambda: probe(join[0], join[1], **join[2]), 201)
        call.chat_round(1)
        call.wait_chat(60)
        call.wait_answers(60)

        for name, (status, took, body) in answers.items():
            if name == "offer" and status == 202:
                continue
            assert status == 503, f"{name} during the pause: {status} {body}"
            assert took < BOUND_S, f"{name} took {took:.1f} s"
            if name != "ready":
                assert is_error_shape(503, body) and "temporarily unavailable" in body["message"], body
        # The refused join left nothing; its repeat joined exactly once.
        from models.participant import Participant, ParticipantState
        from models.session import Session

        joined = Participant.objects(session_id=lobby["session_id"], state=ParticipantState.JOINED).count()
        count = Session.objects(id=lobby["session_id"]).first().participant_count
        assert (joined, count) == (1, 1), (joined, count)
        assert join_body["participant_id"]
        assert not [m for c in call.clients for m in c.messages("participantLeft")], "someone was removed"
        assert "took over KMS session" not in stack.worker_logs(), "a live worker's KMS session was taken over"
        delivery = call.check_delivery()
        assert not call.duplicated_chats(), call.duplicated_chats()
        state = call.check_state(stack.kms_urls, other_sessions=(lobby["session_id"],))
        record_figures(
            "mongo_pause",
            {
                "paused_s": round(paused_s, 2),
                "answers_during_pause_status_s": {n: (s, round(t, 2)) for n, (s, t, _b) in answers.items()},
                "ready_200_after_resume_s": round(ready_after, 2),
                "join_repeated_201_after_ready_s": round(joined_s, 2),
                "lobby_joined_and_count": [joined, count],
                **delivery,
                **state,
            },
        )
    finally:
        try:
            resume(stack.mongo)
        except ProcessLookupError:
            pass
        if call:
            call.stop()
        stack.stop()
