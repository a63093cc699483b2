"""A scripted stand-in of the service on a local http.server, for the SDK's request shaping,
error mapping and retries: it records every request and answers from a script."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from signaling_sdk import SignalingClient


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Scripted:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "answer"  # "drop": close the connection without answering; "hang": answer nothing until released


class FakeService:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()
        self.default = Scripted(200, {})
        self.release = threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                service.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
                step = service.script.popleft() if service.script else service.default
                if step.action == "drop":
                    self.close_connection = True
                    return
                if step.action == "hang":
                    service.release.wait(30)
                    self.close_connection = True
                    return
                raw = step.body if isinstance(step.body, bytes) else json.dumps(step.body).encode()
                self.send_response(step.status)
                content_type = "text/html" if isinstance(step.body, bytes) else "application/json"
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(raw)))
                for name, value in step.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _serve  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def answer(self, status: int = 200, body: Any = None, **headers: str) -> None:
        self.script.append(
            Scripted(status, {} if body is None else body, {k.replace("_", "-"): v for k, v in headers.items()})
        )

    def drop(self) -> None:
        self.script.append(Scripted(action="drop"))

    def hang(self) -> None:
        self.script.append(Scripted(action="hang"))

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service():
    fake = FakeService()
    yield fake
    fake.close()


@pytest.fixture
def client(service) -> SignalingClient:
    # No waiting between retries: the backoff's length is not what these tests are about.
    return SignalingClient(service.url, api_key="k1", timeout=5, retries=2, backoff_s=0)
