"""A media server cut off from the network (every packet to and from its host dropped: a failed
switch, a host gone without a TCP reset) for longer than the health monitor's patience and the
KMS-session lease, then reconnected (issue 16, fault 3; the SIGSTOP version is test_kms_pause).

Two emulators: the call's sessions are on A, one session is pinned to B. A runs on a test host
of its own (tests/faults/netns.py), and its only link is cut: it keeps running, keeps its
sockets, and nothing it sends or is sent arrives. The health monitor must give it up (two failed
probes of KMS_HEALTH_INTERVAL_S) and tell every participant on it `mediaServerLost`; they rejoin
while A is still cut off, and each lost session gets exactly one new pipeline, on B. Then the
link is healed with the pipelines and endpoints of before still in A: nothing names them any
more, and the sweep must release them once A answers again (else they hold its memory and ports
for good). Chat runs throughout and loses nothing; the session on B never notices.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.callscript import Chatter, rejoin_all
from tests.faults.harness import FaultStack, record_figures
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
# Longer than the monitor's two failed probes, a request's timeout and the KMS-session lease
# (media_tasks.kms_sessions.HEARTBEAT_STALE_S).
CUT_S = 8.0


def test_a_media_server_cut_off_is_given_up_and_what_it_held_is_released_once_reconnected(
    fault_dir, vhost_url, network
):
    host_a = network.host("kms")
    link = network.link(host_a)
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=2,
        worker_count=3,
        web_count=2,
        kms_memory_offsets=(0, B_HEAVIER_KIB),
        kms_placement={A: {"host": link.peer_addr, "netns": host_a}},
    ).start()
    call = chatter = pinned = watch_b = None
    cut = False
    try:
        call, pinned = start_call(stack)
        lost_sids, lost = on_a(call)
        watch_b = PipelineCreations(stack.kms_urls[B])
        chatter = Chatter(call)
        chatter.start()
        time.sleep(1.0)

        cut_at = time.monotonic()
        link.cut()
        cut = True
        delays = wait_media_server_lost(lost, cut_at)
        rejoin_at = time.monotonic()
        rejoin_all(lost)  # while A is still cut off: the new pipelines go to B
        call.wait_answers()
        everything = last_answer_after(lost, rejoin_at)
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        link.heal()
        cut = False
        healed_at = time.monotonic()
        chatter.stop()
        call.wait_chat()

        check_lost_sessions(call, lost_sids, stack.kms_urls[B], watch_b.pipelines())
        check_untouched(call, pinned)
        delivery = call.check_delivery()
        # A's old pipelines: released by the sweep once A answers (within 20 s of the heal).
        state = call.check_state(stack.kms_urls, orphans_swept_within_s=20.0)
        record_figures(
            "kms_partition",
            {
                "cut_s": CUT_S,
                "media_server_lost_after_cut_s": sorted(round(d, 2) for d in delays),
                "rejoin_to_every_stream_answered_on_the_other_server_s": round(everything - rejoin_at, 2),
                "stale_pipelines_released_within_s_of_heal": round(time.monotonic() - healed_at, 2),
                **delivery,
                **state,
            },
        )
    finally:
        if cut:
            link.heal()
        if chatter and chatter.is_alive():
            chatter.stopping.set()
        for closable in (watch_b, pinned and pinned.client):
            if closable:
                closable.close()
        if call:
            call.stop()
        stack.stop()
