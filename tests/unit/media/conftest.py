"""Fast tests of the media-side functions: a real nx-27017 and the emulator in-process, no broker.

The broker boundary is faked: `RecordingPublisher` stands in for the process's publisher (what a
task published is what these tests check), `RecordingChannel` for a broker channel.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import kurento
from messaging import publisher as publisher_module
from models import Participant, Session, clock, connect_db
from models.connection import current_db
from settings import Settings, load_settings
from tests.support.costs import register_mongo_listener
from tests.support.emulator import InProcessEmulator

# Before any MongoClient of this process exists: test_negotiation_costs counts MongoDB commands.
register_mongo_listener()


@dataclass
class RecordingPublisher:
    """What was published, in order: ("session", session_id, message) or ("participant", id, message)."""

    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def to_session(self, session_id: str, message: dict[str, Any]) -> None:
        self.sent.append(("session", session_id, message))

    def to_participant(self, session_id: str, participant_id: str, message: dict[str, Any]) -> None:
        self.sent.append(("participant", participant_id, message))

    def flush(self, timeout: float = 0.0) -> None:
        return None

    def of_type(self, type_: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [entry for entry in self.sent if entry[2].get("type") == type_]


@dataclass
class RecordingChannel:
    """A broker channel that records the calls made on it (topology declarations, unbinds)."""

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return call


@pytest.fixture(scope="module")
def kms() -> Iterator[InProcessEmulator]:
    server = InProcessEmulator("signaling").start()
    yield server
    server.stop()


@pytest.fixture
def settings(mongodb_uri: str, kms: InProcessEmulator) -> Iterator[Settings]:
    # A database per test: nothing one test stores can satisfy another's assertions.
    database = mongodb_uri.rsplit("/", 1)[0] + f"/unit_{secrets.token_hex(4)}"
    loaded = load_settings(
        {"MONGODB_URI": database, "KMS_URLS": kms.url, "SECRET_KEY": "unit", "RABBITMQ_URL": "amqp://unit-test//"}
    )
    connect_db(loaded)
    # Its client made here, on this thread: mongoengine makes a connection's client on first use, and
    # two threads using a new alias at once (the test's and a Kurento event's, both reading the
    # database clock) would each make one, the loser dropped unclosed.
    current_db()
    yield loaded
    kurento.pool.close_all()


@pytest.fixture
def published(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> RecordingPublisher:
    recording = RecordingPublisher()
    # get_publisher keeps one publisher per (process, broker URL): this one is ours.
    monkeypatch.setitem(publisher_module._publishers, (os.getpid(), settings.rabbitmq_url), recording)
    return recording


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> RecordingChannel:
    from media_tasks import session_lifecycle

    recording = RecordingChannel()

    @contextlib.contextmanager
    def broker_channel(_settings: Settings) -> Iterator[RecordingChannel]:
        yield recording

    monkeypatch.setattr(session_lifecycle, "broker_channel", broker_channel)
    return recording


def new_session(max_participants: int = 8) -> Session:
    session = Session(max_participants=max_participants)
    session.save(force_insert=True)
    return session


def new_participant(session: Session, name: str = "alice") -> Participant:
    participant = Participant(session_id=session.id, display_name=name)
    participant.save(force_insert=True)
    entry = Session.reserve_slot(session.id, participant.id, clock.now())
    assert entry is not None and Session.settle_admission(session.id, entry) == "open"
    return participant


def endpoint_id(participant_id: str, stream: str) -> str:
    """The Kurento id of the stored endpoint of (participant, stream); it must exist."""
    from models import Endpoint

    stored = Endpoint.find(participant_id, stream)
    assert stored is not None and stored.kurento is not None, (participant_id, stream)
    return str(stored.kurento.id)
