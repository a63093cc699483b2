"""Two web instances whose clocks disagree by 2 s (libfaketime on one of them, either way).

Tokens are issued by one instance and checked by the other: with TOKEN_LEEWAY_S (5 s) a token
from an instance whose clock is ahead verifies (itsdangerous alone refuses any negative age:
3.9 % of fresh tokens failed with only 50 ms of skew), and a call whose clients post through one
instance and poll through the other loses nothing (poll leases written by one clock and judged by
the other keep working: they last 6 s and are renewed every 2 s).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests

from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, record_figures

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not LIBFAKETIME.exists() or shutil.which("faketime") is None,
        reason="libfaketime is not installed (make faketime)",
    ),
]

TOKENS = 40


@pytest.mark.parametrize("skew", ["+2", "-2"])
def test_tokens_and_polls_work_across_instances_whose_clocks_differ(fault_dir, vhost_url, skew):
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=1,
        worker_count=2,
        web_count=2,
        # Its monotonic clock is shifted too (harmless: only compared within the process);
        # libfaketime 0.9.10's FAKETIME_DONT_FAKE_MONOTONIC makes every sleep fail with EINVAL.
        web_env={1: {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{skew}s"}},
    ).start()
    call = None
    try:
        stack.connect_db()
        real, skewed = stack.base_urls
        seen = requests.get(f"{skewed}/health", timeout=10).headers.get("Date")
        assert seen, "no Date header from the skewed instance"
        skew_seen = time.mktime(time.strptime(seen, "%a, %d %b %Y %H:%M:%S GMT")) - time.mktime(time.gmtime())
        assert abs(skew_seen - int(skew)) <= 1.5, f"the instance's clock is off by {skew_seen} s, not {skew}"

        # Fresh tokens from each instance, used at once on the other one.
        refused = {"issued_by_skewed": 0, "issued_by_real": 0}
        session = requests.post(
            f"{real}/api/v1/sessions", json={"name": "skew", "max_participants": 2 * TOKENS + 2}, timeout=30
        ).json()
        for i in range(TOKENS):
            for issuer, checker, label in ((skewed, real, "issued_by_skewed"), (real, skewed, "issued_by_real")):
                joined = requests.post(
                    f"{issuer}/api/v1/sessions/{session['session_id']}/participants",
                    json={"display_name": f"{label}-{i}", "join_token": session["join_token"]},
                    timeout=30,
                )
                assert joined.status_code == 201, joined.text
                body = joined.json()
                check = requests.get(
                    f"{checker}/api/v1/sessions/{session['session_id']}",
                    headers={"Authorization": f"Bearer {body['token']}"},
                    timeout=30,
                )
                if check.status_code != 200:
                    refused[label] += 1
        assert refused == {"issued_by_skewed": 0, "issued_by_real": 0}, refused

        # A call whose clients join and post through one instance and poll through the other.
        call = Call(stack.base_urls, sessions=1, per_session=4, poll_bases=[1, 0])
        call.publish_all()
        call.wait_published()
        call.subscribe_all()
        call.wait_answers(60)
        call.chat_round(3)
        call.wait_chat(60)
        delivery = call.check_delivery()
        assert not call.duplicated_chats()
        state = call.check_state(stack.kms_urls, other_sessions=(session["session_id"],))
        record_figures(
            f"clock_skew_{skew}s",
            {
                "skew_seen_s": round(skew_seen, 1),
                "fresh_tokens_checked": 2 * TOKENS,
                "refused": refused,
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
