"""A test-only task that kills the worker process running it, every time.

Never part of the product: the fault tests start their workers with
`-I tests.faults.poison_tasks`, then publish `test.poison` on a normal session's shard. The
SIGKILL takes the whole worker (threads pool: one process), as a segfault or an OOM kill
would, so the broker sees the delivery come back unacknowledged.
"""

from __future__ import annotations

import logging
import os
import signal

from media_tasks.app import app

log = logging.getLogger(__name__)


@app.task(name="test.poison", bind=True)
def poison(self, session_id: str) -> None:
    log.error(
        "poison task %s for session %s: killing worker pid %s (delivery %s)",
        self.request.id,
        session_id,
        os.getpid(),
        (self.request.delivery_info or {}).get("redelivered"),
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)
