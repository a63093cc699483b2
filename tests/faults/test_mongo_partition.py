"""One worker cut off from MongoDB only, longer than its KMS-session lease, then healed
(issue 16, fault 1), on test hosts of their own (tests/faults/netns.py).

Worker A runs in a network namespace with two links to this one: one to MongoDB's address, one
to the media servers' and the broker's. A creates every endpoint of a call (B and C consume
nothing yet); then B and C consume again, and A's MongoDB link is cut. A keeps its KMS sockets and its
broker: it still takes tasks (each fails on the database and is retried: none is lost), and its
KMS sessions stop being renewed, so B or C takes them over. A must stop using them before that
can happen, else its later requests would pull their events back to it while the records name
another holder (and a later death of A would leave them unwatched). Checked end to end: offers
made during the partition are answered by B and C; events of every endpoint reach their
participants during the partition and after it; once healed, A (then the only consumer) creates
endpoints under a KMS session of its own, never under one taken over. Chat loses nothing.
"""

from __future__ import annotations

import socket
import time

import pytest
from celery import Celery

from models import Endpoint, KmsSession
from signaling_cli.processes import PYTHON, all_shard_queues, free_port, spawn, wait_for_port
from tests.faults.callscript import Call, Chatter
from tests.faults.harness import FaultStack, first_event_after, record_figures
from tests.support.emulator_control import raise_event, sessions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITION_S = 8.0  # longer than the KMS-session lease (kms_sessions.HEARTBEAT_STALE_S) and a takeover
# Offers made during the partition are answered within this: a task A took waits out its
# database calls (MONGODB_SOCKET_TIMEOUT_S, 10 s) and is retried, on any worker, after the heal.
ANSWER_BOUND_S = 40.0
CANDIDATE = "candidate:88 1 UDP 2015363327 10.88.{round}.{n} 41{n:03d} typ host"


def consume(stack: FaultStack, workers, on: bool) -> None:
    """Celery's remote control: the workers stop (or start again) consuming every shard queue."""
    control = Celery(broker=stack.rabbitmq_url).control
    names = [f"{w.name}@{socket.gethostname()}" for w in workers]
    for queue in all_shard_queues(stack.env).split(","):
        command = control.add_consumer if on else control.cancel_consumer
        replies = command(queue, destination=names, reply=True, timeout=10, limit=len(names))
        assert len(replies) == len(names), replies


def owned_by(worker) -> list[str]:
    return [k.id for k in KmsSession.objects() if int(k.owner.split(":")[1]) == worker.pid]


def wait_for(predicate, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return time.monotonic()


def every_endpoint_relays(call: Call, round_: int) -> float:
    """Raises a new ICE candidate on every stored endpoint; each must reach its participant.
    Returns the seconds until the last one arrived."""
    raised_at = time.monotonic()
    by_id = {c.participant_id: c for c in call.clients}
    raised = {}
    for n, e in enumerate(Endpoint.objects(session_id__in=[s["session_id"] for s in call.sessions])):
        candidate = CANDIDATE.format(round=round_, n=n)
        data = {"candidate": {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}}
        assert raise_event(e.kurento.client.url, e.kurento.id, "IceCandidateFound", data) == 1
        raised[(e.participant_id, e.stream)] = candidate

    def arrived(pid, stream, candidate):
        return by_id[pid].arrival_of(
            lambda m: m["type"] == "iceCandidate" and m["stream"] == stream and m["candidate"]["candidate"] == candidate
        )

    for (pid, stream), candidate in raised.items():
        by_id[pid].wait_until(lambda cl, p=pid, s=stream, c=candidate: arrived(p, s, c), 30, f"candidate of {stream}")
    return max(arrived(pid, stream, candidate) for (pid, stream), candidate in raised.items()) - raised_at


def reoffer_subscriptions(call: Call, clients) -> float:
    """Each client offers again for every subscription (a new endpoint each); returns when sent."""
    at = time.monotonic()
    for c in clients:
        for other in call.senders(c):
            if other is c:
                continue
            c.offer(other.participant_id)
            c.trickle(other.participant_id)
    return at


def answered_after(clients, since: float) -> float:
    arrivals = [
        c.arrival_of(lambda m, r=request_id: m["type"] == "sdpAnswer" and m["request_id"] == r)
        for c in clients
        for request_id, (_stream, at) in c.offers.items()
        if at >= since
    ]
    return max(arrivals)


def test_a_worker_cut_off_from_mongodb_gives_up_its_kms_sessions_before_they_are_taken_over(
    fault_dir, vhost_url, network
):
    services = network.service_address(1)  # the media servers and the broker forwarder
    mongo_address = network.service_address(2)
    host_a = network.host("a")
    network.link(host_a, routes=(services,))
    mongo_link = network.link(host_a, routes=(mongo_address,))
    # The shared RabbitMQ listens on this host's loopback only: A reaches it through a relay.
    relay_port = free_port()
    relay = spawn(
        "broker-relay",
        [PYTHON, "-m", "tests.support.tcp_proxy", str(relay_port), "127.0.0.1:5672", services],
        {},
        fault_dir / "logs",
        relay_port,
    )
    wait_for_port(relay_port, 30, relay, services)
    a_broker_url = vhost_url.replace("127.0.0.1:5672", f"{services}:{relay_port}")
    try:
        stack = FaultStack(
            fault_dir,
            vhost_url,
            kms_count=1,
            worker_count=2,
            web_count=1,
            kms_args=("--test-control",),
            kms_placement={0: {"host": services}},
            mongo_host=mongo_address,
            first_workers=[{"netns": host_a, "env": {"RABBITMQ_URL": a_broker_url}}],
        ).start()
    except BaseException:
        relay.kill()
        raise
    worker_a, others = stack.workers[0], stack.workers[1:]
    call = chatter = None
    cut = False
    try:
        consume(stack, others, on=False)
        stack.connect_db()
        call = Call(stack.base_urls, sessions=2, per_session=2)
        call.connect_everyone()
        call.chat_round(1)
        call.wait_chat()
        held = owned_by(worker_a)
        assert held, "worker A holds no KMS session"
        before_cut = {e.kurento.id for e in Endpoint.objects()}

        consume(stack, others, on=True)
        chatter = Chatter(call)
        chatter.start()

        cut_at, cut_wall = time.monotonic(), time.time()
        mongo_link.cut()
        cut = True
        # Users act during the partition: A takes some of their tasks and cannot finish them.
        during = reoffer_subscriptions(call, call.clients)
        taken_at = wait_for(
            lambda: not set(held) & set(owned_by(worker_a)) and all(KmsSession.objects(id=k).first() for k in held),
            30,
            "nobody took A's KMS sessions over",
        )
        for kid in held:
            url = KmsSession.objects(id=kid).first().kms_url
            assert sessions(url)[kid]["bound"] and sessions(url)[kid]["resumed"] >= 1
        relayed_during = every_endpoint_relays(call, 1)

        time.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut_at)))
        mongo_link.heal()
        cut = False
        call.wait_answers(ANSWER_BOUND_S)
        answered_during = answered_after(call.clients, during) - during
        gave_up = first_event_after(worker_a.log_path, "no longer used for requests", cut_wall)
        took_over = min(
            at for w in others if (at := first_event_after(w.log_path, "took over KMS session", cut_wall)) is not None
        )
        assert gave_up is not None and gave_up < took_over, (gave_up, took_over)

        # A alone consumes again: the endpoints it now creates show which KMS session it uses.
        consume(stack, others, on=False)
        after = reoffer_subscriptions(call, call.clients)
        call.wait_answers(ANSWER_BOUND_S)
        answered_after_heal = answered_after(call.clients, after) - after
        new_endpoints = [e for e in Endpoint.objects() if e.kurento.id not in before_cut]
        assert not [e for e in new_endpoints if e.kms_session in held], "an endpoint created under a taken-over session"
        owners = {k.id: k.owner for k in KmsSession.objects()}
        for e in Endpoint.objects():
            assert e.kms_session in owners, f"endpoint {e.kurento.id} under an unrecorded KMS session"
        a_sessions = owned_by(worker_a)
        assert a_sessions and not set(a_sessions) & set(held), (a_sessions, held)
        relayed_after = every_endpoint_relays(call, 2)

        consume(stack, others, on=True)
        chatter.stop()
        call.wait_chat()
        delivery = call.check_delivery()
        state = call.check_state(stack.kms_urls)
        record_figures(
            "mongo_partition",
            {
                "partition_s": PARTITION_S,
                "kms_sessions_of_the_cut_off_worker": len(held),
                "cut_to_kms_sessions_taken_over_s": round(taken_at - cut_at, 2),
                "offers_during_partition_answered_within_s": round(answered_during, 2),
                "cut_to_cut_off_worker_giving_its_kms_sessions_up_s": round(gave_up - cut_wall, 2),
                "given_up_before_taken_over_by_s": round(took_over - gave_up, 2),
                "events_raised_after_takeover_reach_every_participant_within_s": round(relayed_during, 2),
                "offers_after_heal_answered_by_the_healed_worker_within_s": round(answered_after_heal, 2),
                "events_raised_after_heal_reach_every_participant_within_s": round(relayed_after, 2),
                **delivery,
                **state,
            },
        )
    finally:
        if cut:
            mongo_link.heal()
        if chatter and chatter.is_alive():
            chatter.stopping.set()
        if call:
            call.stop()
        stack.stop()
        relay.kill()
