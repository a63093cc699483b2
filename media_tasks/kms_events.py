"""Relaying Kurento endpoint events to the participant that owns the endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable

import kurento
from media_tasks import connection_watch
from media_tasks.dispatch import task_queue
from messaging import messages
from messaging.publisher import get_publisher
from settings import Settings

log = logging.getLogger(__name__)


def candidate_for_browser(candidate: dict) -> dict:
    """Kurento's IceCandidate complex type, as RTCPeerConnection.addIceCandidate takes it."""
    return {
        "candidate": candidate.get("candidate", ""),
        "sdpMid": candidate.get("sdpMid"),
        "sdpMLineIndex": candidate.get("sdpMLineIndex"),
    }


def schedule_connection_check(
    settings: Settings, session_id: str, participant_id: str, stream: str
) -> Callable[[float], None]:
    """Enqueues the stream's connection check (connection_watch.check_connection) `delay` seconds from now."""

    def schedule(delay: float) -> None:
        task_queue(settings).check_connection(session_id, participant_id, stream, delay_s=delay)

    return schedule


def event_handlers(
    settings: Settings,
    session_id: str,
    participant_id: str,
    stream: str,
    endpoint: kurento.MediaObject | str,
    fresh: bool = True,
) -> dict[str, Callable[[dict], None]]:
    """The callbacks for one endpoint, by Kurento event type.

    Candidates and the end of gathering are one publish each to the participant's queue and touch
    no database; state events write only to start or stop the connection watch's clock
    (connection_watch.Watch). `fresh`: an endpoint just created, stored healthy; a relay taken
    over from a dead worker does not know whether that worker saw it fail.
    """
    watch = connection_watch.Watch(_reference(endpoint), maybe_failing=not fresh)
    return _handlers(settings, session_id, participant_id, stream, watch)


def _handlers(
    settings: Settings, session_id: str, participant_id: str, stream: str, watch: connection_watch.Watch
) -> dict[str, Callable[[dict], None]]:
    publisher = get_publisher(settings)
    schedule = schedule_connection_check(settings, session_id, participant_id, stream)

    def on_candidate(data: dict) -> None:
        publisher.to_participant(
            session_id, participant_id, messages.ice_candidate(stream, candidate_for_browser(data.get("candidate", {})))
        )

    def on_gathering_done(_data: dict) -> None:
        publisher.to_participant(session_id, participant_id, messages.ice_gathering_done(stream))

    def on_state(event_type: str) -> Callable[[dict], None]:
        return lambda data: connection_watch.on_state_event(
            settings, session_id, participant_id, stream, event_type, data, schedule, watch
        )

    handlers = {"IceCandidateFound": on_candidate, "IceGatheringDone": on_gathering_done}
    handlers.update({event: on_state(event) for event in connection_watch.watched_events(stream)})
    return handlers


def _reference(endpoint: kurento.MediaObject | str) -> str:
    return endpoint if isinstance(endpoint, str) else f"{endpoint.client.url}#{endpoint.id}"


# Names no stored endpoint: the connection watch's conditional writes match nothing until the
# endpoint is named, as they would with its real name before the claim stores it.
UNNAMED = "(being created)"


class EndpointRelay:
    """The events of an endpoint a transaction creates, relayed from its first event on."""

    def __init__(self, watch: connection_watch.Watch) -> None:
        self._watch = watch

    def created(self, endpoint: kurento.MediaObject) -> None:
        """After the commit: the connection watch's writes now concern this endpoint."""
        self._watch.endpoint = _reference(endpoint)


def relay_endpoint_events(
    settings: Settings,
    transaction: kurento.Transaction,
    endpoint: kurento.NewRef,
    session_id: str,
    participant_id: str,
    stream: str,
) -> EndpointRelay:
    """Adds the subscriptions to the transaction that creates `endpoint`, so that every event type
    is subscribed before gatherCandidates is called (no candidate event missed) at no round trip
    of its own; call `created` on the result once the transaction is committed."""
    watch = connection_watch.Watch(UNNAMED)
    for event_type, handler in _handlers(settings, session_id, participant_id, stream, watch).items():
        transaction.subscribe(endpoint, event_type, handler)
    return EndpointRelay(watch)


def listen_endpoint_events(
    settings: Settings,
    client: kurento.KurentoClient,
    endpoint_id: str,
    session_id: str,
    participant_id: str,
    stream: str,
) -> None:
    """After taking a KMS session over: the subscriptions exist server-side, only routing is needed."""
    handlers = event_handlers(settings, session_id, participant_id, stream, f"{client.url}#{endpoint_id}", fresh=False)
    for event_type, handler in handlers.items():
        client.add_listener(endpoint_id, event_type, handler)
