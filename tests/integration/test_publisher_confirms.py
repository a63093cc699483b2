"""Publisher confirms are accounted per task, on a real RabbitMQ connection.

The worker's one publisher channel is shared by the task threads (and the Kurento event thread).
Each test runs "tasks" as threads inside `publishing_for_task` scopes, as media_tasks.base_task
does, and makes the broker itself close the channel or nack a message.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Callable, Iterator

import pytest
from kombu import Connection, Queue

from messaging import rerun_identity, topology
from messaging.publisher import Publisher, PublishNotConfirmed
from messaging.rerun_identity import TaskScope, publishing_for_task
from settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(rabbitmq_url: str) -> Settings:
    return Settings(rabbitmq_url=rabbitmq_url, name_prefix=f"pc{secrets.token_hex(3)}")


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Publisher]:
    publisher = Publisher(settings)
    yield publisher
    publisher.close()


@pytest.fixture
def connection(settings: Settings) -> Iterator[Connection]:
    with Connection(settings.rabbitmq_url) as conn:
        yield conn


def joined(connection: Connection, settings: Settings, session_id: str, participant_id: str) -> Queue:
    channel = connection.channel()
    topology.declare_session(channel, settings, session_id)
    topology.declare_participant(channel, settings, session_id, participant_id)
    return topology.participant_queue(settings, session_id, participant_id)


def received(connection: Connection, queue: Queue) -> list[dict]:
    channel = connection.channel()
    bodies = []
    while (message := channel.basic_get(queue.name, no_ack=True)) is not None:
        bodies.append(message.body)
    channel.close()
    return [json.loads(body) for body in bodies]


@contextlib.contextmanager
def acting_as(scope: TaskScope) -> Iterator[None]:
    """This thread publishes as the task whose scope this is (several tasks, back to back, with
    no thread switch in between: the tightest interleaving a worker's threads can produce)."""
    rerun_identity._task.scope = scope
    try:
        yield
    finally:
        rerun_identity._task.scope = None


def flushed(publisher: Publisher, scope: TaskScope) -> BaseException | None:
    with acting_as(scope):
        try:
            publisher.flush()
        except PublishNotConfirmed as exc:
            return exc
    return None


class Paused:
    """A task thread that publishes now and flushes only when told: tasks interleave as on a worker."""

    def __init__(self, seed: str, publish: Callable[[], None], flush: Callable[[], None]) -> None:
        self._go = threading.Event()
        self._published = threading.Event()
        self.error: BaseException | None = None
        self.done = False

        def run() -> None:
            with publishing_for_task(seed):
                publish()
                self._published.set()
                assert self._go.wait(30)
                try:
                    flush()
                except BaseException as exc:  # the test reports it
                    self.error = exc
                self.done = True

        self._thread = threading.Thread(target=run)
        self._thread.start()
        assert self._published.wait(30), f"task {seed} did not publish"

    def flush(self) -> BaseException | None:
        self._go.set()
        self._thread.join(timeout=30)
        assert self.done
        return self.error


def test_a_channel_closed_under_two_tasks_unconfirmed_publishes_fails_both_flushes(
    publisher: Publisher, connection: Connection, settings: Settings
):
    queue = joined(connection, settings, "s1", "p1")
    culprit, task_a, task_b = TaskScope("task-c"), TaskScope("task-a"), TaskScope("task-b")
    # Task C publishes to an exchange that does not exist: the broker closes the channel and
    # drops what follows on it, unconfirmed. Tasks A and B publish right after it, as task
    # threads of one worker do; the client reads the broker's close at the next flush, or at a
    # publish if the close arrived before it (py-amqp drains pending frames on publish), and
    # then publishes that message again on a new channel.
    with acting_as(culprit):
        publisher._publish({"type": "x"}, "no-such-exchange", "")
    with acting_as(task_a):
        publisher.to_participant("s1", "p1", {"type": "a"})
    with acting_as(task_b):
        publisher.to_participant("s1", "p1", {"type": "b"})

    # A flushes first and reads the close (unless a publish did); B's flush must see it too.
    outcome = {name: flushed(publisher, scope) for name, scope in (("a", task_a), ("b", task_b), ("c", culprit))}
    delivered = {m["type"] for m in received(connection, queue)}
    assert isinstance(outcome["c"], PublishNotConfirmed)
    for name in ("a", "b"):
        # No silent loss: a flush that returned means the message is there.
        assert name in delivered or isinstance(outcome[name], PublishNotConfirmed), (name, outcome, delivered)
    # A message published after the close and read only by a flush was dropped: both raised then.
    assert delivered <= {"a", "b"}

    # The next task gets a new channel, and its message through.
    scope_d = TaskScope("task-d")
    with acting_as(scope_d):
        publisher.to_participant("s1", "p1", {"type": "d"})
    assert flushed(publisher, scope_d) is None
    assert [m["type"] for m in received(connection, queue)] == ["d"]


def test_a_nack_fails_the_task_that_published_it_and_no_other(
    publisher: Publisher, connection: Connection, settings: Settings
):
    queue = joined(connection, settings, "s1", "p1")
    # A queue that refuses every message: the broker nacks a publish routed to it.
    full = f"{settings.name_prefix}.full"
    Queue(full, durable=False, auto_delete=False, queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"})(
        connection.channel()
    ).declare()

    refused = Paused("task-a", lambda: publisher._publish({"type": "a"}, "", full), publisher.flush)
    innocent = Paused("task-b", lambda: publisher.to_participant("s1", "p1", {"type": "b"}), publisher.flush)

    # B flushes first (and reads A's nack): it must neither consume it nor fail for it.
    assert innocent.flush() is None
    assert isinstance(refused.flush(), PublishNotConfirmed)
    assert [m["type"] for m in received(connection, queue)] == ["b"]


def test_a_broadcast_to_a_closed_session_routes_nowhere_and_leaves_the_channel_open(
    publisher: Publisher, connection: Connection, settings: Settings
):
    live = joined(connection, settings, "live", "p1")
    joined(connection, settings, "closed", "p2")
    topology.delete_session_exchange(connection.channel(), settings, "closed")

    late = Paused("late", lambda: publisher.to_session("closed", {"type": "late"}), publisher.flush)
    chat = Paused("chat", lambda: publisher.to_session("live", {"type": "chat"}), publisher.flush)
    assert chat.flush() is None
    assert late.flush() is None
    assert [m["type"] for m in received(connection, live)] == ["chat"]


def test_events_outside_tasks_fail_only_the_outside_flush_once(
    publisher: Publisher, connection: Connection, settings: Settings
):
    queue = joined(connection, settings, "s1", "p1")
    culprit = TaskScope("task-c")
    with acting_as(culprit):
        publisher._publish({"type": "x"}, "no-such-exchange", "")
    # A Kurento event relayed on the event thread (no task scope) right after it.
    publisher.to_participant("s1", "p1", {"type": "event"})
    assert isinstance(flushed(publisher, culprit), PublishNotConfirmed)
    # The background loop's flush reports a dropped event once (it has no task to fail).
    try:
        publisher.flush()
        lost = False
    except PublishNotConfirmed:
        lost = True
    assert lost == ("event" not in {m["type"] for m in received(connection, queue)})
    publisher.to_participant("s1", "p1", {"type": "event2"})
    publisher.flush()
    assert [m["type"] for m in received(connection, queue)] == ["event2"]
