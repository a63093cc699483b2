"""Our REST contract as a benchmark client (bench/protocol.py): many cheap participants in one
gevent process, each with one long poll (`GET …/messages?after=&wait=`) in its own greenlet."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from bench.counting import Counts
from bench.http import Http
from bench.inbox import Predicate
from bench.polling import PollingClient
from bench.procstats import broker_processes, tiers_cpu_s, tiers_rss
from bench.protocol import IdleNames, PeerClient
from bench.stack import BENCH_API_KEY
from signaling_cli.processes import ManagedProcess

POLL_WAIT_S = 20


class Service:
    """Session-level calls (no participant token)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = Http(base + "/api/v1")
        self._key = {"X-API-Key": BENCH_API_KEY}

    def create_session(self, max_participants: int = 16, name: str = "bench") -> dict:
        body = {"name": name, "max_participants": max_participants}
        return dict(self.http.call("POST", "/sessions", body, headers=self._key))

    def close_session(self, session_id: str) -> None:
        """DELETE: everyone left gets sessionClosed and the pipeline is released."""
        self.http.call("DELETE", f"/sessions/{session_id}", headers=self._key)

    def mint_token(self, session_id: str, role: str = "publisher") -> str | None:
        """A single-use join token (issue 14's backend flow); None where the service has no such route."""
        try:
            minted = self.http.call("POST", f"/sessions/{session_id}/tokens", {"role": role}, headers=self._key)
        except Exception:  # noqa: BLE001 - an older service: the figure is left out, not failed
            return None
        return str(minted["join_token"])


class Participant(PollingClient):
    def __init__(self, base: str, session: dict, name: str) -> None:
        super().__init__(base + "/api/v1", name, poll_timeout=POLL_WAIT_S + 30)
        self.base = base
        self.session = session
        self.participant_id: str | None = None
        self.token: str | None = None
        self.after = 0
        self.delivering_polls = 0  # polls that returned at least one message (bench/counting.py)

    @property
    def _path(self) -> str:
        return f"/sessions/{self.session['session_id']}/participants/{self.participant_id}"

    @property
    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    # --- the long poll ------------------------------------------------------------------------
    def poll_once(self, wait: float) -> list[dict]:
        body = self.pollhttp.call(
            "GET", f"{self._path}/messages?after={self.after}&wait={wait}&limit=200", headers=self._auth
        )
        self.after = body["last_seq"]
        self.delivering_polls += bool(body["messages"])
        self.inbox.add(body["messages"])
        return list(body["messages"])

    def poll_next(self) -> None:
        self.poll_once(POLL_WAIT_S)

    def _await(self, predicate: Predicate, timeout: float, start: int = 0) -> tuple[float, dict]:
        """From the running long poll; without one, short polls in this greenlet (no poll is left
        waiting on the web tier afterwards, which the memory figure must not count)."""
        if self._poller is not None:
            return self.inbox.wait_for(predicate, timeout, start)
        deadline = time.monotonic() + timeout
        while (found := self.inbox.find(predicate, start)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no matching message within {timeout} s")
            self.poll_once(1)
        return found

    # --- the participant's steps ------------------------------------------------------------
    def connect(self) -> None:
        self.cmd.connect()

    def join(self, confirm: bool = True) -> float:
        """POST join; with confirm, until the participant's own participantJoined arrives: ms."""
        started = time.perf_counter()
        body = self.cmd.call(
            "POST",
            f"/sessions/{self.session['session_id']}/participants",
            {"display_name": self.name, "join_token": self.session["join_token"]},
        )
        self.participant_id, self.token = body["participant_id"], body["token"]
        if not confirm:
            return (time.perf_counter() - started) * 1000
        self.start_polling()
        received, _ = self.inbox.wait_for(self.announces_my_join)
        return (received - started) * 1000

    def announces_my_join(self, message: dict) -> bool:
        return message["type"] == "participantJoined" and message.get("participant_id") == self.participant_id

    def post_offer(self, stream: str, sdp: str) -> str:
        body = self.cmd.call("POST", f"{self._path}/offers", {"stream": stream, "sdp": sdp}, headers=self._auth)
        return str(body["request_id"])

    def post_candidates(self, stream: str, candidates: list[dict]) -> None:
        body = {"stream": stream, "candidates": candidates}
        self.cmd.call("POST", f"{self._path}/candidates", body, headers=self._auth)

    def _negotiate(self, stream: str, sdp: str, candidates: list[dict] | None, timeout: float) -> float:
        """POST the offer (then trickle) until the sdpAnswer for it is read: ms."""
        started = time.perf_counter()
        request_id = self.post_offer(stream, sdp)
        if candidates:
            self.post_candidates(stream, candidates)
        received, message = self._await(
            lambda m: m.get("request_id") == request_id and m["type"] in ("sdpAnswer", "error"), timeout
        )
        if message["type"] == "error":
            raise RuntimeError(f"offer failed: {message}")
        return (received - started) * 1000

    def offer(self, sdp: str, candidates: list[dict] | None = None, timeout: float = 20.0) -> float:
        return self._negotiate("publish", sdp, candidates, timeout)

    def reoffer(self, sdp: str, timeout: float = 20.0) -> float:
        return self._negotiate("publish", sdp, None, timeout)

    def subscribe(self, publisher: PeerClient, sdp: str, candidates: list[dict], timeout: float = 20.0) -> float:
        assert isinstance(publisher, Participant) and publisher.participant_id
        return self._negotiate(publisher.participant_id, sdp, candidates, timeout)

    def send(self, payload: dict, to: PeerClient | None = None) -> None:
        body = {"payload": payload} | ({"to": to.participant_id} if isinstance(to, Participant) else {})
        self.cmd.call("POST", f"/sessions/{self.session['session_id']}/messages", body, headers=self._auth)

    def carries(self, message: dict, payload: dict) -> bool:
        return message["type"] == "message" and message.get("payload") == payload

    def drain(self) -> None:
        self.poll_once(0)

    def enter_idle(self) -> None:
        self.join(confirm=False)
        self.cmd.close()  # only the poll connection stays open

    def idle_poll(self, wait: float) -> None:
        self.poll_once(wait)

    def leave(self) -> None:
        try:
            self.cmd.call("DELETE", self._path, headers=self._auth)
        except Exception:  # noqa: BLE001
            pass


class OurRoom:
    def __init__(self, base: str, session: dict) -> None:
        self.base, self.session = base, session

    def client(self, name: str) -> Participant:
        return Participant(self.base, self.session, name)


class OurSystem:
    """Our deployment (bench/stack.py): web, workers, emulator, nx-27017 and RabbitMQ."""

    name = "ours"
    fresh_client_per_offer = False
    idle_names = IdleNames(entered="participants_joined", entered_s="join_s", process="web")

    def __init__(self, base: str, procs: dict[str, ManagedProcess]) -> None:
        self.base, self.procs = base, procs
        self.poll_holder_pid = procs["web"].pid
        self.service = Service(base)
        web = procs["web"].extra
        self.counts: Counts | None = web.get("counts")
        broker_port = urlsplit(web["env"]["RABBITMQ_URL"]).port if "env" in web else None
        self._beams = broker_processes(broker_port or 5672)

    def room(self, capacity: int, announce_joins: bool = False) -> OurRoom:
        # Every join is announced to the session; `announce_joins` is Janus's opt-in.
        return OurRoom(self.base, self.service.create_session(max_participants=max(capacity, 2)))

    def cpu_s(self) -> dict[str, float]:
        return tiers_cpu_s(self.procs, self._beams)

    def rss_mib(self) -> dict[str, float]:
        return tiers_rss(self.procs)

    def close(self) -> None:
        self.service.http.close()
