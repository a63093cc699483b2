"""A join that reserved its place before the session closed, and bound its queue after.

The interleaving is forced: the join runs in this process against the stack's database and
broker, and right after its place is reserved the session is closed through the web tier's own
close, whose task (on a real worker) deletes the session's exchange. The join must then refuse
(SessionClosed), leave no joined participant, no queue, and no resurrected session exchange.
"""

from __future__ import annotations

import time

import pytest

from tests.support import rabbit

pytestmark = pytest.mark.integration


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_join_racing_a_close_undoes_itself_and_leaves_the_exchange_deleted(api, db, stack, monkeypatch):
    from media_tasks.dispatch import task_queue
    from messaging import topology
    from models import Participant, Session
    from models.errors import SessionClosed
    from settings import load_settings
    from signaling_web import admission

    settings = load_settings(stack.env)
    tasks = task_queue(settings)
    url = stack.env["RABBITMQ_URL"]
    session = api.create_session()
    sid = session["session_id"]
    exchange = topology.session_exchange(settings, sid).name
    wait_for(lambda: exchange in rabbit.exchanges(url), "session exchange declared")

    reserve = Session.reserve_slot.__func__

    def reserve_then_close(cls, session_id: str, participant_id: str, now: float) -> str | None:
        reserved = reserve(cls, session_id, participant_id, now)
        # The close lands here: after the reservation, before the participant and its queue.
        admission.close(tasks, session_id)
        wait_for(lambda: exchange not in rabbit.exchanges(url), "the close deleted the session exchange")
        return reserved

    monkeypatch.setattr(Session, "reserve_slot", classmethod(reserve_then_close))
    with pytest.raises(SessionClosed):
        admission.join(settings, tasks, sid, session["join_token"], "late joiner")
    monkeypatch.undo()

    assert list(Participant.objects(session_id=sid, state="joined")) == []
    assert exchange not in rabbit.exchanges(url), "the join brought the closed session's exchange back"
    prefix = f"{settings.name_prefix}.participant."
    ours = {p.id for p in Participant.objects(session_id=sid)}
    assert not [q for _x, q in rabbit.bindings(url) if q.startswith(prefix) and q.removeprefix(prefix) in ours]
    # A late create_session task (redelivered, say) does not bring it back either.
    from media_tasks import session_lifecycle

    session_lifecycle.prepare_session(settings, sid)
    assert exchange not in rabbit.exchanges(url)
