"""A Janus REST client with the same shape as our participant client (bench/client.py).

One Janus session per participant, one VideoRoom handle, one long poll
`GET /janus/<session>?maxev=10` outstanding, events handed to waiters with their arrival time.
"""

from __future__ import annotations

import itertools
import time

import gevent
from gevent.event import Event

from bench.http import Http

_tx = itertools.count(1)


def _transaction() -> str:
    return f"t{next(_tx)}"


class JanusParticipant:
    def __init__(self, base: str, name: str) -> None:
        self.base = base
        self.name = name
        self.cmd = Http(base)
        self.pollhttp = Http(base, timeout=60)
        self.session_id: int | None = None
        self.handle_id: int | None = None
        self.feed_id: int | None = None
        self.inbox: list[tuple[float, dict]] = []
        self._changed = Event()
        self._poller: gevent.Greenlet | None = None
        self.errors = 0

    # --- plumbing -------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> dict:
        body = {**body, "transaction": _transaction()}
        reply = self.cmd.call("POST", path, body)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus error: {reply}")
        return reply

    def _poll_loop(self) -> None:
        while True:
            try:
                events = self.pollhttp.call("GET", f"/{self.session_id}?maxev=10")
            except Exception:  # noqa: BLE001 - count and go on, like a browser would
                self.errors += 1
                gevent.sleep(0.1)
                continue
            now = time.perf_counter()
            if isinstance(events, dict):
                events = [events]
            for event in events or []:
                if event.get("janus") != "keepalive":
                    self.inbox.append((now, event))
            self._changed.set()
            self._changed = Event()

    def wait_for(self, predicate, timeout: float = 20.0, start: int = 0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for received, event in self.inbox[seen:]:
                if predicate(event):
                    return received, event
            seen = len(self.inbox)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no matching Janus event within {timeout} s")
            self._changed.wait(remaining)

    # --- the participant's steps ------------------------------------------------------------
    def connect(self) -> None:
        self.session_id = self._post("", {"janus": "create"})["data"]["id"]
        self.handle_id = self.attach()
        self._poller = gevent.spawn(self._poll_loop)

    def attach(self) -> int:
        return self._post(f"/{self.session_id}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"]["id"]

    def message(self, body: dict, jsep: dict | None = None, handle: int | None = None) -> str:
        request = {"janus": "message", "body": body, "transaction": _transaction()}
        if jsep is not None:
            request["jsep"] = jsep
        reply = self.cmd.call("POST", f"/{self.session_id}/{handle or self.handle_id}", request)
        if reply.get("janus") not in ("ack", "success"):
            raise RuntimeError(f"janus refused: {reply}")
        return request["transaction"]

    def request(self, body: dict, handle: int | None = None) -> dict:
        """A synchronous plugin request (create room, list...): the answer is in the reply."""
        reply = self._post(f"/{self.session_id}/{handle or self.handle_id}", {"janus": "message", "body": body})
        return reply.get("plugindata", {}).get("data", {})

    def join(self, room: int) -> float:
        """POST join until the `joined` event is read by the long poll: ms."""
        mark = len(self.inbox)
        started = time.perf_counter()
        tx = self.message({"request": "join", "ptype": "publisher", "room": room, "display": self.name})
        received, event = self.wait_for(
            lambda e: e.get("transaction") == tx and _vr(e).get("videoroom") in ("joined", "event"), start=mark
        )
        if _vr(event).get("error"):
            raise RuntimeError(f"join failed: {event}")
        self.feed_id = _vr(event).get("id")
        return (received - started) * 1000

    def publish(self, sdp: str, configure: bool = False) -> float:
        """POST publish with the offer until the JSEP answer is read by the long poll: ms."""
        mark = len(self.inbox)
        started = time.perf_counter()
        tx = self.message(
            {"request": "configure" if configure else "publish", "audio": True, "video": True},
            jsep={"type": "offer", "sdp": sdp},
        )
        received, event = self.wait_for(
            lambda e: e.get("transaction") == tx and ("jsep" in e or _vr(e).get("error")), start=mark
        )
        if "jsep" not in event:
            raise RuntimeError(f"publish failed: {event}")
        return (received - started) * 1000

    def trickle(self, candidates: list[dict], handle: int | None = None) -> None:
        self._post(f"/{self.session_id}/{handle or self.handle_id}", {"janus": "trickle", "candidates": candidates})
        self._post(
            f"/{self.session_id}/{handle or self.handle_id}", {"janus": "trickle", "candidate": {"completed": True}}
        )

    def subscribe(self, room: int, feed: int) -> float:
        """A subscriber handle joins a feed until Janus's SDP offer is read by the long poll: ms."""
        handle = self.attach()
        mark = len(self.inbox)
        started = time.perf_counter()
        tx = self.message(
            {"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]}, handle=handle
        )
        received, event = self.wait_for(
            lambda e: e.get("transaction") == tx and ("jsep" in e or _vr(e).get("error")), start=mark
        )
        if "jsep" not in event:
            raise RuntimeError(f"subscribe failed: {event}")
        return (received - started) * 1000

    def leave(self) -> None:
        try:
            self._post(f"/{self.session_id}", {"janus": "destroy"})
        except Exception:  # noqa: BLE001
            pass

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.kill(block=False)
        self.cmd.close()
        self.pollhttp.close()


def _vr(event: dict) -> dict:
    return event.get("plugindata", {}).get("data", {})


def create_room(admin: JanusParticipant, publishers: int = 64, notify_joining: bool = False) -> int:
    data = admin.request(
        {
            "request": "create",
            "publishers": publishers,
            "notify_joining": notify_joining,
            "bitrate": 128000,
            "description": "bench",
        }
    )
    if "room" not in data:
        raise RuntimeError(f"room create failed: {data}")
    return data["room"]
