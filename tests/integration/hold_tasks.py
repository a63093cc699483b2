"""A test-only task that holds its worker thread until the test releases it.

Never part of the product: tests/integration/test_worker_fairness.py starts its workers with
`-I tests.integration.hold_tasks`. Each run leaves a file named `<task id>.<worker node name>`
in the test's directory, so the test counts the tasks each worker started.
"""

from __future__ import annotations

import time
from pathlib import Path

from media_tasks.app import app

HOLD_LIMIT_S = 60.0


@app.task(name="test.hold", bind=True)
def hold(self, session_id: str, marker_dir: str) -> None:
    Path(marker_dir, f"{self.request.id}.{self.request.hostname}").touch()
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not Path(marker_dir, "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
