"""The synchronous half of membership: what must be true before the web tier answers.

Creating a session, taking a place in it, and marking a participant left are atomic
MongoDB updates done here, so the HTTP answer is truthful; the media work that follows is
queued for the workers.
"""

from __future__ import annotations

from flask_smorest import abort

from messaging import topology
from messaging.broker import broker_channel
from models import Endpoint, Participant, ParticipantState, Session, SessionState
from settings import Settings
from signaling_web.dispatch import enqueue


def create_session(settings: Settings, name: str, max_participants: int | None) -> Session:
    session = Session(name=name, max_participants=max_participants or settings.default_max_participants)
    session.save(force_insert=True)
    enqueue("media.create_session", session_id=session.id)
    return session


def get_session(session_id: str) -> Session:
    session = Session.objects(id=session_id).first()
    if session is None:
        abort(404, message="No such session.")
    return session


def get_open_session(session_id: str) -> Session:
    session = get_session(session_id)
    if session.state == SessionState.CLOSED:
        abort(409, message="The session is closed.")
    return session


NO_SUCH_PARTICIPANT = "No such participant in this session."


def get_participant(session_id: str, participant_id: str) -> Participant:
    participant = Participant.objects(id=participant_id, session_id=session_id).first()
    if participant is None:
        abort(404, message=NO_SUCH_PARTICIPANT)
    return participant


def get_acting_participant(session_id: str, participant_id: str) -> Participant:
    """The participant, joined, in an open session: one read when all is well.

    Closing a session marks its participants left (close below), so a joined participant is in
    an open session; the session is read only to explain a refusal.
    """
    participant = Participant.objects(id=participant_id, session_id=session_id).first()
    if participant is not None and participant.is_active:
        return participant
    get_open_session(session_id)
    if participant is None:
        abort(404, message=NO_SUCH_PARTICIPANT)
    abort(409, message="This participant has left the session.")


def join(settings: Settings, session: Session, display_name: str) -> Participant:
    if not Session.reserve_slot(session.id):
        if Session.objects(id=session.id, state=SessionState.CLOSED).count():
            abort(409, message="The session is closed.")
        abort(409, message=f"The session is full ({session.max_participants} participants).")
    participant = Participant(session_id=session.id, display_name=display_name)
    try:
        participant.save(force_insert=True)
        with broker_channel(settings) as channel:
            topology.declare_participant(channel, settings, session.id, participant.id)
    except Exception:
        Session.release_slot(session.id)
        Participant.objects(id=participant.id).delete()
        raise
    enqueue("media.announce_join", session_id=session.id, participant_id=participant.id, display_name=display_name)
    return participant


def leave(session_id: str, participant_id: str, reason: str) -> None:
    before = Participant.mark_left(participant_id, reason)
    if before is None:
        return  # already left: the first leave did the work
    Session.release_slot(session_id)
    enqueue(
        "media.finish_leave",
        session_id=session_id,
        participant_id=participant_id,
        reason=reason,
        was_publishing=before.publishing,
    )


def rejoin(session_id: str, participant_id: str) -> None:
    """Fresh media: the old endpoints leave the record now, before any new offer can arrive."""
    was_publishing = Participant.set_publishing(participant_id, False)
    refs = Endpoint.detach_all_of(session_id, participant_id)
    enqueue(
        "media.rejoin",
        session_id=session_id,
        participant_id=participant_id,
        endpoint_refs=refs,
        was_publishing=was_publishing,
    )


def close(session_id: str) -> None:
    if Session.mark_closed(session_id) is not None:
        # Before answering, so that no request of a participant is accepted once it is closed.
        Participant.objects(session_id=session_id, state=ParticipantState.JOINED).update(
            set__state=ParticipantState.LEFT, set__left_reason="session_closed"
        )
        enqueue("media.close_session", session_id=session_id)


def participants_of(session_id: str) -> list[Participant]:
    return list(Participant.active_in(session_id))


def participant_exists(session_id: str, participant_id: str) -> bool:
    return bool(Participant.objects(id=participant_id, session_id=session_id, state=ParticipantState.JOINED).count())
