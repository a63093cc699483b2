"""Our REST contract, as many cheap participants in one gevent process.

Each participant keeps one long poll (`GET …/messages?after=&wait=`) outstanding in its own
greenlet and stamps every message with its arrival time (perf_counter), so a step can be timed
from the moment its POST left until the message that completes it was read by the poll.
"""

from __future__ import annotations

import time

import gevent
from gevent.event import Event

from bench.http import Http

POLL_WAIT_S = 20


class Service:
    """Session-level calls (no participant token)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = Http(base + "/api/v1")

    def create_session(self, max_participants: int = 16, name: str = "bench") -> dict:
        return self.http.call("POST", "/sessions", {"name": name, "max_participants": max_participants})


class Participant:
    def __init__(self, base: str, session: dict, name: str) -> None:
        self.base = base
        self.session = session
        self.name = name
        self.cmd = Http(base + "/api/v1")
        self.pollhttp = Http(base + "/api/v1", timeout=POLL_WAIT_S + 30)
        self.participant_id: str | None = None
        self.token: str | None = None
        self.after = 0
        self.inbox: list[tuple[float, dict]] = []
        self._changed = Event()
        self._poller: gevent.Greenlet | None = None
        self.poll_wait = POLL_WAIT_S
        self.errors = 0

    @property
    def _path(self) -> str:
        return f"/sessions/{self.session['session_id']}/participants/{self.participant_id}"

    @property
    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    # --- the long poll ------------------------------------------------------------------------
    def start_polling(self) -> None:
        self._poller = gevent.spawn(self._poll_loop)

    def poll_once(self, wait: float) -> list[dict]:
        body = self.pollhttp.call(
            "GET", f"{self._path}/messages?after={self.after}&wait={wait}&limit=200", headers=self._auth
        )
        now = time.perf_counter()
        self.after = body["last_seq"]
        for message in body["messages"]:
            self.inbox.append((now, message))
        if body["messages"]:
            self._changed.set()
            self._changed = Event()
        return body["messages"]

    def _poll_loop(self) -> None:
        while True:
            try:
                self.poll_once(self.poll_wait)
            except Exception:  # noqa: BLE001 - count and retry, like a browser would
                self.errors += 1
                gevent.sleep(0.1)

    def wait_for(self, predicate, timeout: float = 20.0, start: int = 0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for received, message in self.inbox[seen:]:
                if predicate(message):
                    return received, message
            seen = len(self.inbox)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no matching message within {timeout} s")
            self._changed.wait(remaining)

    # --- the participant's steps ------------------------------------------------------------
    def join(self, poll: bool = True) -> float:
        """POST join; with poll, until the participant's own participantJoined arrives: ms."""
        started = time.perf_counter()
        body = self.cmd.call(
            "POST",
            f"/sessions/{self.session['session_id']}/participants",
            {"display_name": self.name, "join_token": self.session["join_token"]},
        )
        self.participant_id, self.token = body["participant_id"], body["token"]
        self.initial_participants = body.get("participants", [])
        if not poll:
            return (time.perf_counter() - started) * 1000
        self.start_polling()
        received, _ = self.wait_for(
            lambda m: m["type"] == "participantJoined" and m.get("participant_id") == self.participant_id
        )
        return (received - started) * 1000

    def offer(
        self, sdp: str, stream: str = "publish", candidates: list[dict] | None = None, timeout: float = 20.0
    ) -> float:
        """POST the offer (then trickle) until the sdpAnswer for it is read by the long poll: ms."""
        started = time.perf_counter()
        request_id = self.cmd.call("POST", f"{self._path}/offers", {"stream": stream, "sdp": sdp}, headers=self._auth)[
            "request_id"
        ]
        if candidates:
            self.cmd.call(
                "POST", f"{self._path}/candidates", {"stream": stream, "candidates": candidates}, headers=self._auth
            )
        received, message = self.wait_for(
            lambda m: m.get("request_id") == request_id and m["type"] in ("sdpAnswer", "error"), timeout=timeout
        )
        if message["type"] == "error":
            raise RuntimeError(f"offer failed: {message}")
        return (received - started) * 1000

    def send(self, payload: dict, to: str | None = None) -> None:
        body = {"payload": payload} | ({"to": to} if to else {})
        self.cmd.call("POST", f"/sessions/{self.session['session_id']}/messages", body, headers=self._auth)

    def leave(self) -> None:
        try:
            self.cmd.call("DELETE", self._path, headers=self._auth)
        except Exception:  # noqa: BLE001
            pass

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.kill(block=False)
        self.cmd.close()
        self.pollhttp.close()
