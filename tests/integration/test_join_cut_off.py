"""A join cut off between taking its place and settling it (issue 16, item 7: a paused database, a web
process killed), forced in this process against the stack's database and broker: the database
"pauses" (AutoReconnect) right after the participant is stored, and stays away for the join's
clean-up too. The place stays taken until the lifetime sweep gives it back, and the participant it
stored goes with it; a join that settles in time keeps its place whatever the sweep does."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect

pytestmark = pytest.mark.integration


def test_a_join_cut_off_before_it_settles_gets_its_place_back_from_the_sweep(api, db, stack, monkeypatch):
    from media_tasks.dispatch import task_queue
    from media_tasks.lifetimes import ADMISSION_GRACE_S, release_cut_off_joins
    from models import Participant, Session, clock
    from settings import load_settings
    from signaling_web import admission

    settings = load_settings(stack.env)
    tasks = task_queue(settings)
    session = api.create_session(max_participants=2)
    sid = session["session_id"]
    api.join(session, "first")

    def database_away(*_args: object, **_kwargs: object) -> None:
        raise AutoReconnect("paused")

    monkeypatch.setattr(Session, "settle_admission", classmethod(database_away))
    monkeypatch.setattr(Session, "revoke_admission", classmethod(database_away))
    with pytest.raises(AutoReconnect):
        admission.join(settings, tasks, sid, session["join_token"], "cut off")
    monkeypatch.undo()

    # Half applied: the place is taken and the participant stored, unsettled. The session is full.
    stored = Session.objects.get(id=sid)
    assert (stored.participant_count, stored.admitting_count) == (2, 1)
    cut_off = stored.admitting[0].partition(" ")[0]
    assert Participant.objects(id=cut_off).count() == 1
    refused = api.http.post(
        f"{api.base}/api/v1/sessions/{sid}/participants",
        json={"display_name": "third", "join_token": session["join_token"]},
    )
    assert refused.status_code == 409 and "full" in refused.json()["message"], refused.text

    assert release_cut_off_joins(clock.now()) == 0, "within the grace period a join may still settle"
    assert release_cut_off_joins(clock.now() + ADMISSION_GRACE_S + 1) == 1
    assert release_cut_off_joins(clock.now() + ADMISSION_GRACE_S + 1) == 0, "given back once"
    stored = Session.objects.get(id=sid)
    assert (stored.participant_count, stored.admitting_count, stored.admitting) == (1, 0, [])
    assert Participant.objects(id=cut_off).count() == 0
    assert api.join(session, "third").participant_id, "the place is free again"


def test_a_join_whose_place_the_sweep_gave_back_first_refuses_and_leaves_nothing(api, db, stack, monkeypatch):
    from media_tasks.dispatch import task_queue
    from media_tasks.lifetimes import ADMISSION_GRACE_S, release_cut_off_joins
    from models import Participant, Session, clock
    from settings import load_settings
    from signaling_web import admission

    settings = load_settings(stack.env)
    tasks = task_queue(settings)
    session = api.create_session(max_participants=2)
    sid = session["session_id"]
    settle = Session.settle_admission.__func__
    swept: list[int] = []

    def settle_too_late(cls, session_id: str, entry: str) -> str | None:
        # The join was slow (a long database pause): the sweep ran before its settle.
        swept.append(release_cut_off_joins(clock.now() + ADMISSION_GRACE_S + 1))
        return settle(cls, session_id, entry)

    monkeypatch.setattr(Session, "settle_admission", classmethod(settle_too_late))
    with pytest.raises(AutoReconnect, match="join again"):
        admission.join(settings, tasks, sid, session["join_token"], "slow")
    monkeypatch.undo()
    assert swept == [1]
    stored = Session.objects.get(id=sid)
    assert (stored.participant_count, stored.admitting_count) == (0, 0)
    assert Participant.objects(session_id=sid).count() == 0
    # Settled joins are untouched by the sweep.
    alice = api.join(session, "alice")
    assert release_cut_off_joins(clock.now() + ADMISSION_GRACE_S + 1) == 0
    assert Session.objects.get(id=sid).participant_count == 1
    assert Participant.objects(id=alice.participant_id, state="joined").count() == 1
