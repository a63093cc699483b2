"""The base task's failure path: a task that fails for good tells the client whose request it
answers, with a code that says why (the integration tests produce the media-server failures for
real; a MongoDB OperationFailure cannot be produced on demand, so it is raised here)."""

from __future__ import annotations

import pytest
from pymongo.errors import OperationFailure

from media_tasks import negotiation
from media_tasks.celery_app import create_celery_app
from models import PUBLISH
from settings import Settings
from tests.unit.media.conftest import RecordingPublisher, new_participant, new_session

pytestmark = pytest.mark.timeout(30)


def _run_offer_task(settings: Settings, session_id: str, participant_id: str) -> None:
    task = create_celery_app(settings).tasks["media.process_offer"]
    task.push_request(id="task-1", root_id="task-1", retries=task.max_retries, delivery_info={})
    try:
        task(session_id=session_id, participant_id=participant_id, stream=PUBLISH, sdp="v=0", request_id="r1")
    finally:
        task.pop_request()


def test_a_database_operation_failure_ends_the_offer_in_error_500(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = new_session()
    alice = new_participant(session)

    def refused(*_args: object) -> None:
        raise OperationFailure("not authorized on signaling to execute command", code=13)

    monkeypatch.setattr(negotiation, "process_offer", refused)
    with pytest.raises(OperationFailure):
        _run_offer_task(settings, session.id, alice.id)
    [(kind, to, error)] = published.of_type("error")
    assert (kind, to) == ("participant", alice.id)
    assert error["request_id"] == "r1" and error["code"] == 500 and "code 13" in error["message"]


def test_a_task_that_answers_nobody_publishes_no_error(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = new_session()
    from media_tasks import session_lifecycle

    def broken(*_args: object) -> None:
        raise OperationFailure("boom", code=2)

    monkeypatch.setattr(session_lifecycle, "prepare_session", broken)
    task = create_celery_app(settings).tasks["media.create_session"]
    task.push_request(id="task-2", root_id="task-2", retries=task.max_retries, delivery_info={})
    try:
        with pytest.raises(OperationFailure):
            task(session_id=session.id)
    finally:
        task.pop_request()
    assert published.of_type("error") == []
