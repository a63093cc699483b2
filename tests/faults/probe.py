"""One request straight to one web instance, timed: what a user sees during a fault."""

from __future__ import annotations

import time
import uuid

import requests

from tests.faults.callscript import ERROR_KEYS, Client


def probe(method: str, url: str, timeout: float = 60.0, **kwargs) -> tuple[int, float, dict]:
    """(status, seconds, body); status -1 when no answer came (the body names the exception)."""
    began = time.monotonic()
    try:
        response = requests.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        return -1, time.monotonic() - began, {"exception": repr(exc)}
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text[:200]}
    return response.status_code, time.monotonic() - began, body


def is_error_shape(status: int, body: dict) -> bool:
    return set(body) == ERROR_KEYS and body.get("code") == status


def chat_probe(base: str, client: Client, key: str | None = None) -> tuple[int, float, dict]:
    """A chat post of `client` to the instance at `base`, under `key` (a retry repeats it)."""
    return probe(
        "POST",
        f"{base}/api/v1/sessions/{client.sid}/messages",
        json={"payload": {"probe": key}},
        headers={**client.auth, "Idempotency-Key": key or uuid.uuid4().hex},
    )


def until_status(fn, status: int, timeout: float = 60.0, every: float = 0.2) -> tuple[float, tuple]:
    """Calls `fn()` until it answers `status`; returns (seconds it took, the last answer)."""
    began = time.monotonic()
    while True:
        answer = fn()
        if answer[0] == status:
            return time.monotonic() - began, answer
        assert time.monotonic() - began < timeout, f"still {answer} after {timeout} s"
        time.sleep(every)
