"""A task that runs again, or is enqueued again under the same Idempotency-Key, publishes its
messages under the ids of its first run, so participants' outboxes drop the copies."""

from __future__ import annotations

from flask import Flask, g

from messaging.rerun_identity import IDEMPOTENT_ROOT, message_id, publishing_for_task, task_seed
from signaling_web.idempotency import next_root_id


def _ids_of_a_run(task_id: str, bodies: list[str]) -> list[str]:
    with publishing_for_task(task_id):
        return [message_id("signaling.session.s1", "", body) for body in bodies]


def test_a_rerun_reproduces_the_ids_of_what_it_publishes_again():
    first = _ids_of_a_run("task-1", ['{"n":1}', '{"n":2}'])
    again = _ids_of_a_run("task-1", ['{"n":1}', '{"n":2}', '{"n":3}'])
    assert again[:2] == first and len(set(again)) == 3
    # Something else published in the same place, or by another task, is another message.
    assert _ids_of_a_run("task-1", ['{"n":9}'])[0] != first[0]
    assert _ids_of_a_run("task-2", ['{"n":1}'])[0] != first[0]


def test_outside_a_task_every_message_is_new():
    assert message_id("x", "", "{}") != message_id("x", "", "{}")


def test_a_request_repeated_under_its_key_enqueues_tasks_with_the_same_root():
    app = Flask(__name__)

    def enqueued_roots(key: str | None) -> list[str | None]:
        with app.test_request_context("/"):
            if key is not None:
                g.idempotency_key = key
            return [next_root_id(), next_root_id()]

    first = enqueued_roots("scoped-key")
    assert first == enqueued_roots("scoped-key") and first[0] != first[1]
    assert all(root.startswith(IDEMPOTENT_ROOT) for root in first)
    assert enqueued_roots("another-key") != first
    assert enqueued_roots(None) == [None, None]  # no key: Celery's own ids


def _seed(id: str, root_id: str, parent_id: str | None = None) -> str:
    return task_seed(id, root_id, parent_id)


def test_what_a_task_derives_its_message_ids_from():
    root = IDEMPOTENT_ROOT + "ab" * 16
    # Enqueued by the web tier under a key: the key's root, whichever task carries it.
    assert _seed(id="task-1", root_id=root) == _seed(id="task-2", root_id=root) == root
    # Without a key (its own root), or spawned by another task: its own id, kept by retries.
    assert _seed(id="task-1", root_id="task-1") == "task-1"
    assert _seed(id="task-3", root_id=root, parent_id="task-1") == "task-3"
