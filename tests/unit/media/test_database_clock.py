"""The database's clock (models.clock) for times one process writes and another judges (issue 16, item 5),
and the connection check that comes early because the countdown ran on a skewed clock."""

from __future__ import annotations

import time

import pytest
import time_machine

from media_tasks import connection_watch
from models import PUBLISH, Endpoint, clock
from settings import Settings
from tests.unit.media.conftest import RecordingPublisher, new_participant, new_session

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("skew_s", [3.0, -3.0])
def test_now_is_the_databases_time_whatever_this_processs_clock_says(settings: Settings, skew_s: float) -> None:
    clock.reset()
    real = time.time()
    with time_machine.travel(real + skew_s, tick=True):
        assert abs(time.time() - real - skew_s) < 0.5, "the process's clock is skewed"
        assert abs(clock.now() - time.time() + skew_s) < 0.1
        assert abs(clock.offset_s() + skew_s) < 0.1
    clock.reset()
    assert abs(clock.now() - time.time()) < 0.1


def test_a_check_that_runs_early_schedules_itself_for_the_rest_of_the_debounce(
    settings: Settings, published: RecordingPublisher
) -> None:
    session = new_session()
    alice = new_participant(session, "alice")
    Endpoint.ensure(session.id, alice.id, PUBLISH)
    started = clock.now()
    assert Endpoint.mark_failing(alice.id, PUBLISH, started)
    scheduled: list[float] = []
    # The countdown came 1 s into the debounce (its ETA was set on a clock running behind).
    assert not connection_watch.check_connection(settings, session.id, alice.id, PUBLISH, scheduled.append)
    assert len(scheduled) == 1
    assert settings.connection_debounce_s - 0.5 < scheduled[0] <= settings.connection_debounce_s
    assert not published.of_type("connectionFailed")
    # Once the period is over (the stored clock moved back by one period), the next run reports it, once.
    Endpoint._get_collection().update_one(
        {"participant_id": alice.id, "stream": PUBLISH},
        {"$set": {"failed_since": started - settings.connection_debounce_s}},
    )
    assert connection_watch.check_connection(settings, session.id, alice.id, PUBLISH, scheduled.append)
    assert not connection_watch.check_connection(settings, session.id, alice.id, PUBLISH, scheduled.append)
    assert len(scheduled) == 1, "a reported failure schedules nothing more"
    assert [m["stream"] for _, _, m in published.of_type("connectionFailed")] == [PUBLISH]


def test_a_check_after_a_recovery_schedules_nothing(settings: Settings, published: RecordingPublisher) -> None:
    session = new_session()
    alice = new_participant(session, "alice")
    Endpoint.ensure(session.id, alice.id, PUBLISH)
    assert Endpoint.mark_failing(alice.id, PUBLISH, clock.now())
    Endpoint.mark_recovered(alice.id, PUBLISH)
    scheduled: list[float] = []
    assert not connection_watch.check_connection(settings, session.id, alice.id, PUBLISH, scheduled.append)
    assert scheduled == [] and not published.of_type("connectionFailed")
