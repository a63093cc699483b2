"""The worker's background loop after a database outage: no verdicts from writes nobody could make.

The database and the jobs are faked here (their real runs are in tests/faults: the KMS session
takeover after a worker kill, silent participants, the MongoDB restart); what is tested is
the loop's own rule: takeovers and silent-participant removal wait for a stretch of reachable
database as long as the silence they judge.
"""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect

from media_tasks import background, kms_sessions
from settings import load_settings
from tests.support.fake_clock import FakeClock


class QuietPublisher:
    def flush(self) -> None:
        pass

    def heartbeat_check(self) -> None:
        pass


@pytest.fixture
def loop(monkeypatch):
    clock = FakeClock()
    calls = {"take_over": 0, "remove_silent": 0, "heartbeat_fails": False}

    def heartbeat():
        if calls["heartbeat_fails"]:
            raise AutoReconnect("127.0.0.1:27017: connection refused")

    def take_over(_settings):
        calls["take_over"] += 1
        return []

    def remove_silent(_settings):
        calls["remove_silent"] += 1
        return 0

    monkeypatch.setattr(kms_sessions, "check_renewal", heartbeat)
    monkeypatch.setattr(kms_sessions, "take_over_stale", take_over)
    monkeypatch.setattr(background.session_lifecycle, "remove_silent_participants", remove_silent)
    monkeypatch.setattr(background, "get_publisher", lambda _s: QuietPublisher())
    monkeypatch.setattr(background.Lease, "hold", classmethod(lambda cls, *a: True))
    monkeypatch.setattr(background.OutboxMessage, "purge_acknowledged", classmethod(lambda cls, *a: 0))
    monkeypatch.setattr(background.database_clock, "now", lambda: clock.now)
    settings = load_settings({"PARTICIPANT_TIMEOUT_S": "20", "KMS_URLS": ""})
    under_test = background.BackgroundLoop(settings, clock=clock)
    monkeypatch.setattr(under_test.monitor, "check_all", lambda: None)
    monkeypatch.setattr(under_test.sweeper, "maybe_sweep", lambda _now, skip=(): 0)
    monkeypatch.setattr(under_test.lifetimes, "maybe_sweep", lambda _now, _reachable: None)
    return under_test, clock, calls


def run_ticks(loop, clock, seconds: float, step: float = 0.5) -> None:
    """What BackgroundLoop.run does, without its thread and on a fake clock."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        loop.run_once()


def test_takeovers_and_removals_wait_for_a_whole_window_of_reachable_database(loop):
    loop, clock, calls = loop
    # A worker that just started has heard nothing yet: it judges no one at once.
    run_ticks(loop, clock, kms_sessions.HEARTBEAT_STALE_S - 1)
    assert calls["take_over"] == 0
    run_ticks(loop, clock, 2)
    assert calls["take_over"] > 0 and calls["remove_silent"] == 0
    run_ticks(loop, clock, 20)
    assert calls["remove_silent"] > 0

    # The database goes away for longer than both windows; then it is back.
    calls["heartbeat_fails"] = True
    run_ticks(loop, clock, 30)
    assert loop.db_reachable_for() == 0.0
    calls["heartbeat_fails"] = False
    calls["take_over"] = calls["remove_silent"] = 0
    run_ticks(loop, clock, kms_sessions.HEARTBEAT_STALE_S - 1)
    assert calls["take_over"] == 0, "took KMS sessions over from workers that could not heartbeat either"
    run_ticks(loop, clock, 15)
    assert calls["take_over"] > 0 and calls["remove_silent"] == 0, "removed participants whose polls failed"
    run_ticks(loop, clock, 10)
    assert calls["remove_silent"] > 0


def test_other_failures_do_not_hold_the_jobs_back(loop, monkeypatch):
    loop, clock, calls = loop

    def flush_fails(_settings):
        raise ConnectionError("the broker is away")

    run_ticks(loop, clock, 25)
    monkeypatch.setattr(background, "get_publisher", flush_fails)
    calls["take_over"] = calls["remove_silent"] = 0
    run_ticks(loop, clock, 1)  # every tick fails after the heartbeat: the database was reachable
    assert loop.db_reachable_for() >= 25
    monkeypatch.setattr(background, "get_publisher", lambda _s: QuietPublisher())
    run_ticks(loop, clock, 5)
    assert calls["take_over"] > 0 and calls["remove_silent"] > 0
