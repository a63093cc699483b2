"""The typed boundary between web and tasks: media_tasks.dispatch is the only way to enqueue, and
each of its methods takes exactly what its task function takes."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

from media_tasks.dispatch import TaskName, TaskQueue
from media_tasks.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]


def _parameters(function: object, skip: int) -> list[tuple[str, object]]:
    parameters = list(inspect.signature(function).parameters.values())[skip:]  # type: ignore[arg-type]
    return [(p.name, p.annotation) for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]


def test_every_task_has_one_dispatch_method_with_the_same_parameters():
    assert set(TASKS) == set(TaskName)
    for name, function in TASKS.items():
        method = getattr(TaskQueue, name.removeprefix("media."))
        # The task takes the running task first; the method takes self first.
        assert _parameters(method, 1) == _parameters(function, 1), name
        assert name == f"media.{function.__name__}"


def test_the_web_tier_sends_tasks_without_loading_the_media_side():
    code = (
        "import sys; from settings import Settings; from signaling_web import create_app; "
        "create_app(Settings(secret_key='k')); "
        "print(sorted(m for m in sys.modules if m.startswith(('media_tasks.', 'kurento'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env={"PATH": ""}
    ).stdout
    assert "media_tasks.dispatch" in loaded
    for worker_side in ("media_tasks.tasks", "media_tasks.negotiation", "media_tasks.session_lifecycle", "kurento"):
        assert f"'{worker_side}'" not in loaded, loaded


def test_queued_tasks_carry_ids_only_and_hide_the_sdp():
    sent: list[dict[str, object]] = []

    class RecordingCelery:
        conf = type("Conf", (), {"broker_connection_timeout": 3.0})()

        class producer_pool:  # noqa: N801 - stands for the attribute
            @staticmethod
            def acquire(block: bool) -> object:
                return type("Producer", (), {"release": lambda self: None})()

        def send_task(self, name: str, **options: object) -> None:
            sent.append({"name": name, **options})

    queue = TaskQueue(RecordingCelery(), next_root_id=lambda: "idem-root")  # type: ignore[arg-type]
    queue.process_offer("s1", "p1", "publish", "v=0 secret", "r1")
    queue.check_connection("s1", "p1", "publish", delay_s=4.0)
    offer, check = sent
    assert offer["name"] == "media.process_offer" and offer["root_id"] == "idem-root"
    # A blocked or silent broker makes the send give up (the web answers 503), never hang.
    assert offer["confirm_timeout"] == 3.0
    assert offer["kwargs"] == {
        "session_id": "s1",
        "participant_id": "p1",
        "stream": "publish",
        "sdp": "v=0 secret",
        "request_id": "r1",
    }
    assert "secret" not in str(offer["kwargsrepr"]) and "<hidden>" in str(offer["kwargsrepr"])
    assert check["countdown"] == 4.0
    assert check["kwargs"] == {"session_id": "s1", "participant_id": "p1", "stream": "publish"}
