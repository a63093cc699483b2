"""`kill -9` of the worker whose KMS session receives the events of a call's endpoints.

KMS routes an endpoint's events to the connection last bound to the KMS session that
subscribed them; the worker that created the endpoint holds that session. When it dies,
another worker must notice (its heartbeat in MongoDB stops), claim the session, bind a new
connection to it with `connect {sessionId}` and re-attach the relays, so that ICE candidates
and state events reach the participants again. Checked end to end: after the takeover the
emulator raises a new ICE candidate on every endpoint the dead worker had subscribed, and a
FAILED state on one of them; each owner must receive its `iceCandidate`, and the failed one
its `connectionFailed` after the debounce. Chat runs throughout and loses nothing.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from models import Endpoint, KmsSession
from tests.faults.callscript import Call, Chatter
from tests.faults.harness import FaultStack, kill_tree, record_figures
from tests.support.emulator_control import raise_event, sessions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEBOUNCE_S = 1.5
NEW_CANDIDATE = "candidate:77 1 UDP 2015363327 10.77.0.{n} 40{n:03d} typ host"


def test_events_reach_participants_again_after_the_worker_holding_their_kms_session_dies(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=2,
        worker_count=3,
        web_count=2,
        kms_args=("--test-control",),
        extra_env={"CONNECTION_DEBOUNCE_S": str(DEBOUNCE_S)},
    ).start()
    call = chatter = None
    try:
        stack.connect_db()
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.connect_everyone()
        call.chat_round(1)
        call.wait_chat()

        # The worker holding the KMS sessions of the most endpoints dies.
        endpoints = list(Endpoint.objects(session_id__in=[s["session_id"] for s in call.sessions]))
        owners = {k.id: k.owner for k in KmsSession.objects(id__in=list({e.kms_session for e in endpoints}))}
        victim_owner = Counter(owners[e.kms_session] for e in endpoints).most_common(1)[0][0]
        victim = next(w for w in stack.workers if w.pid == int(victim_owner.split(":")[1]))
        held = [kid for kid, owner in owners.items() if owner == victim_owner]
        orphaned = [e for e in endpoints if e.kms_session in held]
        chatter = Chatter(call)
        chatter.start()
        killed_at = time.monotonic()
        kill_tree(victim)

        deadline = time.monotonic() + 30
        while any(KmsSession.objects(id=kid).first().owner == victim_owner for kid in held):
            assert time.monotonic() < deadline, "nobody took the dead worker's KMS sessions over"
            time.sleep(0.05)
        taken_over = time.monotonic()
        for kid in held:
            new_owner = KmsSession.objects(id=kid).first().owner
            assert new_owner != victim_owner and any(
                w.pid == int(new_owner.split(":")[1]) for w in stack.live_workers
            ), new_owner
            url = KmsSession.objects(id=kid).first().kms_url
            assert sessions(url)[kid]["bound"] and sessions(url)[kid]["resumed"] >= 1  # connect {sessionId}

        # New events on every orphaned endpoint: each must reach its participant.
        by_id = {c.participant_id: c for c in call.clients}
        raised = {}
        for n, e in enumerate(orphaned):
            candidate = NEW_CANDIDATE.format(n=n)
            data = {"candidate": {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}}
            assert raise_event(e.kurento.client.url, e.kurento.id, "IceCandidateFound", data) == 1
            raised[(e.participant_id, e.stream)] = candidate
        for (pid, stream), candidate in raised.items():
            by_id[pid].wait_until(
                lambda cl, s=stream, c=candidate: any(
                    m["stream"] == s and m["candidate"]["candidate"] == c for m in cl.messages("iceCandidate")
                ),
                30,
                f"the new candidate of {stream}",
            )
        candidates_back = max(
            by_id[pid].arrival_of(
                lambda m, s=stream, c=candidate: (
                    m["type"] == "iceCandidate" and m["stream"] == s and m["candidate"]["candidate"] == c
                )
            )
            for (pid, stream), candidate in raised.items()
        )
        failing = orphaned[0]
        failed_at = time.monotonic()
        assert (
            raise_event(
                failing.kurento.client.url,
                failing.kurento.id,
                "IceComponentStateChanged",
                {"streamId": 1, "componentId": 1, "state": "FAILED"},
            )
            == 1
        )
        owner = by_id[failing.participant_id]
        owner.wait_until(lambda cl: cl.messages("connectionFailed"), DEBOUNCE_S + 30, "connectionFailed")
        assert [m["stream"] for m in owner.messages("connectionFailed")] == [failing.stream]
        reported = owner.arrival_of(lambda m: m["type"] == "connectionFailed") - failed_at

        chatter.stop()
        call.wait_chat()
        delivery = call.check_delivery()
        state = call.check_state(stack.kms_urls)
        record_figures(
            "kms_session_takeover",
            {
                "kms_sessions_of_the_killed_worker": len(held),
                "endpoints_whose_events_it_received": len(orphaned),
                "kill_to_kms_sessions_taken_over_s": round(taken_over - killed_at, 2),
                "kill_to_new_candidates_at_every_participant_s": round(candidates_back - killed_at, 2),
                "debounce_s": DEBOUNCE_S,
                "failed_state_to_connection_failed_after_takeover_s": round(reported, 2),
                **delivery,
                **state,
            },
        )
    finally:
        if chatter and chatter.is_alive():
            chatter.stopping.set()
        if call:
            call.stop()
        stack.stop()
