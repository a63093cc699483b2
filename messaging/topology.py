"""RabbitMQ names and declarations for delivery to participants.

Each session has a durable fanout exchange; each participant a durable classic queue bound
to it. The queue has `x-expires` so abandoned participants clean up by themselves and
`x-max-length` as a guard against a client that never polls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kombu import Exchange, Queue

from settings import Settings

if TYPE_CHECKING:
    # What kombu's annotations call a channel (Connection.default_channel), whatever the transport.
    from kombu.transport.virtual import Channel


def session_exchange(settings: Settings, session_id: str) -> Exchange:
    return Exchange(f"{settings.name_prefix}.session.{session_id}", type="fanout", durable=True)


def participant_queue(settings: Settings, session_id: str, participant_id: str) -> Queue:
    return Queue(
        f"{settings.name_prefix}.participant.{participant_id}",
        exchange=session_exchange(settings, session_id),
        durable=True,
        queue_arguments={
            "x-queue-type": "classic",
            "x-expires": settings.participant_queue_expires_s * 1000,
            "x-max-length": settings.participant_queue_max_length,
        },
    )


def declare_session(channel: Channel, settings: Settings, session_id: str) -> None:
    session_exchange(settings, session_id)(channel).declare()


def declare_participant(channel: Channel, settings: Settings, session_id: str, participant_id: str) -> None:
    """Declares the session exchange and the participant queue, and binds them (idempotent)."""
    queue = participant_queue(settings, session_id, participant_id)(channel)
    queue.exchange.declare()
    queue.declare()


def unbind_participant(channel: Channel, settings: Settings, session_id: str, participant_id: str) -> None:
    queue = participant_queue(settings, session_id, participant_id)(channel)
    queue.unbind_from(exchange=session_exchange(settings, session_id))


def delete_session_exchange(channel: Channel, settings: Settings, session_id: str) -> None:
    session_exchange(settings, session_id)(channel).delete()
