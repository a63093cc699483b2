"""Long-poll delivery: a participant's queue, drained into its outbox, read by `after`.

AMQP acks belong to the channel that received a message, and the next HTTP poll may reach
another web instance. So a poll moves what it takes from RabbitMQ into the participant's
outbox in MongoDB (numbered by a conditional seq reservation), acks in RabbitMQ only after that
write, and answers with what it stored. A lease on the participant lets one poll at a time do
the moving, which keeps seq order equal to queue order across instances.

Round trips are what a poll costs, so a delivery takes three: taking the lease (which also
records the client's acknowledgement and returns last_seq, so the outbox is read only when it
holds something the client has not seen), storing the messages numbered from that last_seq,
and releasing the lease with the new last_seq. Bodies the client
acknowledged are blanked in batches (TRIM_BATCH). A waiting poll writes nothing: each web
instance renews the leases of its waiting polls in one write every LEASE_RENEW_S, so a thousand
idle polls cost one update, and an instance that dies, or a release that fails, stalls its
participants for one lease at most.

A waiting poll holds no broker connection of its own: it borrows a channel on one of the
process's few shared connections (messaging.delivery_hub).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from messaging import messages, topology
from messaging.delivery_hub import AmqpMessage, BrokerUnavailable, DeliveryHub, QueueGone, Subscription
from messaging.messages import Message
from messaging.overflow import OverflowCounter
from models import OutboxMessage, Participant, bound_to, database_alias
from settings import Settings

log = logging.getLogger(__name__)

LEASE_S = 6.0
LEASE_RENEW_S = 2.0
LEASE_RETRY_S = 0.1
# After the first message, how long a poll lets the rest of a burst arrive before it answers.
BURST_LINGER_S = 0.001
# Acknowledged bodies are blanked once this many have accumulated: one write per batch.
TRIM_BATCH = 32
# With wait=0 and messages in the queue, how long the first delivery may take to arrive.
IMMEDIATE_GRACE_S = 0.5


class UnknownParticipant(LookupError):
    """No such participant in the session."""


# A message as the client receives it: its seq plus the published message's fields.
DeliveredMessage = dict[str, Any]


@dataclass
class Delivery:
    messages: list[DeliveredMessage]
    last_seq: int


class LeaseRenewer:
    """Renews the leases of this web process's waiting polls, in one write per LEASE_RENEW_S."""

    def __init__(self, instance: str, database: str) -> None:
        self.instance = instance
        self.database = database  # the alias of the app's database (models.connection)
        self._waiting: dict[str, str] = {}  # participant id -> owner of the lease its poll holds
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, participant_id: str, owner: str) -> None:
        with self._lock:
            self._waiting[participant_id] = owner
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="poll-lease-renewer", daemon=True)
                self._thread.start()

    def release(self, participant_id: str, owner: str) -> None:
        with self._lock:
            if self._waiting.get(participant_id) == owner:
                del self._waiting[participant_id]

    def _run(self) -> None:
        while True:
            time.sleep(LEASE_RENEW_S)
            with self._lock:
                owners = dict(self._waiting)
            if not owners:
                continue
            now = time.time()
            try:
                with bound_to(self.database):
                    Participant.renew_poll_leases(owners, now, now + LEASE_S)
            except Exception:
                # A lease that lapses meanwhile is safe: the unique seq index refuses a second mover.
                log.warning("renewing the poll leases of %s failed", self.instance, exc_info=True)


class Mailbox:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = DeliveryHub(settings.rabbitmq_url, settings.delivery_connections)
        self._renewer_pid = 0
        self._renewer: LeaseRenewer | None = None
        self._overflow_pid = 0
        self._overflow: OverflowCounter | None = None

    @property
    def renewer(self) -> LeaseRenewer:
        # Per process: the app may be created before a server forks its workers.
        if self._renewer is None or self._renewer_pid != os.getpid():
            instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._renewer = LeaseRenewer(instance, database_alias(self.settings))
            self._renewer_pid = os.getpid()
        return self._renewer

    @property
    def overflow(self) -> OverflowCounter:
        # Per process, like the renewer.
        if self._overflow is None or self._overflow_pid != os.getpid():
            self._overflow = OverflowCounter(self.settings, self.hub, database_alias(self.settings))
            self._overflow_pid = os.getpid()
        return self._overflow

    def poll(
        self,
        session_id: str,
        participant_id: str,
        after: int,
        wait: float,
        limit: int,
        beside_another: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> Delivery:
        """The participant's messages after `after`, waiting up to `wait` seconds for the first.

        `beside_another` is entered (once, and held until the poll ends) when another poll holds
        the lease; it may refuse the poll by raising. UnknownParticipant when there is no such
        participant in the session.
        """
        self.overflow.ensure_running()
        with contextlib.ExitStack() as held:
            return self._poll(
                session_id, participant_id, after, wait, limit, lambda: held.enter_context(beside_another())
            )

    def _poll(
        self,
        session_id: str,
        participant_id: str,
        after: int,
        wait: float,
        limit: int,
        enter_beside_another: Callable[[], object],
    ) -> Delivery:
        deadline = time.monotonic() + wait
        acknowledged = False
        known: Participant | None = None  # read only when the lease is not taken at once
        while True:
            owner = uuid.uuid4().hex
            now = time.time()
            # The common case in one write: the participant is one of the session, its lease is
            # free, and `after` is not beyond what was handed out.
            leased = Participant.acquire_poll_lease(
                participant_id, owner, now, now + LEASE_S, self.renewer.instance, after, session_id
            )
            if leased is not None:
                after = leased.acked_seq  # what was acknowledged before is never served again
                recorded = leased.last_seq
                if leased.lease_lapsed:
                    # Its holder died (or its release failed) maybe after storing entries beyond
                    # last_seq: serve them, and number after them, so that the broker's redelivered
                    # copies are dropped as the duplicates they now really are. One indexed read,
                    # only after a lease that was not released.
                    leased.last_seq = max(recorded, OutboxMessage.highest_seq(participant_id))
                moved = _Moved(leased.last_seq)
                reported: int | None = None
                try:
                    delivered: list[DeliveredMessage] = []
                    if leased.last_seq > after:
                        # Stored earlier and not acknowledged (a response lost in transit): again,
                        # with whatever the queue holds right now, up to the limit.
                        delivered = self._delivery(OutboxMessage.after(participant_id, after, limit), after).messages
                        if len(delivered) >= limit:
                            return Delivery(delivered, delivered[-1]["seq"])
                    if leased.dropped_count > leased.dropped_reported:
                        # The queue dropped its oldest messages: say so before what it still holds.
                        # The id makes a repeat of this notice (a lapsed lease) a duplicate.
                        notice = messages.messages_dropped(leased.dropped_count - leased.dropped_reported)
                        stored = self._store_notice(
                            participant_id, moved, f"dropped-{participant_id}-{leased.dropped_count}", notice
                        )
                        if stored is not None:
                            delivered += stored
                            reported = leased.dropped_count
                    delivered += self._move_to_outbox(
                        leased, moved, deadline, limit - len(delivered), immediate=wait == 0 or bool(delivered)
                    )
                    return Delivery(delivered, delivered[-1]["seq"] if delivered else after)
                finally:
                    trimmed = self._trim(participant_id, after) if after - leased.trimmed_seq >= TRIM_BATCH else None
                    stored_up_to = moved.last_seq if moved.last_seq > recorded else None
                    Participant.release_poll_lease(participant_id, owner, time.time(), trimmed, stored_up_to, reported)
            if known is None:
                known = Participant.objects(id=participant_id, session_id=session_id).first()
                if known is None:
                    raise UnknownParticipant(participant_id)
                if after > known.last_seq:
                    # A poll beside a holder that then died may have served entries its release
                    # never recorded: the outbox, not last_seq, says what was handed out.
                    highest = OutboxMessage.highest_seq(participant_id)
                    if known.last_seq < highest and after <= highest:
                        Participant.catch_up_seq(participant_id, highest)
                        known.last_seq = highest
                        continue
                # An `after` beyond every seq handed out acknowledges nothing that does not exist
                # yet; one below the acknowledgement on record does not bring anything back.
                clamped = max(min(after, known.last_seq), known.acked_seq)
                if clamped < after:
                    after = clamped
                    continue  # that was why the lease was refused: take it now
                after = clamped
            # Another poll (maybe on another instance) is moving messages; read what it stores.
            if not acknowledged:
                enter_beside_another()
                Participant.acknowledge(participant_id, after)
                acknowledged = True
            waiting = OutboxMessage.after(participant_id, after, limit)
            if waiting:
                return self._delivery(waiting, after)
            if time.monotonic() >= deadline:
                return self._delivery([], after)
            time.sleep(min(LEASE_RETRY_S, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _trim(participant_id: str, up_to: int) -> int | None:
        try:
            OutboxMessage.trim(participant_id, up_to)
            return up_to
        except Exception:  # housekeeping only: the next batch tries again
            log.warning("trimming the outbox of %s failed", participant_id, exc_info=True)
            return None

    @staticmethod
    def _delivery(entries: list[OutboxMessage], after: int) -> Delivery:
        messages = [{"seq": e.seq, **json.loads(e.body)} for e in entries]
        return Delivery(messages, entries[-1].seq if entries else after)

    def _move_to_outbox(
        self, participant: Participant, moved: _Moved, deadline: float, limit: int, immediate: bool
    ) -> list[DeliveredMessage]:
        """The messages moved from the queue into the outbox, as delivered to the client."""
        queue = topology.participant_queue(self.settings, participant.session_id, participant.id).name
        connection = self.hub.connection_for(participant.id)
        try:
            subscription = connection.subscribe(queue, prefetch=limit, skip_if_empty=immediate)
        except QueueGone:
            # The broker deleted the queue (x-expires: the client stayed away longer than
            # PARTICIPANT_QUEUE_EXPIRES_S). A participant that left needs nothing more; a joined one
            # gets its queue and binding back, and a `resync`: what was published meanwhile is lost.
            if not participant.is_active:
                return []
            session_id, settings = participant.session_id, self.settings
            connection.declare(
                lambda channel: topology.declare_participant(channel, settings, session_id, participant.id)
            )
            notice = messages.resync(messages.RESYNC_QUEUE_EXPIRED)
            return self._store_notice(participant.id, moved, f"resync-{uuid.uuid4().hex}", notice) or []
        if subscription is None:
            return []  # nothing waiting, and the client did not ask to wait
        try:
            if immediate:
                deadline = time.monotonic() + IMMEDIATE_GRACE_S
            renewer = self.renewer
            renewer.hold(participant.id, participant.poll_owner)
            try:
                self._wait_for_first(subscription, deadline)
            finally:
                renewer.release(participant.id, participant.poll_owner)
            if subscription.received:
                # Let a burst already on its way join this delivery: one cycle instead of many.
                time.sleep(BURST_LINGER_S)
            received = subscription.take()
            if not received:
                return []
            delivered = self._store(participant.id, moved, received)
            if delivered is None:
                return []  # the lease lapsed and another poll moved messages: these are requeued
            if self.settings.test_pause_after_outbox_store:
                _pause_for_test(self.settings.test_pause_after_outbox_store)
            connection.ack(subscription, received[-1].delivery_tag)
            return delivered
        finally:
            # Unsubscribing requeues whatever was delivered after `take`, or was not stored.
            connection.unsubscribe(subscription)

    @staticmethod
    def _wait_for_first(subscription: Subscription, deadline: float) -> None:
        while not subscription.received:
            if subscription.broken:
                raise BrokerUnavailable("the broker connection dropped")
            if subscription.cancelled:
                return  # the queue was deleted: nothing more will come
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            subscription.arrived.wait(remaining)

    @staticmethod
    def _store(participant_id: str, moved: _Moved, received: list[AmqpMessage]) -> list[DeliveredMessage] | None:
        """Numbers and stores the messages after the lease's last_seq; None if a seq was taken.

        No reservation write: the lease holder alone numbers messages, and the unique index on
        (participant, seq) refuses a second mover whose lease lapsed under it. One insert for
        the whole delivery.
        """
        entries = []
        for message in received:
            message_id = message.properties.get("message_id") or f"tag-{uuid.uuid4().hex}"
            body = message.body.decode() if isinstance(message.body, bytes) else message.body
            entries.append((message_id, body))
        return Mailbox._store_entries(participant_id, moved, entries)

    @staticmethod
    def _store_notice(
        participant_id: str, moved: _Moved, message_id: str, notice: Message
    ) -> list[DeliveredMessage] | None:
        """Stores a message of the service's own (a gap in delivery) as the next seq."""
        return Mailbox._store_entries(participant_id, moved, [(message_id, json.dumps(notice, separators=(",", ":")))])

    @staticmethod
    def _store_entries(
        participant_id: str, moved: _Moved, entries: list[tuple[str, str]]
    ) -> list[DeliveredMessage] | None:
        batch = OutboxMessage.store_many(participant_id, moved.last_seq, entries)
        if batch.stored:
            moved.last_seq = batch.stored[-1][0]
        if batch.seq_taken:
            # Another mover numbered past our lease's last_seq: catch up, let the client poll again.
            # What this poll stored before meeting it is in the outbox and served by the next poll.
            Participant.catch_up_seq(participant_id, OutboxMessage.highest_seq(participant_id))
            return None
        # A redelivered message (DUPLICATE) was stored before, with its first seq, and is not repeated.
        return [{"seq": seq, **json.loads(body)} for seq, body in batch.stored]


@dataclass
class _Moved:
    """The highest seq stored by the poll holding the lease, written back when it releases it."""

    last_seq: int


def _pause_for_test(marker: str) -> None:
    """Test hook (TEST_PAUSE_AFTER_OUTBOX_STORE): stored, not acked, lease held; wait to be killed."""
    with open(marker, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
