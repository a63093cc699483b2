"""SDP offers and ICE candidates: the per-endpoint work of a group call.

Every function here may run on any worker, twice, or before the request the client sent
earlier; correctness comes from the conditional updates in models.endpoint.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import kurento
from kurento import jsonrpc
from media_tasks import kms_load, kms_sessions, publications, recordings
from media_tasks.kms_events import relay_endpoint_events
from media_tasks.kms_pool import ensure_pipeline, pipeline_of, release_quietly, same_server
from media_tasks.publications import connect_params, forwarded_media_types
from messaging import messages, rerun_identity
from messaging.publisher import get_publisher
from models import Endpoint, KurentoRef, Participant, Session, streams
from models.endpoint import FeedState, NegotiationState
from models.streams import MAIN, StreamRef
from settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """One SDP offer being negotiated: who sent it, for which stream, under which request.

    `seed` is what the running task's message ids derive from (messaging.rerun_identity): the same
    on every re-run of that task, so its copies of the answer are dropped by the outbox.
    """

    settings: Settings
    session_id: str
    participant_id: str
    stream: str
    sdp: str
    request_id: str
    seed: str = ""

    @property
    def ice_ufrags(self) -> frozenset[str]:
        return ice_ufrags_of(self.sdp)

    @cached_property
    def ref(self) -> StreamRef:
        return streams.parse(self.participant_id, self.stream)

    @cached_property
    def kinds(self) -> str:
        """What a publish offer sends, as stored with its record ("audio video", "audio", ...)."""
        audio, video = streams.sent_kinds(self.sdp)
        return " ".join(kind for kind, sent in (("audio", audio), ("video", video)) if sent)


class NegotiationRefused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def process_offer(
    settings: Settings, session_id: str, participant_id: str, stream: str, sdp: str, request_id: str
) -> None:
    """Answers an offer. The usual cost: one read of the endpoint records, one write claiming the
    new endpoint with its answer, one operation on the participant(s), and two KMS transactions
    (create, subscribe, connect and processOffer; then the candidates that waited, gatherCandidates
    and the release of the endpoint it replaces). A first publish also reads the session's pipeline.

    No check that the participant is still joined before the work: the web tier checked it when
    it accepted the offer, and the check after the claim releases the endpoint of one who left
    meanwhile (the leave's clean-up releases it otherwise: it runs after the participant is
    marked left, so it finds our record whenever the check found the participant joined).
    """
    scope = rerun_identity.current_task_scope()
    offer = Offer(settings, session_id, participant_id, stream, sdp, request_id, scope.seed if scope else "")
    try:
        _answer_offer(offer)
    except NegotiationRefused as refused:
        get_publisher(settings).to_participant(
            session_id, participant_id, messages.error(request_id, refused.code, refused.message)
        )


def _answer_offer(offer: Offer) -> None:
    own, source = Endpoint.negotiation_states(offer.participant_id, offer.stream)
    if not offer.ref.publishing and (source is None or source.kurento is None):
        raise _not_publishing(offer.ref)
    source_endpoint = _proxy(source.kurento) if source is not None and source.kurento else None
    source_types: list[str | None] = [None]
    if source is not None:
        source_types = forwarded_media_types(source.muted_audio, source.muted_video)
    for _attempt in range(3):
        if (
            own is not None
            and own.answered_request_id == offer.request_id
            and own.answer_published
            and not own.answer_sdp
        ):
            raise NegotiationRefused(*PROCESS_OFFER_CUT_OFF)  # the same error again, never processOffer
        if own is not None and own.negotiating_request_id == offer.request_id and own.kurento is not None:
            _finish_duplicate(offer, own)
            return
        replacing = own.kurento if own is not None else None
        endpoint, answer = _negotiate(
            offer, replacing or (source.kurento if source else None), source_endpoint, own, source_types
        )
        previous: dict[str, Any] = {}
        # One write: the endpoint, its answer and the candidates that waited for it. Losing means
        # another offer (or the leave's clean-up) changed the record since our read.
        pending = Endpoint.claim_kurento(
            offer.participant_id,
            offer.stream,
            endpoint,
            offer.request_id,
            replacing,
            answer=answer,
            seed=offer.seed,
            session_id=offer.session_id if own is None else None,
            ice_ufrags=offer.ice_ufrags,
            kinds=offer.kinds if offer.ref.publishing else None,
            previous=previous,
        )
        if pending is None:
            release_quietly(endpoint)
            own = Endpoint.negotiation_states(offer.participant_id, offer.stream)[0]
            continue
        _deliver(
            offer,
            endpoint,
            answer,
            pending,
            replacing,
            probably_publishing=own is not None and bool(own.answered_request_id),
            previous=previous,
            fed_by=FeedState(source.kurento, source.muted_audio, source.muted_video)
            if source is not None and source.kurento
            else None,
        )
        return
    raise NegotiationRefused(409, "the stream could not be renegotiated")


_SETTERS = {
    "max_video_send_bandwidth": ("setMaxVideoSendBandwidth", "maxVideoSendBandwidth", False),
    "min_video_send_bandwidth": ("setMinVideoSendBandwidth", "minVideoSendBandwidth", False),
    "max_video_recv_bandwidth": ("setMaxVideoRecvBandwidth", "maxVideoRecvBandwidth", True),
}


@functools.lru_cache(maxsize=4096)
def _session_bandwidth(session_id: str) -> tuple[tuple[str, int], ...]:
    """A session's bandwidth defaults: they never change after creation, so one read per worker process
    and session (the first offer of the session this process handles), none after."""
    return tuple(sorted(Session.bandwidth_of(session_id).items()))


@functools.lru_cache(maxsize=4096)
def _participant_bandwidth(participant_id: str) -> tuple[tuple[str, int], ...]:
    """A participant's own limits (its minted token's): fixed at join, so one read per worker process and
    participant (its first offer this process handles), none after."""
    return tuple(sorted(Participant.bandwidth_of(participant_id).items()))


def _bandwidth_setters(offer: Offer) -> list[tuple[str, dict[str, int]]]:
    """The property setters for a new endpoint (issue 15): the send limits on a subscription, the receive
    limit on a publication, each the offering participant's own (its token's) or else the session's; part
    of the creating transaction, so no round trip of their own."""
    limits = dict(_session_bandwidth(offer.session_id))
    limits.update(_participant_bandwidth(offer.participant_id))
    setters = []
    for field, kbps in sorted(limits.items()):
        operation, prop, on_publish = _SETTERS[field]
        if on_publish == offer.ref.publishing:
            setters.append((operation, {prop: kbps}))
    return setters


def _not_publishing(ref: StreamRef) -> NegotiationRefused:
    if ref.name == MAIN:
        return NegotiationRefused(409, f"participant {ref.publisher_id} is not publishing")
    return NegotiationRefused(409, f"participant {ref.publisher_id} is not publishing {ref.name!r}")


def _proxy(stored: str) -> kurento.WebRtcEndpoint:
    return KurentoRef.decode(stored).proxy()  # type: ignore[return-value]


def _negotiate(
    offer: Offer,
    known_element: str | None,
    source: kurento.WebRtcEndpoint | None,
    own: NegotiationState | None,
    source_types: list[str | None],
) -> tuple[kurento.WebRtcEndpoint, str]:
    """A fresh endpoint with its events relayed, fed by `source` (a subscription), and its answer:
    one KMS transaction (create, subscribe, connect, processOffer), one round trip.

    The pipeline comes from an element stored in it (the endpoint a re-offer replaces, or the
    publisher's), else from the session (a first publish).
    """
    pipeline = pipeline_of(known_element) if known_element else None
    if pipeline is None:
        pipeline = ensure_pipeline(offer.settings, offer.session_id)
    kms_load.enter(offer.settings, pipeline.client.url)  # nothing done on it yet: may be deferred
    try:
        return _negotiate_on(offer, pipeline, source, own, source_types)
    except kurento.ObjectNotFound as exc:
        if known_element is None or exc.failed_index != 0:
            raise
        # That pipeline is gone (the session closed, or its media server was replaced): the
        # session says what holds now, or that it is over (SessionGone).
        pipeline = ensure_pipeline(offer.settings, offer.session_id)
        kms_load.enter(offer.settings, pipeline.client.url)
        return _negotiate_on(offer, pipeline, source, own, source_types)


def _direction(stream: str) -> dict[str, bool]:
    """Media goes one way per endpoint, and the media server enforces it (WebRtcEndpoint's
    `recvonly`/`sendonly`, so its answer says so whatever the offer asked): a publication only
    receives from its publisher, a subscription only sends to its subscriber. Whatever a client
    offers, nothing it sends on a subscription reaches the pipeline; a `subscriber` has no
    publication at all (the web tier refuses its offers on "publish[:<name>]")."""
    return {"recvonly": True} if streams.is_publish(stream) else {"sendonly": True}


PROCESS_OFFER_CUT_OFF = (
    502,
    "the media server connection was lost while it processed the offer; not retried (the offer may be what "
    "broke it): offer again",
)


def _negotiate_on(
    offer: Offer,
    pipeline: kurento.MediaPipeline,
    source: kurento.WebRtcEndpoint | None,
    own: NegotiationState | None,
    source_types: list[str | None],
) -> tuple[kurento.WebRtcEndpoint, str]:
    tx = pipeline.client.transaction()
    created = tx.create("WebRtcEndpoint", media_pipeline=pipeline, **_direction(offer.stream))
    relay = relay_endpoint_events(offer.settings, tx, created, offer.session_id, offer.participant_id, offer.stream)
    for operation, value in _bandwidth_setters(offer):
        tx.invoke(created, operation, **value)
    if source is not None:
        for media_type in source_types:  # a muted kind of the publication is not connected
            tx.invoke(source, "connect", **connect_params(created, media_type))
    answer = tx.invoke(created, "processOffer", offer=offer.sdp)
    try:
        tx.commit()
    except kurento.RequestNotSent:
        raise  # nothing ran: retried like any unavailability
    except kurento.KurentoUnavailable as exc:
        # KMS had the transaction, processOffer in it, when the connection died or it stopped
        # answering. Not retried like other unavailability: the same SDP may crash the server
        # again, and every media server would then be tried in turn. The client decides. Recorded
        # so that a redelivery repeats the error; the endpoint, if created, is left to the orphan sweep.
        kms_sessions.register_own(pipeline.client)
        Endpoint.record_failed_offer(
            offer.participant_id,
            offer.stream,
            offer.request_id,
            own.kurento if own is not None else None,
            session_id=offer.session_id if own is None else None,
        )
        raise NegotiationRefused(*PROCESS_OFFER_CUT_OFF) from exc
    except kurento.KurentoError as exc:
        if exc.failed_index:  # the endpoint was created: nothing is rolled back
            release_quietly(kurento.WebRtcEndpoint(pipeline.client, exc.completed[created.index]))
        if exc.failed_index == answer.index and exc.code in (40200, 40201, 40205, 40001):
            raise NegotiationRefused(400, f"the media server refused the offer: {exc.message}") from exc
        raise
    endpoint = tx.resolve(created, kurento.WebRtcEndpoint)
    relay.created(endpoint)
    kms_sessions.register_own(endpoint.client)
    return endpoint, str(tx.value(answer))


def _deliver(
    offer: Offer,
    endpoint: kurento.WebRtcEndpoint,
    answer: str,
    pending: list[dict[str, Any]],
    replaced: str | None,
    probably_publishing: bool,
    previous: dict[str, Any] | None = None,
    fed_by: FeedState | None = None,
) -> None:
    """After the claim: the participant check, the answer, then gathering (and the release of the
    endpoint this one replaced, which Kurento cannot negotiate twice).

    A publication is announced (streamPublished) when it starts and when the kinds it sends change;
    a re-offer that sends the same keeps its subscribers without telling them anything: they are
    reconnected to the new endpoint (_start_gathering). `previous` is what the claim replaced (None:
    unknown, a re-run or a new record); `fed_by`, what a subscription endpoint was connected to."""
    publisher = get_publisher(offer.settings)
    ref = offer.ref
    announce = False
    rewiring = None
    if ref.publishing:
        if ref.name == MAIN:
            marked = Participant.mark_publishing(offer.participant_id, probably_publishing)
            wanted, first = marked is not None, bool(marked)
        else:
            wanted, first = offer.participant_id in Participant.joined_among([offer.participant_id]), False
        refusal = None
        kinds_changed = previous is not None and previous.get("kinds") != offer.kinds
        announce = wanted and (first or kinds_changed)
    else:
        joined = Participant.joined_among([offer.participant_id, ref.publisher_id])
        wanted = offer.participant_id in joined
        refusal = None if ref.publisher_id in joined else _not_publishing(ref)
        if wanted and refusal is None:
            # Marks the publication watched (a re-offer of it then reconnects its subscribers) and reads
            # what feeds it now: a re-offer or a mute that missed this endpoint is caught up here.
            feed = Endpoint.watch_publication(ref.publisher_id, ref.name)
            if feed is None:
                refusal = _not_publishing(ref)  # unpublished while we negotiated
            elif fed_by is not None:
                rewiring = _follow_feed(endpoint, fed_by, feed)
    if not wanted or refusal is not None:
        # The participant (or the publisher) left while we negotiated, or before (a late
        # redelivery): leave no orphan endpoint behind, on the KMS or in the record.
        _release_all(endpoint, replaced)
        Endpoint.forget(offer.participant_id, offer.stream, endpoint)
        if wanted and refusal is not None:
            raise refusal
        return
    # The answer first: it is what the client waits for.
    publisher.to_participant(
        offer.session_id, offer.participant_id, messages.sdp_answer(offer.stream, answer, offer.request_id)
    )
    if announce:
        audio, video = streams.sent_kinds(offer.sdp)
        publisher.to_session(offer.session_id, messages.stream_published(offer.participant_id, ref.name, audio, video))
    if ref.publishing:
        # Reads skipped on a re-offer of a publication nobody ever recorded or watched (the claim's flags).
        if replaced is None or previous is None or previous.get("recorded", True):
            recordings.follow_stream(offer.settings, offer.session_id, offer.participant_id, offer.stream, endpoint)
        if replaced is not None and (previous is None or previous.get("watched", True)):
            rewiring = _subscribers_to_reconnect(offer, endpoint)
    _start_gathering(offer, endpoint, pending, replaced, rewiring)
    if rewiring is not None and rewiring.muted is not None:
        _catch_up_mute(offer, rewiring.muted)


@dataclass(frozen=True)
class Rewiring:
    """Connections the gathering transaction changes besides the new endpoint's own: a re-offered
    publication's new endpoint feeding its subscribers, or a new subscription endpoint following a
    re-offer or mute of its publication that it missed. Each operation is (object, operation, params);
    `keyframe_from` is asked for a keyframe after them; `muted` is the publication's mute state applied
    (a publication's rewiring: checked again after the transaction)."""

    operations: list[tuple[kurento.MediaObject, str, dict[str, Any]]]
    keyframe_from: kurento.MediaObject | None
    muted: tuple[bool, bool] | None = None


def _subscribers_to_reconnect(offer: Offer, endpoint: kurento.WebRtcEndpoint) -> Rewiring | None:
    """A re-offer of a watched publication: its subscribers' endpoints, read after the claim (a subscription
    claimed from now on finds the new endpoint itself) with the publication's mute state; one read."""
    publication = Endpoint.publication(offer.session_id, offer.participant_id, offer.ref.name)
    if publication is None or not publication.subscribers:
        return None
    media_types = forwarded_media_types(publication.muted_audio, publication.muted_video)
    operations: list[tuple[kurento.MediaObject, str, dict[str, Any]]] = [
        (endpoint, "connect", connect_params(sink, media_type))
        for sink in (_proxy(ref) for ref in publication.subscribers.values())
        if same_server(sink, endpoint)  # same media server only: the others went with theirs
        for media_type in media_types
    ]
    return Rewiring(operations, endpoint, (publication.muted_audio, publication.muted_video))


def _follow_feed(endpoint: kurento.WebRtcEndpoint, fed_by: FeedState, feed: FeedState) -> Rewiring | None:
    """What a new subscription endpoint needs once claimed, when its publication changed since it was
    connected: the new publish endpoint of a re-offer (whose reconnection read the subscribers before this
    claim), or the kinds a mute changed (applied before this claim)."""
    source = _proxy(feed.kurento)
    if not same_server(source, endpoint):
        return None  # moved to another media server: this endpoint goes with its pipeline
    if feed.kurento != fed_by.kurento:
        media_types = forwarded_media_types(feed.muted_audio, feed.muted_video)
        return Rewiring([(source, "connect", connect_params(endpoint, kind)) for kind in media_types], source)
    operations: list[tuple[kurento.MediaObject, str, dict[str, Any]]] = [
        (source, "disconnect" if muted else "connect", connect_params(endpoint, kind))
        for kind, was, muted in (
            ("AUDIO", fed_by.muted_audio, feed.muted_audio),
            ("VIDEO", fed_by.muted_video, feed.muted_video),
        )
        if was != muted
    ]
    return Rewiring(operations, None) if operations else None


def _catch_up_mute(offer: Offer, applied: tuple[bool, bool]) -> None:
    """A mute stored after the reconnection read its state may have been applied to the new endpoint
    before the reconnection's transaction ran, which then undid it: apply the stored state again (one
    read; a KMS round trip only when it changed)."""
    if Endpoint.mute_state(offer.participant_id, offer.ref.name) not in (None, applied):
        publications.apply_mute(offer.settings, offer.session_id, offer.participant_id, offer.ref.name, announce=False)


def _rewire(tx: kurento.Transaction, rewiring: Rewiring | None) -> list[tuple[Any, Callable[[], object]]]:
    """Adds a rewiring's operations to the gathering transaction, then KMS's BaseRtpEndpoint.requestKeyframe
    (PLI/FIR to the publisher once its media flows) so subscribers get a picture at once. Returns each
    operation added with a way to do it alone, should an earlier one fail (a subscriber that left meanwhile).
    Recorders follow their publication apart (recordings.follow_stream, before this)."""
    added: list[tuple[Any, Callable[[], object]]] = []
    if rewiring is None or not rewiring.operations:
        return added
    for target, operation, params in rewiring.operations:
        added.append((tx.invoke(target, operation, **params), functools.partial(target.invoke, operation, **params)))
    if rewiring.keyframe_from is not None:
        source = rewiring.keyframe_from
        added.append((tx.invoke(source, "requestKeyframe"), functools.partial(source.invoke, "requestKeyframe")))
    return added


def _start_gathering(
    offer: Offer,
    endpoint: kurento.WebRtcEndpoint,
    pending: list[dict[str, Any]],
    replaced: str | None,
    rewiring: Rewiring | None = None,
) -> None:
    """One transaction: the candidates that waited, gatherCandidates, the connections a rewiring
    changes (_rewire), the release of the replaced endpoint. KMS runs a transaction's operations in
    order (a pipelined batch it may not), and remote candidates must come first: KMS 6 stalled when
    they came after gathering (Kurento/bugtracker#539). The release goes last, so its failure skips nothing."""
    ours = offer.ice_ufrags
    stale = [c for c in pending if not _of_generation(c, ours)]
    if stale:  # kept for a re-offer that lost to this one, or late ones of an older generation
        log.info(
            "%d candidates of another ICE generation dropped for %s/%s", len(stale), offer.participant_id, offer.stream
        )
    tx = endpoint.client.transaction()
    for candidate, sdp_mid, index in _wire_candidates([c for c in pending if _of_generation(c, ours)]):
        tx.invoke(endpoint, "addIceCandidate", candidate=jsonrpc.ice_candidate(candidate, sdp_mid, index))
    gathering = tx.invoke(endpoint, "gatherCandidates")
    added = _rewire(tx, rewiring)
    old = _proxy(replaced) if replaced else None
    released = tx.release(old) if old is not None and same_server(old, endpoint) else None
    try:
        tx.commit()
    except kurento.KurentoUnavailable:
        raise  # the orphan sweep releases what the media server kept
    except kurento.KurentoError as exc:
        if exc.failed_index is None or exc.failed_index <= gathering.index:
            release_quietly(old)  # skipped with the rest
            raise
        if released is None or exc.failed_index < released.index:
            # A rewired endpoint was gone (a subscriber left, a publish endpoint was replaced): the rest one
            # by one, then the release.
            log.info("rewiring for %s/%s failed: %s", offer.participant_id, offer.stream, exc)
            for ref, alone in added:
                if ref.index > exc.failed_index:
                    _quietly(alone)
            if released is not None:
                release_quietly(old)
                old = None
        else:
            log.info("release of %s failed: %s", replaced, exc)
    if old is not None and same_server(old, endpoint):
        old.client.forget_object(old.id)
        old = None
    release_quietly(old)  # on another media server: its own round trip


def _quietly(operation: Callable[[], object]) -> None:
    try:
        operation()
    except kurento.KurentoError as exc:
        log.info("skipped: %s", exc)


def _release_all(endpoint: kurento.WebRtcEndpoint, replaced: str | None) -> None:
    release_quietly(endpoint)
    if replaced:
        release_quietly(_proxy(replaced))


DUPLICATE_WAIT_S = 3.0


def _finish_duplicate(offer: Offer, own: NegotiationState) -> None:
    """This request claimed the stored endpoint already.

    The claim stores the answer: a re-run of the task that claimed it (a redelivery or a retry,
    same seed) finishes what it may have left undone, sending the answer again under the same
    message id (dropped by the outbox if it went out) and starting gathering again; another task
    for the same request sends nothing, the claimer answers. A claim without an answer was made
    by an earlier release, which called processOffer after claiming: see _finish_legacy_claim.
    """
    assert own.kurento is not None
    endpoint = _proxy(own.kurento)
    if own.answer_sdp is not None and own.answered_request_id == offer.request_id:
        if own.negotiating_seed == offer.seed:
            _deliver(offer, endpoint, own.answer_sdp, [], None, probably_publishing=False)
        return
    _finish_legacy_claim(offer, endpoint)


def _finish_legacy_claim(offer: Offer, endpoint: kurento.WebRtcEndpoint) -> None:
    deadline = time.monotonic() + DUPLICATE_WAIT_S
    while time.monotonic() < deadline:
        own, _ = Endpoint.negotiation_states(offer.participant_id, offer.stream)
        if own is None:
            return
        if own.answer_published:
            if own.answered_request_id == offer.request_id and not own.answer_sdp:
                raise NegotiationRefused(*PROCESS_OFFER_CUT_OFF)
            return
        time.sleep(0.05)
    own, _ = Endpoint.negotiation_states(offer.participant_id, offer.stream)
    if own is None:
        return  # the participant left meanwhile: nobody waits for this answer
    if own.answered_request_id == offer.request_id and own.answer_sdp:
        answer = own.answer_sdp
    else:
        try:
            answer = endpoint.process_offer(offer.sdp)
        except kurento.AlreadyNegotiated:
            answer = endpoint.get_local_session_descriptor()
    get_publisher(offer.settings).to_participant(
        offer.session_id, offer.participant_id, messages.sdp_answer(offer.stream, answer, offer.request_id)
    )
    Endpoint.record_published_answer(offer.participant_id, offer.stream, offer.request_id, answer)
    endpoint.gather_candidates()


def _wire_candidates(candidates: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [
        (c["candidate"], c.get("sdpMid") or "", int(c.get("sdpMLineIndex") or 0))
        for c in candidates
        if c.get("candidate")
    ]  # an empty one is the end-of-candidates marker


def _apply_candidates(endpoint: kurento.WebRtcEndpoint, candidates: list[dict[str, Any]]) -> None:
    wire = _wire_candidates(candidates)
    if wire:
        endpoint.add_ice_candidates(wire)


def add_candidates(
    settings: Settings, session_id: str, participant_id: str, stream: str, candidates: list[dict[str, Any]]
) -> None:
    """Applies trickled candidates to the stream's endpoint, or keeps them for the claim of the
    endpoint they belong to: one that does not exist yet, or a re-offer's whose processOffer is
    still running (a candidate names its ICE generation's ufrag; the stored endpoint knows its own).

    The usual case, candidates trickled after the offer: one projected read, one round trip to the
    KMS, and one read to check that a re-offer did not replace the endpoint meanwhile.
    """
    target = Endpoint.stored_kurento(participant_id, stream)
    if target.kurento is not None:
        kms_load.enter(settings, KurentoRef.decode(target.kurento).kms_url)  # before any write: may be deferred
    if target.kurento is None:
        if not target.exists and participant_id not in Participant.joined_among([participant_id]):
            return  # a late task of one who left: no record to leave behind
        cap = settings.max_candidates_per_stream
        if Endpoint.buffer_candidates(participant_id, stream, candidates, cap, None if target.exists else session_id):
            return  # the endpoint does not exist yet; whoever creates it applies these
        target = Endpoint.stored_kurento(participant_id, stream)  # it appeared meanwhile, or the buffer is full
        if target.exists and target.kurento is None:
            _refuse_candidates(settings, session_id, participant_id, stream, len(candidates))
            return
        if target.kurento is None:
            log.info("endpoint of %s/%s went away (a rejoin); candidates dropped", participant_id, stream)
            return
    newer = [c for c in candidates if not _of_generation(c, target.ice_ufrags)]
    if newer:
        _keep_for_next_claim(settings, session_id, participant_id, stream, target.kurento, newer)
        candidates = [c for c in candidates if _of_generation(c, target.ice_ufrags)]
        if not candidates:
            return
    _apply_quietly(participant_id, stream, _proxy(target.kurento), candidates)
    # A re-offer of the same ICE generation (no ICE restart) may have stored a fresh endpoint
    # between the read and the apply (its offer task runs beside this one): these candidates
    # belong to it too, not only to the old one it is about to release. Read again and follow.
    current = Endpoint.stored_kurento(participant_id, stream)
    if current.kurento is not None and current.kurento != target.kurento:
        following = [c for c in candidates if _of_generation(c, current.ice_ufrags)]
        if following:
            _apply_quietly(participant_id, stream, _proxy(current.kurento), following)


def _keep_for_next_claim(
    settings: Settings,
    session_id: str,
    participant_id: str,
    stream: str,
    stored: str,
    candidates: list[dict[str, Any]],
) -> None:
    """Candidates of another ICE generation than the stored endpoint's: a re-offer's, whose endpoint
    is not stored yet (its task may not even have started). They wait in the record; the claim of
    that endpoint takes them (and drops those of no generation it negotiated)."""
    cap = settings.max_candidates_per_stream
    if Endpoint.buffer_candidates(participant_id, stream, candidates, cap, while_stored=stored):
        return
    current = Endpoint.stored_kurento(participant_id, stream)  # claimed meanwhile, or the buffer is full
    if current.kurento == stored:
        _refuse_candidates(settings, session_id, participant_id, stream, len(candidates))
    elif current.kurento is not None:
        fitting = [c for c in candidates if _of_generation(c, current.ice_ufrags)]
        if fitting:
            _apply_quietly(participant_id, stream, _proxy(current.kurento), fitting)
    else:
        log.info("endpoint of %s/%s went away (a rejoin); candidates dropped", participant_id, stream)


_ICE_UFRAG_LINE = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)
_CANDIDATE_UFRAG = re.compile(r"\bufrag (\S+)")


def ice_ufrags_of(sdp: str) -> frozenset[str]:
    """The ICE usernames an offer's media sections use (one with BUNDLE)."""
    return frozenset(_ICE_UFRAG_LINE.findall(sdp))


def _of_generation(candidate: dict[str, Any], ufrags: frozenset[str]) -> bool:
    """Whether a candidate may belong to the negotiation that used `ufrags`: browsers name their
    generation in the candidate (`ufrag xxxx`); one that does not, or an endpoint whose ufrags are
    unknown, cannot be told apart and counts as belonging."""
    if not ufrags:
        return True
    named = _CANDIDATE_UFRAG.search(str(candidate.get("candidate") or ""))
    return named is None or named.group(1) in ufrags


def _apply_quietly(
    participant_id: str, stream: str, endpoint: kurento.WebRtcEndpoint, candidates: list[dict[str, Any]]
) -> None:
    try:
        _apply_candidates(endpoint, candidates)
    except kurento.ObjectNotFound:
        log.info("endpoint of %s/%s is gone; candidates dropped", participant_id, stream)


def _refuse_candidates(settings: Settings, session_id: str, participant_id: str, stream: str, count: int) -> None:
    limit = settings.max_candidates_per_stream
    log.warning("candidate buffer of %s/%s full (%d); %d dropped", participant_id, stream, limit, count)
    get_publisher(settings).to_participant(
        session_id,
        participant_id,
        messages.error(
            None,
            413,
            f"{count} ICE candidates for stream {stream} dropped: at most {limit} wait for an offer to be processed",
        ),
    )
