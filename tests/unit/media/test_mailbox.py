"""messaging.mailbox against nx-27017, with the participant's RabbitMQ queue faked (FakeQueues)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from messaging import topology
from messaging.delivery_hub import Subscription
from messaging.mailbox import Mailbox
from models import Participant
from settings import Settings
from tests.unit.media.conftest import new_participant, new_session

pytestmark = pytest.mark.timeout(30)


@dataclass
class FakeMessage:
    body: bytes
    delivery_tag: int
    properties: dict[str, Any]


@dataclass
class FakeQueues:
    """The delivery hub's boundary: queues of messages; a message leaves its queue when acked."""

    queues: dict[str, list[FakeMessage]] = field(default_factory=dict)
    acked: list[int] = field(default_factory=list)
    next_tag: int = 0
    # A consumer the mailbox keeps between polls gets what is put meanwhile, up to its prefetch.
    consuming: dict[str, Subscription] = field(default_factory=dict)

    def put(self, queue: str, message: dict[str, Any], message_id: str | None = None) -> None:
        self.next_tag += 1
        body = json.dumps(message).encode()
        properties = {"message_id": message_id or uuid.uuid4().hex}
        self.queues.setdefault(queue, []).append(FakeMessage(body, self.next_tag, properties))
        subscription = self.consuming.get(queue)
        if subscription is not None and len(subscription.tags) < (subscription.prefetch or 0):
            subscription.on_message(self.queues[queue][-1])

    # -- DeliveryHub / HubConnection, as Mailbox uses them --------------------------------------
    def connection_for(self, _key: str) -> FakeQueues:
        return self

    def subscribe(self, queue: str, prefetch: int | None = None, skip_if_empty: bool = False) -> Subscription | None:
        waiting = self.queues.get(queue, [])
        if not waiting and skip_if_empty:
            return None
        subscription = Subscription(queue, channel=None, prefetch=prefetch)  # type: ignore[arg-type]  # no broker here
        for message in waiting[:prefetch]:
            subscription.on_message(message)
        self.consuming[queue] = subscription
        return subscription

    def close(self) -> None:
        return None  # no broker here: nothing to close

    def declare(self, _action: Any) -> None:
        return None  # no broker here: nothing to declare

    def ack(self, subscription: Subscription, delivery_tag: int) -> None:
        self.acked.append(delivery_tag)
        self.queues[subscription.queue] = [m for m in self.queues[subscription.queue] if m.delivery_tag > delivery_tag]
        subscription.tags = [tag for tag in subscription.tags if tag > delivery_tag]

    def unsubscribe(self, subscription: Subscription) -> None:
        # What was not acked stays in its queue, as a requeue leaves it.
        if self.consuming.get(subscription.queue) is subscription:
            del self.consuming[subscription.queue]


@pytest.fixture
def mailbox(settings: Settings) -> Iterator[tuple[Mailbox, FakeQueues, str, str, str]]:
    box = Mailbox(settings)
    queues = FakeQueues()
    box.hub = queues  # type: ignore[assignment]
    session = new_session()
    alice = new_participant(session)
    queue = topology.participant_queue(settings, session.id, alice.id).name
    yield box, queues, session.id, alice.id, queue
    box.close()  # releases the lease kept for a next poll


def test_messages_are_numbered_in_queue_order(mailbox: tuple[Mailbox, FakeQueues, str, str, str]) -> None:
    box, queues, session_id, participant_id, queue = mailbox
    for n in range(3):
        queues.put(queue, {"type": "chat", "n": n})
    delivery = box.poll(session_id, participant_id, after=0, wait=0, limit=10)
    assert [(m["seq"], m["n"]) for m in delivery.messages] == [(1, 0), (2, 1), (3, 2)]
    assert delivery.last_seq == 3 and queues.queues[queue] == []


def test_after_acknowledges_and_numbering_continues(mailbox: tuple[Mailbox, FakeQueues, str, str, str]) -> None:
    box, queues, session_id, participant_id, queue = mailbox
    queues.put(queue, {"type": "chat", "n": 0})
    assert [m["seq"] for m in box.poll(session_id, participant_id, after=0, wait=0, limit=10).messages] == [1]
    queues.put(queue, {"type": "chat", "n": 1})
    queues.put(queue, {"type": "chat", "n": 2})
    later = box.poll(session_id, participant_id, after=1, wait=0, limit=10)
    assert [(m["seq"], m["n"]) for m in later.messages] == [(2, 1), (3, 2)]
    # Everything acknowledged and nothing new: an empty answer that keeps the position.
    empty = box.poll(session_id, participant_id, after=3, wait=0, limit=10)
    assert (empty.messages, empty.last_seq) == ([], 3)


def test_a_lost_response_is_delivered_again(mailbox: tuple[Mailbox, FakeQueues, str, str, str]) -> None:
    box, queues, session_id, participant_id, queue = mailbox
    queues.put(queue, {"type": "chat", "n": 0})
    queues.put(queue, {"type": "chat", "n": 1})
    first = box.poll(session_id, participant_id, after=0, wait=0, limit=10)
    queues.put(queue, {"type": "chat", "n": 2})
    # The client never saw `first`, so it asks again from 0: the same seqs, then what is new.
    again = box.poll(session_id, participant_id, after=0, wait=0, limit=10)
    assert again.messages[:2] == first.messages
    assert [(m["seq"], m["n"]) for m in again.messages] == [(1, 0), (2, 1), (3, 2)]


def test_a_redelivered_message_is_not_repeated(mailbox: tuple[Mailbox, FakeQueues, str, str, str]) -> None:
    box, queues, session_id, participant_id, queue = mailbox
    queues.put(queue, {"type": "chat", "n": 0}, message_id="same")
    assert [m["seq"] for m in box.poll(session_id, participant_id, after=0, wait=0, limit=10).messages] == [1]
    queues.put(queue, {"type": "chat", "n": 0}, message_id="same")  # a task that ran twice
    queues.put(queue, {"type": "chat", "n": 1})
    delivery = box.poll(session_id, participant_id, after=1, wait=0, limit=10)
    assert [(m["seq"], m["n"]) for m in delivery.messages] == [(2, 1)]


def test_drops_counted_here_reach_the_next_poll_of_a_kept_lease(
    mailbox: tuple[Mailbox, FakeQueues, str, str, str],
) -> None:
    from models import Participant

    box, queues, session_id, participant_id, queue = mailbox
    queues.put(queue, {"type": "chat", "n": 0})
    first = box.poll(session_id, participant_id, after=0, wait=0, limit=10)
    # This process's overflow counter counts drops for a participant whose lease it keeps.
    Participant.count_dropped(participant_id, 2)
    box.keeper.resync_soon(participant_id)
    queues.put(queue, {"type": "chat", "n": 1})
    later = box.poll(session_id, participant_id, after=first.last_seq, wait=0, limit=10)
    assert [(m["seq"], m["type"]) for m in later.messages] == [(2, "messagesDropped"), (3, "chat")]
    assert later.messages[0]["count"] == 2


def test_a_lease_kept_for_long_trims_what_was_acknowledged(
    mailbox: tuple[Mailbox, FakeQueues, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from messaging import mailbox as mailbox_module
    from models import OutboxMessage

    box, queues, session_id, participant_id, queue = mailbox
    for n in range(mailbox_module.TRIM_BATCH):
        queues.put(queue, {"type": "chat", "n": n})
    first = box.poll(session_id, participant_id, after=0, wait=0, limit=100)
    monkeypatch.setattr(mailbox_module, "CHECKPOINT_S", 0.0)
    box.poll(session_id, participant_id, after=first.last_seq, wait=0, limit=100)
    blanked = OutboxMessage.objects(participant_id=participant_id, acked_at__gt=0.0)
    assert sorted(e.seq for e in blanked) == list(range(1, mailbox_module.TRIM_BATCH + 1))


def test_with_handover_off_every_delivery_releases_its_lease(settings: Settings) -> None:
    # POLL_HANDOVER_S=0: for load balancers that spread one client's polls over instances, where a
    # kept lease would make a poll elsewhere wait for it.
    box = Mailbox(dataclasses.replace(settings, poll_handover_s=0.0))
    queues = FakeQueues()
    box.hub = queues  # type: ignore[assignment]
    session = new_session()
    alice = new_participant(session)
    queue = topology.participant_queue(settings, session.id, alice.id).name
    queues.put(queue, {"type": "chat", "n": 0})
    delivery = box.poll(session.id, alice.id, after=0, wait=0, limit=10)
    assert [m["seq"] for m in delivery.messages] == [1]
    assert box.keeper.take(alice.id) is None and queue not in queues.consuming
    stored = Participant.objects(id=alice.id).only("poll_owner", "last_seq").first()
    assert stored is not None and stored.poll_owner is None and stored.last_seq == 1
