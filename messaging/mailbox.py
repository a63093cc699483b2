"""Long-poll delivery: a participant's queue, drained into its outbox, read by `after`.

AMQP acks belong to the channel that received a message, and the next HTTP poll may reach
another web instance. So a poll moves what it takes from RabbitMQ into the participant's
outbox in MongoDB (numbered by a conditional seq reservation), acks in RabbitMQ only after that
write, and answers with what it stored. A lease on the participant lets one poll at a time do
the moving, which keeps seq order equal to queue order across instances.

Round trips are what a poll costs. Taking the lease records the client's acknowledgement and
returns last_seq (so the outbox is read only when it holds something the client has not seen);
the messages are stored numbered from that last_seq in one insert. After a delivery the lease
is not released at once: with keep-alive the participant's next poll usually reaches this same
process, and takes the lease over in memory, with the subscription still consuming (LeaseKeeper).
So a delivering poll costs the one insert and no broker round trip. A lease no poll took within
POLL_HANDOVER_S is released by a background thread, after the response went out, with the
acknowledgement and last_seq of the polls it served; one kept longer than CHECKPOINT_S is
written back (and the drops counted meanwhile read) by the next poll that takes it. A poll at
another instance meanwhile reads the outbox beside it and takes the lease once it is released.
Bodies the client acknowledged are blanked in batches (TRIM_BATCH). A waiting (or kept) lease
costs no write of its own: each web instance renews its leases in one write every
LEASE_RENEW_S, so a thousand idle polls cost one update, and an instance that dies, or a
release that fails, stalls its participants for one lease at most; the next holder reconciles
last_seq with the outbox (lease_lapsed).

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
from messaging.delivery_hub import (
    AmqpMessage,
    BrokerUnavailable,
    DeliveryHub,
    HubConnection,
    QueueGone,
    Subscription,
)
from messaging.messages import Message
from messaging.overflow import OverflowCounter
from models import OutboxMessage, Participant, bound_to, clock, database_alias
from settings import Settings

log = logging.getLogger(__name__)

LEASE_S = 6.0
LEASE_RENEW_S = 2.0
LEASE_RETRY_S = 0.1
# After the first message, how long a poll lets the rest of a burst arrive before it answers.
BURST_LINGER_S = 0.001
# Once a candidate arrived, how long a poll may wait for the rest and its iceGatheringDone.
CANDIDATES_LINGER_S = 0.02
# A lease kept across polls longer than this is written back by the next poll that takes it.
CHECKPOINT_S = 5.0
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
            try:
                with bound_to(self.database):
                    now = clock.now()
                    Participant.renew_poll_leases(owners, now, now + LEASE_S)
            except Exception:
                # A lease that lapses meanwhile is safe: the unique seq index refuses a second mover.
                log.warning("renewing the poll leases of %s failed", self.instance, exc_info=True)


@dataclass(eq=False)
class _Lease:
    """A poll lease this process holds in MongoDB, and what its release must write there.

    Only the holder numbers messages, so while it holds the lease its last_seq is the truth;
    `recorded_seq` is what the database has. Kept between polls with its subscription (LeaseKeeper).
    """

    participant_id: str
    session_id: str
    owner: str
    last_seq: int
    recorded_seq: int
    acked_seq: int
    trimmed_seq: int
    dropped_count: int  # as the database said when the lease was taken or checkpointed
    dropped_reported: int
    synced_at: float  # monotonic: when the database last had this lease's figures
    subscription: Subscription | None = None
    connection: HubConnection | None = None
    kept_at: float = 0.0

    @classmethod
    def taken(cls, leased: Participant) -> _Lease:
        assert leased.poll_owner is not None  # acquire_poll_lease just set it
        return cls(
            participant_id=leased.id,
            session_id=leased.session_id,
            owner=leased.poll_owner,
            last_seq=leased.last_seq,
            recorded_seq=leased.last_seq,
            acked_seq=leased.acked_seq,
            trimmed_seq=leased.trimmed_seq,
            dropped_count=leased.dropped_count,
            dropped_reported=leased.dropped_reported,
            synced_at=time.monotonic(),
        )


class LeaseKeeper:
    """Leases (and their subscriptions) kept after a delivery for the participant's next poll here.

    With keep-alive a client's next poll usually reaches the same process: it takes the lease
    over without a database write or a broker round trip. A lease no poll took within
    `handover_s` (POLL_HANDOVER_S) is released by this keeper's thread, after the response went out.
    """

    def __init__(self, release: Callable[[_Lease], None], database: str, handover_s: float) -> None:
        self._release = release
        self.database = database
        self.handover_s = handover_s
        self._kept: dict[str, _Lease] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def keep(self, lease: _Lease) -> None:
        with self._changed:
            lease.kept_at = time.monotonic()
            was_empty = not self._kept
            self._kept.pop(lease.participant_id, None)  # so that the dict's order is the keeping order
            self._kept[lease.participant_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="poll-lease-keeper", daemon=True)
                self._thread.start()
            if was_empty:
                # Otherwise the thread already waits for an older lease, due before this one.
                self._changed.notify()

    def take(self, participant_id: str) -> _Lease | None:
        with self._changed:
            return self._kept.pop(participant_id, None)

    def resync_soon(self, participant_id: str) -> None:
        """The participant's record changed (drops counted): its next poll here writes back and reads it."""
        with self._changed:
            lease = self._kept.get(participant_id)
            if lease is not None:
                lease.synced_at = -CHECKPOINT_S

    def take_all(self) -> list[_Lease]:
        with self._changed:
            kept, self._kept = list(self._kept.values()), {}
            return kept

    def _run(self) -> None:
        # Sleeps until the oldest kept lease is due, or for good while none is kept. Releases the
        # due ones one at a time, each taken out of `_kept` only just before its release: a poll
        # that arrives while others are being released still takes its own lease over, instead
        # of finding it neither kept nor free and retrying until this thread gets to it.
        while True:
            with self._changed:
                oldest = next(iter(self._kept.values()), None)  # kept first, due first
                if oldest is None:
                    self._changed.wait()
                    continue
                wait = oldest.kept_at + self.handover_s - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                due = self._kept.pop(oldest.participant_id)
            with bound_to(self.database):
                try:
                    self._release(due)
                except Exception:  # it lapses within LEASE_S; the next taker reconciles
                    log.warning("releasing the kept poll lease of %s failed", due.participant_id, exc_info=True)


class Mailbox:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = DeliveryHub(settings.rabbitmq_url, settings.delivery_connections, settings.broker_heartbeat_s)
        self.draining = threading.Event()
        self._renewer_pid = 0
        self._renewer: LeaseRenewer | None = None
        self._keeper_pid = 0
        self._keeper: LeaseKeeper | None = None
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
    def keeper(self) -> LeaseKeeper:
        # Per process, like the renewer.
        if self._keeper is None or self._keeper_pid != os.getpid():
            self._keeper = LeaseKeeper(self._release, database_alias(self.settings), self.settings.poll_handover_s)
            self._keeper_pid = os.getpid()
        return self._keeper

    @property
    def overflow(self) -> OverflowCounter:
        # Per process, like the renewer.
        if self._overflow is None or self._overflow_pid != os.getpid():
            self._overflow = OverflowCounter(
                self.settings, self.hub, database_alias(self.settings), self.keeper.resync_soon
            )
            self._overflow_pid = os.getpid()
        return self._overflow

    def drain(self) -> None:
        """The process is shutting down: waiting polls answer now with what they have (an empty
        answer; the client polls again, at another instance), later ones do not wait, and no lease
        is kept for a next poll here. Without it a web process stopped only once its last long
        poll had run its whole `wait`."""
        self.draining.set()
        self.hub.wake_all()

    def close(self) -> None:
        """Releases the leases kept for next polls and closes the broker connections."""
        with bound_to(database_alias(self.settings)):
            for lease in self.keeper.take_all():
                try:
                    self._release(lease)
                except Exception:
                    log.warning("releasing the kept poll lease of %s failed", lease.participant_id, exc_info=True)
        self.hub.close()

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
            lease = self._take_kept(participant_id, session_id, after)
            if lease is not None:
                return self._deliver(lease, lease.acked_seq, deadline, limit, immediate=wait == 0)
            owner = uuid.uuid4().hex
            now = clock.now()  # poll leases are judged by every web process: the database's clock
            # The common case in one write: the participant is one of the session, its lease is
            # free, and `after` is not beyond what was handed out.
            leased = Participant.acquire_poll_lease(
                participant_id, owner, now, now + LEASE_S, self.renewer.instance, after, session_id
            )
            if leased is not None:
                after = leased.acked_seq  # what was acknowledged before is never served again
                lease = _Lease.taken(leased)
                if leased.lease_lapsed:
                    # Its holder died (or its release failed) maybe after storing entries beyond
                    # last_seq: serve them, and number after them, so that the broker's redelivered
                    # copies are dropped as the duplicates they now really are. One indexed read,
                    # only after a lease that was not released.
                    lease.last_seq = max(lease.last_seq, OutboxMessage.highest_seq(participant_id))
                self.renewer.hold(participant_id, owner)
                return self._deliver(lease, after, deadline, limit, immediate=wait == 0)
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

    def _take_kept(self, participant_id: str, session_id: str, after: int) -> _Lease | None:
        """The lease a previous poll of this participant kept in this process, if any (and still
        ours), with `after` recorded as the acknowledgement."""
        lease = self.keeper.take(participant_id)
        if lease is None:
            return None
        if lease.session_id != session_id:
            self.keeper.keep(lease)  # not this participant's session: the database path says so
            return None
        # An `after` beyond what was handed out acknowledges nothing; one below the acknowledgement
        # on record brings nothing back (as acquire_poll_lease and the clamp in _poll).
        lease.acked_seq = max(min(after, lease.last_seq), lease.acked_seq)
        if time.monotonic() - lease.synced_at < CHECKPOINT_S:
            return lease
        # Kept across polls for a while: record what it holds, and learn of drops counted
        # meanwhile, in the one write that also proves it ours.
        now = clock.now()
        try:
            trimmed = None
            if lease.acked_seq - lease.trimmed_seq >= TRIM_BATCH:
                trimmed = self._trim(participant_id, lease.acked_seq)  # a lease kept for long is released seldom
            current = Participant.checkpoint_poll_lease(
                participant_id,
                lease.owner,
                now,
                now + LEASE_S,
                lease.acked_seq,
                lease.last_seq,
                lease.dropped_reported,
                trimmed,
            )
        except Exception:
            self._drop(lease)  # the database is away: the lease lapses; its next holder reconciles
            raise
        if current is None:
            self._drop(lease)  # it lapsed and another poll took it
            return None
        lease.recorded_seq, lease.trimmed_seq, lease.synced_at = current.last_seq, current.trimmed_seq, time.monotonic()
        lease.dropped_count = current.dropped_count
        return lease

    def _deliver(self, lease: _Lease, after: int, deadline: float, limit: int, immediate: bool) -> Delivery:
        """Serves the poll holding `lease`; keeps the lease for the next poll, or releases it."""
        keep = False
        try:
            delivered: list[DeliveredMessage] = []
            if lease.last_seq > after:
                # Stored earlier and not acknowledged (a response lost in transit): again, with
                # whatever the queue holds right now, up to the limit.
                delivered = self._delivery(OutboxMessage.after(lease.participant_id, after, limit), after).messages
                if len(delivered) >= limit:
                    keep = True
                    return Delivery(delivered, delivered[-1]["seq"])
            if lease.dropped_count > lease.dropped_reported:
                # The queue dropped its oldest messages: say so before what it still holds.
                # The id makes a repeat of this notice (a lapsed lease) a duplicate.
                notice = messages.messages_dropped(lease.dropped_count - lease.dropped_reported)
                stored = self._store_notice(lease, f"dropped-{lease.participant_id}-{lease.dropped_count}", notice)
                if stored is None:
                    return Delivery(delivered, delivered[-1]["seq"] if delivered else after)
                delivered += stored
                lease.dropped_reported = lease.dropped_count
            moved = self._move_to_outbox(lease, deadline, limit, limit - len(delivered), immediate or bool(delivered))
            if moved is None:
                return Delivery(delivered, delivered[-1]["seq"] if delivered else after)
            delivered += moved
            keep = True
            return Delivery(delivered, delivered[-1]["seq"] if delivered else after)
        finally:
            if keep and self.settings.poll_handover_s > 0 and not self.draining.is_set():
                self.keeper.keep(lease)
            else:
                self._release(lease)

    def _release(self, lease: _Lease) -> None:
        """Ends the subscription (requeuing what it holds) and then frees the lease in the database."""
        try:
            # First: a poll elsewhere may move messages as soon as the lease is free, and must
            # find what this one received and did not store back in its place in the queue.
            self._unsubscribe(lease)
            trimmed = None
            if lease.acked_seq - lease.trimmed_seq >= TRIM_BATCH:
                trimmed = self._trim(lease.participant_id, lease.acked_seq)
            Participant.release_poll_lease(
                lease.participant_id,
                lease.owner,
                clock.now(),
                trimmed,
                lease.last_seq if lease.last_seq > lease.recorded_seq else None,
                lease.dropped_reported,
                lease.acked_seq,
            )
        finally:
            self.renewer.release(lease.participant_id, lease.owner)

    def _drop(self, lease: _Lease) -> None:
        """Gives up a lease without a write: what it held goes back to the queue, and nothing renews it."""
        self.renewer.release(lease.participant_id, lease.owner)
        self._unsubscribe(lease)

    @staticmethod
    def _unsubscribe(lease: _Lease) -> None:
        subscription, connection = lease.subscription, lease.connection
        lease.subscription = lease.connection = None
        if subscription is not None and connection is not None:
            connection.unsubscribe(subscription)  # requeues whatever was not stored

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
        self, lease: _Lease, deadline: float, prefetch: int, limit: int, immediate: bool
    ) -> list[DeliveredMessage] | None:
        """The messages moved from the queue into the outbox, as delivered to the client; None
        when the lease turned out lapsed (another poll numbered messages): it must not be kept."""
        subscription = lease.subscription
        if subscription is not None and (
            subscription.broken or subscription.cancelled or subscription.prefetch != prefetch
        ):
            # A kept subscription whose connection dropped, whose queue was deleted, or whose
            # prefetch is not this poll's (basic.qos does not change a running consumer's).
            self._unsubscribe(lease)
            subscription = None
        if subscription is None:
            queue = topology.participant_queue(self.settings, lease.session_id, lease.participant_id).name
            connection = self.hub.connection_for(lease.participant_id)
            try:
                subscription = connection.subscribe(queue, prefetch=prefetch, skip_if_empty=immediate)
            except QueueGone:
                # The broker deleted the queue (x-expires: the client stayed away longer than
                # PARTICIPANT_QUEUE_EXPIRES_S). A participant that left needs nothing more; a joined one
                # gets its queue and binding back, and a `resync`: what was published meanwhile is lost.
                if not Participant.is_joined(lease.session_id, lease.participant_id):  # a rare path: read afresh
                    return []
                session_id, participant_id, settings = lease.session_id, lease.participant_id, self.settings
                connection.declare(
                    lambda channel: topology.declare_participant(channel, settings, session_id, participant_id)
                )
                notice = messages.resync(messages.RESYNC_QUEUE_EXPIRED)
                return self._store_notice(lease, f"resync-{uuid.uuid4().hex}", notice)
            if subscription is None:
                return []  # nothing waiting, and the client did not ask to wait
            lease.subscription, lease.connection = subscription, connection
        elif immediate and not subscription.received:
            return []  # the kept consumer has nothing, and the client did not ask to wait
        if immediate:
            deadline = time.monotonic() + IMMEDIATE_GRACE_S
        if self.draining.is_set():
            deadline = time.monotonic()
        self._wait_for_first(subscription, deadline, self.draining)
        if subscription.received:
            # Let a burst already on its way join this delivery: one cycle instead of many.
            time.sleep(BURST_LINGER_S)
            _linger_for_candidates(subscription, limit)
        received = subscription.take(limit)
        if not received:
            return []
        delivered = self._store(lease, received)
        if delivered is None:
            return None  # the lease lapsed and another poll moved messages: these are requeued
        if self.settings.test_pause_after_outbox_store:
            _pause_for_test(self.settings.test_pause_after_outbox_store)
        assert lease.connection is not None
        lease.connection.ack(subscription, received[-1].delivery_tag)
        return delivered

    @staticmethod
    def _wait_for_first(subscription: Subscription, deadline: float, draining: threading.Event) -> None:
        while not subscription.received and not draining.is_set():
            if subscription.broken:
                raise BrokerUnavailable("the broker connection dropped")
            if subscription.cancelled:
                return  # the queue was deleted: nothing more will come
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            subscription.arrived.wait(remaining)

    @staticmethod
    def _store(lease: _Lease, received: list[AmqpMessage]) -> list[DeliveredMessage] | None:
        """Numbers and stores the messages after the lease's last_seq; None if a seq was taken.

        No reservation write: the lease holder alone numbers messages, and the unique index on
        (participant, seq) refuses a second mover whose lease lapsed under it. One insert for
        the whole delivery.
        """
        entries = []
        for message in received:
            message_id = message.properties.get("message_id") or f"tag-{uuid.uuid4().hex}"
            entries.append((message_id, _text(message)))
        return Mailbox._store_entries(lease, entries)

    @staticmethod
    def _store_notice(lease: _Lease, message_id: str, notice: Message) -> list[DeliveredMessage] | None:
        """Stores a message of the service's own (a gap in delivery) as the next seq."""
        return Mailbox._store_entries(lease, [(message_id, json.dumps(notice, separators=(",", ":")))])

    @staticmethod
    def _store_entries(lease: _Lease, entries: list[tuple[str, str]]) -> list[DeliveredMessage] | None:
        batch = OutboxMessage.store_many(lease.participant_id, lease.last_seq, entries)
        if batch.stored:
            lease.last_seq = batch.stored[-1][0]
        if batch.seq_taken:
            # Another mover numbered past our lease's last_seq: catch up, let the client poll again.
            # What this poll stored before meeting it is in the outbox and served by the next poll.
            Participant.catch_up_seq(lease.participant_id, OutboxMessage.highest_seq(lease.participant_id))
            return None
        # A redelivered message (DUPLICATE) was stored before, with its first seq, and is not repeated.
        return [{"seq": seq, **json.loads(body)} for seq, body in batch.stored]


def _text(message: AmqpMessage) -> str:
    body = message.body
    return body.decode() if isinstance(body, bytes) else str(body)


def _linger_for_candidates(subscription: Subscription, limit: int) -> None:
    """Waits (at most CANDIDATES_LINGER_S) for the rest of a stream's candidates once one arrived.

    KMS trickles a stream's candidates and then iceGatheringDone within milliseconds of each
    other: one poll carries them all instead of one poll each. An sdpAnswer is not held back.
    """
    until = time.monotonic() + CANDIDATES_LINGER_S
    while len(subscription.received) < limit and _still_gathering(subscription.received):
        seen = len(subscription.received)
        subscription.arrived.clear()
        if len(subscription.received) > seen:
            continue
        remaining = until - time.monotonic()
        if remaining <= 0 or subscription.broken or subscription.cancelled:
            return
        subscription.arrived.wait(remaining)


def _still_gathering(received: list[AmqpMessage]) -> bool:
    """Whether a stream has a candidate among `received` and no iceGatheringDone after it."""
    gathering: set[object] = set()
    for message in received:
        text = _text(message)
        if '"iceCandidate"' not in text and '"iceGatheringDone"' not in text:
            continue
        parsed = json.loads(text)
        if parsed.get("type") == "iceCandidate":
            gathering.add(parsed.get("stream"))
        elif parsed.get("type") == "iceGatheringDone":
            gathering.discard(parsed.get("stream"))
    return bool(gathering)


def _pause_for_test(marker: str) -> None:
    """Test hook (TEST_PAUSE_AFTER_OUTBOX_STORE): stored, not acked, lease held; wait to be killed."""
    with open(marker, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
