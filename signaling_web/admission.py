"""Admission: what must be true before the web tier answers a membership request.

Creating a session, taking a place in it, and marking a participant left or a session closed
are atomic MongoDB updates done here, so the HTTP answer is truthful; the media work that
follows is queued for the workers (media_tasks.session_lifecycle). Refusals are domain errors
(models.errors), which signaling_web.errors turns into HTTP answers.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Any

from amqp.exceptions import NotFound
from pymongo.errors import AutoReconnect

from media_tasks.dispatch import TaskQueue
from messaging import topology
from messaging.broker import broker_channel
from models import (
    Endpoint,
    JoinGrant,
    Participant,
    ParticipantRole,
    ParticipantState,
    Session,
    SessionState,
    clock,
    streams,
)
from models.errors import (
    BadStreamName,
    Invalid,
    JoinTokenExpired,
    JoinTokenUsed,
    NotAModerator,
    OwnStreamById,
    ParticipantLeft,
    ParticipantNotFound,
    PublicationNotFound,
    RecipientNotFound,
    SessionClosed,
    SessionFull,
    SessionNotFound,
    StreamNotFound,
    SubscriberCannotPublish,
    TooManyPublications,
    WrongJoinToken,
)
from models.join_grant import is_minted
from models.session import BANDWIDTH_FIELDS
from settings import Settings
from signaling_web.participant_cache import ParticipantCache

log = logging.getLogger(__name__)


def create_session(
    settings: Settings, tasks: TaskQueue, name: str, max_participants: int | None, **bandwidth: int
) -> Session:
    session = Session.create(name, max_participants or settings.default_max_participants, **bandwidth)
    # Declared here, while nobody can have closed it, so that joins never need to declare it.
    with broker_channel(settings) as channel:
        topology.declare_session(channel, settings, session.id)
    tasks.create_session(session_id=session.id)
    return session


def get_session(session_id: str) -> Session:
    session = Session.find(session_id)
    if session is None:
        raise SessionNotFound()
    return session


def get_open_session(session_id: str) -> Session:
    session = get_session(session_id)
    if session.state == SessionState.CLOSED:
        raise SessionClosed()
    return session


def get_participant(session_id: str, participant_id: str) -> Participant:
    participant = Participant.find_in(session_id, participant_id)
    if participant is None:
        raise ParticipantNotFound()
    return participant


def _state_of(session_id: str, participant_id: str) -> str | None:
    """The participant's state, None if it is not one of the session: one indexed read of one
    field, through pymongo (no document is built)."""
    found = Participant._get_collection().find_one({"_id": participant_id, "session_id": session_id}, {"state": 1})
    return None if found is None else str(found.get("state"))


def _state(session_id: str, participant_id: str, cache: ParticipantCache | None) -> str | None:
    """As _state_of, but "joined" without a read when `cache` saw it joined lately."""
    if cache is None:
        return _state_of(session_id, participant_id)
    if cache.is_joined(session_id, participant_id):
        return ParticipantState.JOINED
    ticket = cache.ticket()
    state = _state_of(session_id, participant_id)
    if state == ParticipantState.JOINED:
        cache.remember(session_id, participant_id, ticket)
    return state


def check_acting_participant(session_id: str, participant_id: str, cache: ParticipantCache | None = None) -> None:
    """The participant is joined, so in an open session: one cheap read, or none when `cache` (for
    offers and candidates only: signaling_web.participant_cache says why) saw it joined lately.

    Closing a session marks its participants left (close below), so a joined participant is in
    an open session; the session is read only to explain a refusal.
    """
    state = _state(session_id, participant_id, cache)
    if state == ParticipantState.JOINED:
        return
    get_open_session(session_id)
    if state is None:
        raise ParticipantNotFound()
    raise ParticipantLeft()


def check_stream(
    session_id: str, participant_id: str, stream: str, cache: ParticipantCache | None = None, *, offer: bool = False
) -> str:
    """`stream` is "publish[:<name>]" or names another joined participant of the session ("<pid>[:<name>]");
    returns it as the records name it (models.streams: "publish:main" is "publish"). An offer for a new
    publication beyond MAX_PUBLICATIONS is refused (_admit_publication); only named publications cost a
    read (of the participant's publish records), so "publish" and subscriptions cost what they did."""
    try:
        ref = streams.parse(participant_id, stream)
    except streams.BadStreamName:
        raise BadStreamName() from None
    if ref.publishing:
        if offer and ref.name != streams.MAIN:
            _admit_publication(session_id, participant_id, ref)
        return ref.stream
    if ref.publisher_id == participant_id:
        raise OwnStreamById()
    if _state(session_id, ref.publisher_id, cache) != ParticipantState.JOINED:
        raise StreamNotFound(ref.publisher_id)
    return ref.stream


def _admit_publication(session_id: str, participant_id: str, ref: streams.StreamRef) -> None:
    """An offer on a named publication: a known one passes (one read); a new one within the limit gets
    its record now, then the participant's publications are counted again, and the offer is refused
    (its record removed) if they pass the limit. Of offers racing for the last place (on any web
    process) the limit may so refuse both, never admit both. main counts whether or not it is
    published yet: a participant always may publish it."""
    names = Endpoint.publication_names(participant_id) - {streams.MAIN}
    if ref.name in names:
        return
    if len(names) + 1 >= streams.MAX_PUBLICATIONS:
        raise TooManyPublications(streams.MAX_PUBLICATIONS)
    created = Endpoint.ensure(session_id, participant_id, ref.stream)
    if created is None:
        return  # another request for the same name (or its candidates) created it: counted there
    if len(Endpoint.publication_names(participant_id) - {streams.MAIN}) + 1 > streams.MAX_PUBLICATIONS:
        Endpoint.discard(created.id)
        raise TooManyPublications(streams.MAX_PUBLICATIONS)


def check_publication(session_id: str, participant_id: str, name: str) -> None:
    """The participant of the session has a publication `name` (a publish record, its endpoint stored
    or not): one read."""
    if not streams.NAME_PATTERN.fullmatch(name):
        raise BadStreamName("name")
    if name not in Endpoint.publication_names(participant_id, session_id):
        raise PublicationNotFound(name)


def unpublish(tasks: TaskQueue, session_id: str, participant_id: str, name: str) -> None:
    check_publication(session_id, participant_id, name)
    tasks.unpublish(session_id=session_id, participant_id=participant_id, name=name, reason="unpublished")


def mute(
    tasks: TaskQueue, session_id: str, participant_id: str, name: str, audio: bool | None, video: bool | None
) -> None:
    """Stores the mute state (atomic $set on the publication's record), then the worker applies it."""
    if not streams.NAME_PATTERN.fullmatch(name):
        raise BadStreamName("name")
    if not Endpoint.set_muted(session_id, participant_id, name, audio, video):
        raise PublicationNotFound(name)
    tasks.mute(session_id=session_id, participant_id=participant_id, name=name)


def check_recipient(session_id: str, to: str | None) -> None:
    """`to` is None (everyone) or names a joined participant of the session."""
    if to is not None and _state_of(session_id, to) != ParticipantState.JOINED:
        raise RecipientNotFound(to)


def join(
    settings: Settings,
    tasks: TaskQueue,
    session_id: str,
    join_token: str,
    display_name: str | None,
    metadata: dict[str, Any] | None = None,
) -> Participant:
    """Admits a participant with the session's shared join token (a publisher) or a minted one
    (single use: its role, and its display_name and metadata over the body's)."""
    session = get_open_session(session_id)
    participant = Participant(session_id=session.id, display_name=display_name or "")
    participant.metadata = metadata
    grant = None
    if is_minted(join_token):
        # Taken before the place, so a refused token takes no place; given back if the join fails.
        grant = JoinGrant.consume(session.id, join_token, participant.id)
        if grant is None:
            raise _minted_token_refusal(session.id, join_token)
        participant.role = grant.role
        participant.display_name = grant.display_name or participant.display_name
        if grant.metadata is not None:
            participant.metadata = grant.metadata
        for field in BANDWIDTH_FIELDS:
            setattr(participant, field, getattr(grant, field) or 0)
    elif not hmac.compare_digest(session.join_token.encode(), join_token.encode()):
        raise WrongJoinToken()
    try:
        if not participant.display_name:
            raise Invalid(
                "display_name is required unless the join token names the participant.",
                {"display_name": ["Missing data for required field."]},
            )
        _admit(settings, session, participant)
    except Exception:
        if grant is not None:
            JoinGrant.give_back(join_token, participant.id)
        raise
    tasks.announce_join(
        session_id=session.id,
        participant_id=participant.id,
        display_name=participant.display_name,
        role=participant.role,
        metadata=participant.metadata,
    )
    return participant


def _minted_token_refusal(session_id: str, join_token: str) -> Exception:
    """Why a minted token did not admit: one read, on the refusal path only."""
    grant = JoinGrant.find_for(session_id, join_token)
    if grant is None:
        return WrongJoinToken()
    if grant.used_by is not None:
        return JoinTokenUsed()
    if grant.expires_at.replace(tzinfo=UTC) <= datetime.now(UTC):
        return JoinTokenExpired()
    return JoinTokenUsed()  # given back by a failed join since our update: rare; a retry may succeed


def _admit(settings: Settings, session: Session, participant: Participant) -> None:
    """Reserves a place, stores the participant and its queue, then settles the reservation. A join cut
    off before it settles (a paused database, this process killed) leaves only its admission entry,
    and the lifetime sweep gives that place back (Session.revoke_admission); see models.session."""
    entry = Session.reserve_slot(session.id, participant.id, clock.now())
    if entry is None:
        if Session.is_closed(session.id):
            raise SessionClosed()
        raise SessionFull(session.max_participants)
    settled = False
    try:
        participant.admit()
        _declare_queue(settings, session.id, participant.id)
        # A close marks the session closed first and its joined participants left after
        # (close below, and again in its task, before deleting the exchange). This participant
        # was stored and its queue bound before this read: if the session is still open here,
        # any close comes later, marks this participant left and unbinds its queue; if it is
        # closed, this join undoes itself.
        state = Session.settle_admission(session.id, entry)
        if state is None:
            raise AutoReconnect("the join took too long and its place was given back: join again")
        settled = True
        if state == SessionState.CLOSED:
            raise SessionClosed()
    except Exception as exc:
        if settled:
            Session.release_slot(session.id)
            Participant.discard(participant.id)
        elif Session.revoke_admission(session.id, entry, clock.now()):
            Participant.discard(participant.id)
        # Else the sweep gave the place back (and removed the participant), or the settle went through
        # unseen: the participant then holds its place, never polls, and is removed as silent.
        _forget_queue(settings, session.id, participant.id, session_closed=isinstance(exc, SessionClosed))
        raise


def mint_join_token(
    session_id: str,
    role: str,
    display_name: str | None,
    metadata: dict[str, Any] | None,
    ttl_s: int,
    **bandwidth: int | None,
) -> tuple[str, JoinGrant]:
    """`bandwidth`: BANDWIDTH_FIELDS (kbps) for the participant's endpoints instead of the session's."""
    get_open_session(session_id)
    given = {field: kbps for field, kbps in bandwidth.items() if kbps is not None}
    return JoinGrant.mint(session_id, role, display_name, metadata, ttl_s, now=None, **given)


def rotate_join_token(session_id: str) -> str:
    token = Session.rotate_join_token(session_id)
    if token is None:
        get_open_session(session_id)  # says which: no such session, or closed
        raise SessionClosed()  # closed between the update and the read
    return token


def check_may_offer(role: str, stream: str) -> None:
    """A subscriber receives only: no offer (nor candidates) on any publication of its own ("publish",
    "publish:<name>"). From its token: no read."""
    if role == ParticipantRole.SUBSCRIBER and streams.is_publish(stream):
        raise SubscriberCannotPublish()


def check_moderator(session_id: str, participant_id: str, role: str) -> None:
    """The caller is a moderator of the session, still joined (one read)."""
    if role != ParticipantRole.MODERATOR:
        raise NotAModerator()
    check_acting_participant(session_id, participant_id)


def _declare_queue(settings: Settings, session_id: str, participant_id: str) -> None:
    """The participant's queue, bound to its session's exchange, which it never redeclares
    unless the session is open (a session created before creation declared it)."""
    try:
        with broker_channel(settings) as channel:
            topology.declare_participant(channel, settings, session_id, participant_id)
        return
    except NotFound:
        if Session.is_closed(session_id):
            raise SessionClosed() from None
    with broker_channel(settings) as channel:
        # Should the session close meanwhile, the check after this in join undoes it.
        topology.declare_session(channel, settings, session_id)
        topology.declare_participant(channel, settings, session_id, participant_id)


def _forget_queue(settings: Settings, session_id: str, participant_id: str, session_closed: bool) -> None:
    """Best effort: a queue left behind expires by itself (x-expires)."""
    try:
        with broker_channel(settings) as channel:
            topology.delete_participant_queue(channel, settings, session_id, participant_id)
            if session_closed:
                # The session's exchange goes with its close; if a declare above raced it, again.
                topology.delete_session_exchange(channel, settings, session_id)
    except Exception:
        log.warning("could not delete the queue of a failed join (%s); it will expire", participant_id, exc_info=True)


def leave(tasks: TaskQueue, session_id: str, participant_id: str, reason: str) -> None:
    """`reason`: "left" (its own leave) or "removed" (by a moderator or the API key)."""
    before = Participant.mark_left(participant_id, reason)
    if before is None:
        raise ParticipantLeft()  # already left (or removed, or its session closed): the first did the work
    Session.release_slot(session_id)
    tasks.finish_leave(
        session_id=session_id,
        participant_id=participant_id,
        reason=reason,
        was_publishing=before.publishing,
    )


def rejoin(tasks: TaskQueue, session_id: str, participant_id: str) -> None:
    """Fresh media: the old endpoints leave the record now, before any new offer can arrive."""
    was_publishing = Participant.set_publishing(participant_id, False)
    # Its other publications end too (main is was_publishing): one read, before they leave the record.
    others = sorted(Endpoint.publication_names(participant_id, session_id) - {streams.MAIN})
    refs = Endpoint.detach_all_of(session_id, participant_id)
    tasks.rejoin(
        session_id=session_id,
        participant_id=participant_id,
        endpoint_refs=refs,
        was_publishing=was_publishing,
        publications=others,
    )


def close(tasks: TaskQueue, session_id: str) -> None:
    if Session.mark_closed(session_id) is not None:
        # Before answering, so that no request of a participant is accepted once it is closed.
        Participant.mark_all_left(session_id, "session_closed")
        tasks.close_session(session_id=session_id)


def participants_of(session_id: str) -> list[Participant]:
    return list(Participant.active_in(session_id))
