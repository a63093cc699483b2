"""RabbitMQ names and declarations for delivery to participants.

Each session has a durable fanout exchange; each participant a durable classic queue bound
to it. The queue has `x-expires` so abandoned participants clean up by themselves and
`x-max-length`/`x-max-length-bytes` as a guard against a client that never polls.

Past a guard the queue drops its oldest messages (`drop-head`: publishers are never refused,
so one stalled participant cannot fail the tasks of a whole session) and dead-letters them to
the deployment's overflow exchange, with the participant id as routing key; web processes
count them per participant (messaging.overflow) and the client gets `messagesDropped`.

Broadcasts are published to one durable topic exchange per deployment, `<prefix>.broadcast`,
with the session id as routing key; each session's fanout exchange is bound to it under its id
(declared with the session exchange). That exchange is never deleted, so a broadcast for a
closed session (whose exchange is gone) routes nowhere, where publishing to the deleted
exchange itself would make the broker close the publisher's channel and drop what other tasks
published after it.

A closed session's exchange is never declared again: the session exchange is declared when the
session is created; a join binds its queue to it without declaring it, then checks the session
is still open (signaling_web.admission.join).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kombu import Exchange, Queue

from settings import Settings

if TYPE_CHECKING:
    # What kombu's annotations call a channel (Connection.default_channel), whatever the transport.
    from kombu.transport.virtual import Channel


def broadcast_exchange(settings: Settings) -> Exchange:
    return Exchange(f"{settings.name_prefix}.broadcast", type="topic", durable=True)


def session_exchange(settings: Settings, session_id: str) -> Exchange:
    return Exchange(f"{settings.name_prefix}.session.{session_id}", type="fanout", durable=True)


def overflow_queue(settings: Settings) -> Queue:
    """Where participant queues dead-letter what they drop; one per deployment."""
    name = f"{settings.name_prefix}.participant-overflow"
    return Queue(name, exchange=Exchange(name, type="fanout", durable=True), durable=True)


def participant_queue(settings: Settings, session_id: str, participant_id: str) -> Queue:
    return Queue(
        f"{settings.name_prefix}.participant.{participant_id}",
        exchange=session_exchange(settings, session_id),
        durable=True,
        queue_arguments={
            "x-queue-type": "classic",
            "x-expires": settings.participant_queue_expires_s * 1000,
            "x-max-length": settings.participant_queue_max_length,
            "x-max-length-bytes": settings.participant_queue_max_bytes,
            "x-overflow": "drop-head",
            "x-dead-letter-exchange": overflow_queue(settings).exchange.name,
            "x-dead-letter-routing-key": participant_id,
        },
    )


def declare_session(channel: Channel, settings: Settings, session_id: str) -> None:
    """Declares the session exchange and binds it to the broadcast exchange (idempotent)."""
    broadcast = broadcast_exchange(settings)(channel)
    broadcast.declare()
    exchange = session_exchange(settings, session_id)(channel)
    exchange.declare()
    exchange.bind_to(broadcast, routing_key=session_id)


def declare_participant(channel: Channel, settings: Settings, session_id: str, participant_id: str) -> None:
    """Declares the participant queue and binds it to the session exchange (idempotent); also
    the overflow exchange its drops go to, so that none is lost uncounted.

    The session exchange is not declared here: if it is gone (the session closed), the bind
    fails with NotFound and the channel closes, rather than bringing the exchange back."""
    declare_overflow(channel, settings)
    queue = participant_queue(settings, session_id, participant_id)(channel)
    queue.queue_declare()
    queue.queue_bind()


def delete_participant_queue(channel: Channel, settings: Settings, session_id: str, participant_id: str) -> None:
    participant_queue(settings, session_id, participant_id)(channel).delete()


def declare_overflow(channel: Channel, settings: Settings) -> None:
    overflow_queue(settings)(channel).declare()


def unbind_participant(channel: Channel, settings: Settings, session_id: str, participant_id: str) -> None:
    queue = participant_queue(settings, session_id, participant_id)(channel)
    queue.unbind_from(exchange=session_exchange(settings, session_id))


def delete_session_exchange(channel: Channel, settings: Settings, session_id: str) -> None:
    session_exchange(settings, session_id)(channel).delete()
