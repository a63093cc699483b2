"""A media server paused (SIGSTOP: a frozen VM, a host gone without a TCP reset) for longer than
the health monitor's patience, then resumed (issue 16, fault 3).

Two emulators: the call's sessions are on A, one session is pinned to B. A is paused: it keeps
its sockets open and answers nothing. The health monitor must give it up (two failed probes of
KMS_HEALTH_INTERVAL_S) and tell every participant on it `mediaServerLost`; they rejoin while A is
still paused, and each lost session gets exactly one new pipeline, on B. Then A resumes with the
pipelines and endpoints of before still in it: nothing names them any more, and the sweep must
release them once A answers again (else they hold its memory and ports for good). Chat runs
throughout and loses nothing; the session on B never notices.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.callscript import Chatter, rejoin_all
from tests.faults.harness import FaultStack, pause, record_figures, resume
from tests.faults.test_media_server_loss import (
    B_HEAVIER_KIB,
    check_lost_sessions,
    check_untouched,
    last_answer_after,
    on_a,
    start_call,
    wait_media_server_lost,
)
from tests.support.kms_watch import PipelineCreations

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = 0, 1
PAUSE_S = 6.0  # longer than the monitor's two failed probes, and than a request's timeout


def test_a_paused_media_server_is_given_up_and_what_it_held_is_released_once_it_answers_again(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir, vhost_url, kms_count=2, worker_count=3, web_count=2, kms_memory_offsets=(0, B_HEAVIER_KIB)
    ).start()
    call = chatter = pinned = watch_b = None
    paused = False
    try:
        call, pinned = start_call(stack)
        lost_sids, lost = on_a(call)
        watch_b = PipelineCreations(stack.kms_urls[B])
        chatter = Chatter(call)
        chatter.start()
        time.sleep(1.0)

        paused_at = time.monotonic()
        pause(stack.kms[A])
        paused = True
        delays = wait_media_server_lost(lost, paused_at)
        rejoin_at = time.monotonic()
        rejoin_all(lost)  # while A is still paused: the new pipelines go to B
        call.wait_answers()
        everything = last_answer_after(lost, rejoin_at)
        time.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused_at)))
        resume(stack.kms[A])
        paused = False
        resumed_at = time.monotonic()
        chatter.stop()
        call.wait_chat()

        check_lost_sessions(call, lost_sids, stack.kms_urls[B], watch_b.pipelines())
        check_untouched(call, pinned)
        delivery = call.check_delivery()
        # A's old pipelines: released by the sweep once A answers (within 20 s of the resume).
        state = call.check_state(stack.kms_urls, orphans_swept_within_s=20.0)
        record_figures(
            "kms_pause",
            {
                "pause_s": PAUSE_S,
                "media_server_lost_after_pause_s": sorted(round(d, 2) for d in delays),
                "rejoin_to_every_stream_answered_on_the_other_server_s": round(everything - rejoin_at, 2),
                "stale_pipelines_released_within_s_of_resume": round(time.monotonic() - resumed_at, 2),
                **delivery,
                **state,
            },
        )
    finally:
        if paused:
            resume(stack.kms[A])
        if chatter and chatter.is_alive():
            chatter.stopping.set()
        for closable in (watch_b, pinned and pinned.client):
            if closable:
                closable.close()
        if call:
            call.stop()
        stack.stop()
