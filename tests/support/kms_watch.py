"""Watching what a media server creates, as any Kurento client can: ServerManager events.

KMS raises `ObjectCreated` on its ServerManager for every object any client creates, so a test
can count how many MediaPipelines the service made, released ones included. That is what
"created exactly once" means; the pipelines alive afterwards (`getPipelines`) say nothing of
a loser that was created and released.
"""

from __future__ import annotations

import threading

import kurento
from kurento.objects import SERVER_MANAGER_ID


class PipelineCreations:
    def __init__(self, kms_url: str) -> None:
        self.client = kurento.KurentoClient(kms_url, request_timeout=10)
        self._lock = threading.Lock()
        self.created: list[str] = []
        self.client.subscribe(SERVER_MANAGER_ID, "ObjectCreated", self._on_created)

    def _on_created(self, data: dict) -> None:
        object_id = str(data.get("object", ""))
        if object_id.endswith(".MediaPipeline"):
            with self._lock:
                self.created.append(object_id)

    def pipelines(self) -> list[str]:
        """Every MediaPipeline created since the watch began, up to now."""
        self.client.server_manager.get_pipelines()  # KMS sends earlier events before this answer
        assert self.client.wait_events_dispatched(), "event callbacks did not run"
        with self._lock:
            return list(self.created)

    def close(self) -> None:
        self.client.close()
