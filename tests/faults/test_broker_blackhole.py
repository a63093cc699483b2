"""The broker vanishes from one web instance without a TCP reset (a TCP relay between them is
SIGSTOPped: both sides keep their sockets and nothing passes), then comes back.

Before heartbeats and publish timeouts a POST through that instance hung for as long as the
client waited, and its long-poll consumers stayed with the broker (with their unacknowledged
deliveries) for TCP's ~15 minutes. Now: a POST answers 503 in the error shape within about
4 x TASK_PUBLISH_TIMEOUT_S; the instance's long-poll connections notice the missing heartbeats
(two of BROKER_HEARTBEAT_S) and polls get 503 until they reconnect; the other instance is
unaffected; when the relay resumes everything flows again and nothing acknowledged is lost.
"""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from signaling_cli.processes import PYTHON, free_port, spawn, wait_for_port
from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, first_event_after, pause, record_figures, resume
from tests.faults.probe import chat_probe, is_error_shape, until_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PUBLISH_TIMEOUT_S = 1
HEARTBEAT_S = 2
BOUND_S = 4 * PUBLISH_TIMEOUT_S + 2  # the stated bound, plus the request's own work


def _through_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}"))


def test_web_loses_the_broker_without_a_reset_and_answers_503_in_bounded_time(fault_dir, vhost_url):
    parts = urlsplit(vhost_url)
    proxy_port = free_port()
    proxy = spawn(
        "broker-proxy",
        [PYTHON, "-m", "tests.support.tcp_proxy", str(proxy_port), f"{parts.hostname}:{parts.port or 5672}"],
        {},
        fault_dir / "logs",
        proxy_port,
    )
    wait_for_port(proxy_port, 30, proxy)
    stack = None
    call = None
    try:
        stack = FaultStack(
            fault_dir,
            vhost_url,
            kms_count=1,
            worker_count=2,
            web_count=2,
            extra_env={"TASK_PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S), "BROKER_HEARTBEAT_S": str(HEARTBEAT_S)},
            web_env={0: {"RABBITMQ_URL": _through_proxy(vhost_url, proxy_port)}},
        ).start()
        stack.connect_db()
        # Everyone posts and polls through the instance that will lose the broker.
        call = Call(stack.base_urls, sessions=1, per_session=3, poll_bases=[0])
        call.publish_all()
        call.wait_published()
        call.chat_round(1)
        call.wait_chat(30)
        web0, web1 = stack.base_urls
        alice = call.clients[0]

        pause(proxy)
        paused_at = time.monotonic()
        paused_wall = time.time()
        # Clients keep posting through the fault; they retry 503s under the same key.
        loader = threading.Thread(target=call.chat_round, args=(1,), daemon=True)
        loader.start()
        key = uuid.uuid4().hex
        cut_status, cut_took, cut_body = chat_probe(web0, alice, key)
        other_status, other_took, _ = chat_probe(web1, alice)
        # The instance's long-poll connections miss the broker's heartbeats and start over.
        web0_log = stack.webs[0].log_path
        deadline = time.monotonic() + 6 * HEARTBEAT_S + 10
        while (lost_at := first_event_after(web0_log, "lost the broker", paused_wall)) is None:
            assert time.monotonic() < deadline, "the long-poll connections never noticed the silent broker"
            time.sleep(0.2)
        resume(proxy)
        resumed_at = time.monotonic()
        back_s, (back_status, _t, _b) = until_status(lambda: chat_probe(web0, alice, key), 202, timeout=60)
        loader.join(120)
        assert not loader.is_alive()
        call.chat_round(1)
        call.wait_chat(60)

        assert cut_status == 503 and is_error_shape(503, cut_body), (cut_status, cut_body)
        assert cut_took < BOUND_S, f"the 503 took {cut_took:.1f} s (bound {BOUND_S} s)"
        assert other_status == 202, "the instance with its own broker connection was affected"
        delivery = call.check_delivery()
        assert call.duplicated_chats() <= call.rekeyed_chats()
        state = call.check_state(stack.kms_urls)
        statuses = sum((c.stats.statuses for c in call.clients), start=type(call.clients[0].stats.statuses)())
        record_figures(
            "broker_blackhole",
            {
                "post_503_after_s": round(cut_took, 2),
                "post_on_other_instance_status_s": [other_status, round(other_took, 2)],
                "long_poll_connection_dropped_after_s": round(lost_at - paused_wall, 2),
                "paused_s": round(resumed_at - paused_at, 2),
                "same_key_post_202_after_resume_s": round(back_s, 2),
                "client_answers_by_status": dict(statuses),
                "chat_messages_duplicated": len(call.duplicated_chats()),
                **delivery,
                **state,
            },
        )
    finally:
        try:
            resume(proxy)
        except ProcessLookupError:
            pass
        if call:
            call.stop()
        if stack:
            stack.stop()
        proxy.stop()
