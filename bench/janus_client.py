"""Janus's REST API with the VideoRoom plugin as a benchmark client (bench/protocol.py).

One Janus session per participant, one VideoRoom handle, one long poll
`GET /janus/<session>?maxev=10` outstanding. Mapping of our steps: connect = create session +
attach videoroom; join = `join` (ptype publisher) until the `joined` event; offer = `publish`
with the same Chromium offer as jsep until the JSEP answer, then trickle the same candidates;
re-offer = `configure` with jsep; a join is announced to rooms created with `notify_joining`.
Janus has no REST chat, and its subscribers cannot attach to a feed whose ICE never completes
(signaling-only, no media), so this client is no `PeerClient`.
"""

from __future__ import annotations

import itertools
import time

from gevent.lock import Semaphore

from bench.polling import PollingClient
from bench.procstats import tree_cpu_s, tree_rss_mib
from bench.protocol import IdleNames
from signaling_cli.processes import ManagedProcess

_tx = itertools.count(1)


def _transaction() -> str:
    return f"t{next(_tx)}"


def _vr(event: dict) -> dict:
    return dict(event.get("plugindata", {}).get("data", {}))


class JanusParticipant(PollingClient):
    def __init__(self, base: str, name: str, room: JanusRoom | None = None) -> None:
        super().__init__(base, name, poll_timeout=60)
        self.base = base
        self.room = room
        self.session_id: int | None = None
        self.handle_id: int | None = None

    # --- plumbing -------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> dict:
        body = {**body, "transaction": _transaction()}
        reply = dict(self.cmd.call("POST", path, body))
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus error: {reply}")
        return reply

    def _poll(self) -> list[dict]:
        events = self.pollhttp.call("GET", f"/{self.session_id}?maxev=10")
        return [events] if isinstance(events, dict) else list(events or [])

    def poll_next(self) -> None:
        self.inbox.add([e for e in self._poll() if e.get("janus") != "keepalive"])

    def message(self, body: dict, jsep: dict | None = None) -> str:
        request = {"janus": "message", "body": body, "transaction": _transaction()}
        if jsep is not None:
            request["jsep"] = jsep
        reply = self.cmd.call("POST", f"/{self.session_id}/{self.handle_id}", request)
        if reply.get("janus") not in ("ack", "success"):
            raise RuntimeError(f"janus refused: {reply}")
        return str(request["transaction"])

    def request(self, body: dict) -> dict:
        """A synchronous plugin request (create room, list...): the answer is in the reply."""
        return _vr(self._post(f"/{self.session_id}/{self.handle_id}", {"janus": "message", "body": body}))

    def _until(self, tx: str, mark: int, started: float, done: str, timeout: float = 20.0) -> tuple[float, dict]:
        """Wait for the event of transaction `tx` that is `done` (a videoroom result or jsep)."""

        def completes(e: dict) -> bool:
            return e.get("transaction") == tx and (done in e or _vr(e).get("videoroom") == done or "error" in _vr(e))

        received, event = self.inbox.wait_for(completes, timeout, mark)
        if _vr(event).get("error") or (done == "jsep" and "jsep" not in event):
            raise RuntimeError(f"janus {done} failed: {event}")
        return (received - started) * 1000, event

    # --- the participant's steps ------------------------------------------------------------
    def connect(self) -> None:
        self.session_id = self._post("", {"janus": "create"})["data"]["id"]
        attach = {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        self.handle_id = self._post(f"/{self.session_id}", attach)["data"]["id"]

    def join(self, confirm: bool = True) -> float:
        """POST join until the `joined` event is read by the long poll: ms (Janus answers a
        join only through the poll, so there is no unconfirmed join)."""
        self.start_polling()
        mark, started = len(self.inbox), time.perf_counter()
        assert self.room is not None, "a client made by a JanusRoom joins"
        body = {"request": "join", "ptype": "publisher", "room": self.room.room_id(), "display": self.name}
        tx = self.message(body)
        return self._until(tx, mark, started, "joined")[0]

    def announces_my_join(self, event: dict) -> bool:
        return (_vr(event).get("joining") or {}).get("display") == self.name

    def _publish(self, request: str, sdp: str, timeout: float) -> float:
        mark, started = len(self.inbox), time.perf_counter()
        tx = self.message({"request": request, "audio": True, "video": True}, jsep={"type": "offer", "sdp": sdp})
        return self._until(tx, mark, started, "jsep", timeout)[0]

    def offer(self, sdp: str, candidates: list[dict] | None = None, timeout: float = 20.0) -> float:
        ms = self._publish("publish", sdp, timeout)
        if candidates:
            self.trickle(candidates)
        return ms

    def reoffer(self, sdp: str, timeout: float = 20.0) -> float:
        return self._publish("configure", sdp, timeout)

    def trickle(self, candidates: list[dict]) -> None:
        path = f"/{self.session_id}/{self.handle_id}"
        self._post(path, {"janus": "trickle", "candidates": candidates})
        self._post(path, {"janus": "trickle", "candidate": {"completed": True}})

    def enter_idle(self) -> None:
        self.session_id = self._post("", {"janus": "create"})["data"]["id"]
        self.cmd.close()

    def idle_poll(self, wait: float) -> None:
        self._poll()  # Janus holds a poll 30 s whatever the client asks

    def leave(self) -> None:
        try:
            self._post(f"/{self.session_id}", {"janus": "destroy"})
        except Exception:  # noqa: BLE001
            pass


class JanusRoom:
    """A VideoRoom created on its first join: a client that only holds an idle poll (a bare
    Janus session) leaves no room behind to weigh on Janus's memory."""

    def __init__(self, system: JanusSystem, capacity: int, announce_joins: bool) -> None:
        self.system, self.capacity, self.announce_joins = system, capacity, announce_joins
        self._id: int | None = None

    def room_id(self) -> int:
        with self.system.admin_lock:
            if self._id is None:
                self._id = self.system.create_room(self.capacity, self.announce_joins)
            return self._id

    def client(self, name: str) -> JanusParticipant:
        return JanusParticipant(self.system.base, name, self)


class JanusSystem:
    """A `janus` process (bench/janus_server.py) and an admin session that creates the rooms."""

    name = "janus"
    fresh_client_per_offer = True
    idle_names = IdleNames(entered="sessions_created", entered_s="create_s", process="janus")

    def __init__(self, base: str, proc: ManagedProcess) -> None:
        self.base = base
        self.poll_holder_pid = proc.pid
        self.admin = JanusParticipant(base, "admin")
        self.admin.connect()
        self.admin_lock = Semaphore()  # one connection: one room creation at a time

    def room(self, capacity: int, announce_joins: bool = False) -> JanusRoom:
        return JanusRoom(self, capacity, announce_joins)

    def create_room(self, capacity: int, announce_joins: bool) -> int:
        # Room for the publishers plus a margin: a left handle may still count a moment.
        body = {"request": "create", "publishers": capacity + 2, "notify_joining": announce_joins}
        data = self.admin.request(body | {"bitrate": 128000, "description": "bench"})
        if "room" not in data:
            raise RuntimeError(f"room create failed: {data}")
        return int(data["room"])

    def cpu_s(self) -> dict[str, float]:
        return {"janus": tree_cpu_s(self.poll_holder_pid)}

    def rss_mib(self) -> dict[str, float]:
        return {"janus": round(tree_rss_mib(self.poll_holder_pid), 1)}

    def close(self) -> None:
        self.admin.leave()
        self.admin.stop()
