"""What a long poll costs, counted: MongoDB commands and AMQP methods per delivering and idle poll.

Counted in this process, on a Mailbox of its own with a pymongo CommandListener on its own
database connection and every AMQP method its channels send; deterministic, so asserted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymongo.monitoring
import pytest

from tests.support.checks import wait_until

pytestmark = pytest.mark.integration

WRITES = {"insert", "update", "delete", "findAndModify"}
# AMQP methods by (class, method) id that wait for the broker's reply.
BLOCKING = {(50, 10): "queue.declare", (60, 10): "basic.qos", (60, 20): "basic.consume", (60, 30): "basic.cancel"}
ONE_WAY = {(60, 80): "basic.ack", (60, 90): "basic.reject"}


class _Commands(pymongo.monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def started(self, event: Any) -> None:
        target = event.command.get(event.command_name)
        with self.lock:
            self.seen.append((event.command_name, target if isinstance(target, str) else ""))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


_COMMANDS = _Commands()  # one counted connection for the whole test session


@dataclass
class Costs:
    mongo: _Commands
    amqp: list[str] = field(default_factory=list)

    def reset(self) -> None:
        with self.mongo.lock:
            self.mongo.seen.clear()
        self.amqp.clear()

    def mongo_writes(self) -> Counter[str]:
        return Counter(f"{name}:{coll}" for name, coll in self.mongo.seen if name in WRITES)

    def mongo_reads(self) -> Counter[str]:
        return Counter(f"{name}:{coll}" for name, coll in self.mongo.seen if name not in WRITES)

    def blocking(self) -> Counter[str]:
        return Counter(m for m in self.amqp if m in BLOCKING.values())


@pytest.fixture
def counted(stack, monkeypatch) -> Iterator[tuple[Any, Costs]]:
    """A Mailbox of the stack's deployment whose database and broker traffic is counted."""
    import mongoengine
    from amqp.abstract_channel import AbstractChannel

    from messaging import mailbox
    from models import connection
    from settings import load_settings

    # The renewer's periodic write is counted on its own (test_idle_polls_...), not per poll.
    monkeypatch.setattr(mailbox, "LEASE_RENEW_S", 3600.0)
    commands = _COMMANDS
    settings = load_settings({**stack.env, "MONGODB_URI": stack.env["MONGODB_URI"] + "?appname=counted"})
    alias = connection.database_alias(settings)
    if alias not in connection._registered:
        mongoengine.register_connection(
            alias,
            host=settings.mongodb_uri,
            uuidRepresentation="standard",
            tz_aware=True,
            w="majority",
            event_listeners=[commands],
        )
        connection._registered[alias] = settings.mongodb_uri
    costs = Costs(commands)
    send_method = AbstractChannel.send_method

    def counting_send(self: Any, sig: Any, *args: Any, **kwargs: Any) -> Any:
        key = (sig[0], sig[1]) if isinstance(sig, tuple) else (sig.method_sig[0], sig.method_sig[1])
        name = BLOCKING.get(key) or ONE_WAY.get(key)
        if name:
            costs.amqp.append(name)
        return send_method(self, sig, *args, **kwargs)

    monkeypatch.setattr(AbstractChannel, "send_method", counting_send)
    box = mailbox.Mailbox(settings)
    with connection.bound_to(alias):
        yield box, costs
        box.close()  # the connection stays: the models keep its collections


def _queued(stack, member, count: int) -> None:
    from messaging import topology
    from settings import load_settings
    from tests.support import rabbit

    queue = topology.participant_queue(load_settings(stack.env), member.session_id, member.participant_id).name
    wait_until(lambda: rabbit.ready_messages(stack.env["RABBITMQ_URL"], queue) >= count, f"{count} queued")


def test_a_delivering_poll_costs_one_database_write_and_no_broker_round_trip(api, stack, counted):
    from models import Participant

    box, costs = counted
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    alice.wait_type("participantJoined", participant_id=bob.participant_id)
    sid, pid = alice.session_id, alice.participant_id

    # The first poll of this process takes the lease from the database.
    assert bob.send({"n": 0}, to=pid).status_code == 202
    _queued(stack, alice, 1)
    costs.reset()
    first = box.poll(sid, pid, alice.after, wait=5, limit=100)
    assert [m["payload"] for m in first.messages] == [{"n": 0}]
    print(f"\nfirst poll: writes {dict(costs.mongo_writes())} reads {dict(costs.mongo_reads())} amqp {costs.amqp}")

    # The next ones find the lease (and the subscription) kept in this process.
    after = first.last_seq
    for n in (1, 2):
        assert bob.send({"n": n}, to=pid).status_code == 202
        time.sleep(0.3)  # it reaches the kept subscription
        costs.reset()
        delivery = box.poll(sid, pid, after, wait=5, limit=100)
        assert [m["payload"] for m in delivery.messages] == [{"n": n}]
        print(f"poll {n}: writes {dict(costs.mongo_writes())} reads {dict(costs.mongo_reads())} amqp {costs.amqp}")
        assert costs.mongo_writes() == Counter({"insert:outbox": 1})
        assert costs.mongo_reads() == Counter()
        assert costs.blocking() == Counter()
        # The ack is sent by the connection's thread, without waiting for the broker.
        wait_until(lambda: costs.amqp == ["basic.ack"], "the one ack sent")
        after = delivery.last_seq

    # With no poll following, the lease is released after the response: one write, with the
    # acknowledgement and last_seq, and the subscription ends (its unacked messages requeued).
    costs.reset()
    released = wait_until(
        lambda: (p := Participant.objects(id=pid).first()).poll_owner is None and p, "the kept lease released"
    )
    assert released.last_seq == after and released.acked_seq == after - 1
    assert costs.mongo_writes() == Counter({"update:participants": 1})
    assert costs.blocking() == Counter({"basic.cancel": 1})


def test_an_idle_poll_kept_in_process_costs_nothing_per_poll(api, counted):
    from models import Participant

    box, costs = counted
    session = api.create_session()
    alice = api.join(session, "alice")
    sid, pid = alice.session_id, alice.participant_id
    after = box.poll(sid, pid, 0, wait=1, limit=100).last_seq  # its own join, and the lease
    wait_until(lambda: "basic.ack" in costs.amqp, "that delivery acknowledged to the broker")
    costs.reset()
    for _ in range(3):
        assert box.poll(sid, pid, after, wait=0.3, limit=100).messages == []
    # Nothing arrived: no write, no read, and the consumer kept between polls needs no round trip.
    assert costs.mongo_writes() == Counter() and costs.mongo_reads() == Counter()
    assert costs.amqp == []
    wait_until(lambda: Participant.objects(id=pid).first().poll_owner is None, "the kept lease released")


def test_the_acknowledgement_and_lost_responses_hold_on_a_kept_lease(api, stack, counted):
    from models import OutboxMessage, Participant

    box, _costs = counted
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    alice.wait_type("participantJoined", participant_id=bob.participant_id)
    sid, pid, acked = alice.session_id, alice.participant_id, alice.after
    assert bob.send({"n": 1}, to=pid).status_code == 202
    first = box.poll(sid, pid, acked, wait=5, limit=100)
    assert [m["payload"] for m in first.messages] == [{"n": 1}]
    # The response was lost: the same `after` gets the same message, with the same seq.
    again = box.poll(sid, pid, acked, wait=0, limit=100)
    assert again.messages == first.messages
    # Acknowledged (and beyond what was handed out: clamped), then an older `after`: nothing comes back.
    assert box.poll(sid, pid, first.last_seq + 5, wait=0, limit=100).messages == []
    assert box.poll(sid, pid, acked, wait=0, limit=100).messages == []
    released = wait_until(
        lambda: (p := Participant.objects(id=pid).first()).poll_owner is None and p, "the kept lease released"
    )
    assert (released.last_seq, released.acked_seq) == (first.last_seq, first.last_seq)
    assert OutboxMessage.objects(participant_id=pid, seq__gt=acked).count() == 1


def test_a_poll_carries_a_streams_candidates_with_their_gathering_done(api, stack, counted, monkeypatch):
    from messaging import mailbox, messages
    from messaging.publisher import get_publisher
    from settings import load_settings

    # The bound is generous here so that a slow machine cannot split the burst; the default is ms.
    monkeypatch.setattr(mailbox, "CANDIDATES_LINGER_S", 3.0)
    box, _costs = counted
    session = api.create_session()
    alice = api.join(session, "alice")
    sid, pid = alice.session_id, alice.participant_id
    after = box.poll(sid, pid, 0, wait=1, limit=100).last_seq
    publisher = get_publisher(load_settings(stack.env))
    candidate = {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}

    def publish(*batch: messages.Message) -> None:
        for message in batch:
            publisher.to_participant(sid, pid, message)
        publisher.flush()

    # An answer is not held back for its candidates.
    publish(messages.sdp_answer("publish", "v=0", "r1"))
    answered = box.poll(sid, pid, after, wait=5, limit=100)
    assert [m["type"] for m in answered.messages] == ["sdpAnswer"]

    def trickle() -> None:
        time.sleep(0.3)
        publish(messages.ice_candidate("publish", candidate))
        time.sleep(0.3)
        second = {**candidate, "candidate": "candidate:2 1 tcp 1 10.0.0.1 9 typ host"}
        publish(messages.ice_candidate("publish", second), messages.ice_gathering_done("publish"))

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        gathered = box.poll(sid, pid, answered.last_seq, wait=5, limit=100)
    finally:
        trickler.join()
    assert [m["type"] for m in gathered.messages] == ["iceCandidate", "iceCandidate", "iceGatheringDone"]


def test_a_lease_kept_for_long_is_written_back_by_the_poll_that_takes_it(api, counted, monkeypatch):
    from messaging import mailbox
    from models import Participant

    box, costs = counted
    session = api.create_session()
    alice = api.join(session, "alice")
    sid, pid = alice.session_id, alice.participant_id
    first = box.poll(sid, pid, 0, wait=1, limit=100)
    assert first.messages, "its own join"
    owner = Participant.objects(id=pid).first().poll_owner
    Participant.count_dropped(pid, 3)  # counted by another web process meanwhile

    monkeypatch.setattr(mailbox, "CHECKPOINT_S", 0.0)
    costs.reset()
    second = box.poll(sid, pid, first.last_seq, wait=0, limit=100)
    # One write keeps the lease, records what the polls did, and reads the drops: announced now.
    assert costs.mongo_writes() == Counter({"findAndModify:participants": 1, "insert:outbox": 1})
    assert [(m["type"], m.get("count")) for m in second.messages] == [("messagesDropped", 3)]
    kept = Participant.objects(id=pid).first()
    assert kept.poll_owner == owner and (kept.last_seq, kept.acked_seq) == (first.last_seq, first.last_seq)

    # A kept lease that lapsed and was taken elsewhere is given up, not used: the database decides.
    Participant.objects(id=pid).update_one(set__poll_owner="another-instance", set__poll_lease_until=0.0)
    third = box.poll(sid, pid, second.last_seq, wait=0, limit=100)
    assert third.messages == []
    assert Participant.objects(id=pid).first().poll_owner not in (owner, "another-instance")
