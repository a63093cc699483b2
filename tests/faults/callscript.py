"""Scripted clients running a group call while a fault is injected, and the checks after it.

A `Client` is what a careful frontend does: it long-polls in its own thread with `after`,
retries a failed request on another web instance (connection refused or reset, timeout, 503)
with the same Idempotency-Key, and processes each `seq` once. Every request and message is
recorded with times, so a test can state precisely what was acknowledged and what arrived.

Definitions the checks use (docs/reliability.md repeats them):
- A request is *acknowledged* when the client got its 2xx answer (201/202). Only acknowledged
  requests are owed an effect; a client retries the others until they are acknowledged.
- A chat message is identified by content: (sender participant, number n, run tag) in its
  payload. Delivery is at-least-once; *no loss* means every acknowledged message reached every
  participant of its session (the sender included: broadcasts fan out to the whole session)
  at least once. Copies with the same identity that arrive again under a new `seq` are counted
  as *duplicates* and reported; a client dedupes them by that identity.
- An offer is answered *exactly once* when its request_id has one sdpAnswer in the client's
  stream (no dedupe applied).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from tests.conftest import read_fixture

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
SUBSCRIBE_SDP = read_fixture("chromium-subscribe.sdp")
PUBLISH_CANDIDATES = json.loads(read_fixture("chromium-publish.candidates.json"))
SUBSCRIBE_CANDIDATES = json.loads(read_fixture("chromium-subscribe.candidates.json"))
ERROR_KEYS = {"code", "status", "message", "errors"}
RETRY_STATUSES = {502, 503, 504}


class Unacknowledged(Exception):
    pass


@dataclass
class Stats:
    retries: int = 0
    connection_errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    error_bodies_bad: list = field(default_factory=list)  # 5xx answers not in the documented shape
    stale_idempotency: int = 0  # 409 "still being processed" that never resolved (key re-issued)
    slowest_request_s: float = 0.0


class Http:
    """Requests to any of several web instances, with failover and Idempotency-Key retries."""

    def __init__(self, bases: list[str], stats: Stats, deadline_s: float = 90.0) -> None:
        self.bases = list(bases)
        self.prefer = 0
        self.stats = stats
        self.deadline_s = deadline_s
        self.http = requests.Session()
        self.lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body=None,
        headers=None,
        params=None,
        timeout: float = 20.0,
        idempotent_post: bool = True,
        notes: dict | None = None,
    ) -> requests.Response:
        """`notes["rekeyed"]` becomes True when the request had to be sent again under a new key
        (its first attempt may have taken effect: the one way a client itself causes a repeat)."""
        headers = dict(headers or {})
        if method == "POST" and idempotent_post:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        began = time.monotonic()
        conflict_since = None
        while True:
            base = self.bases[self.prefer % len(self.bases)]
            try:
                started = time.monotonic()
                response = self.http.request(
                    method, base + path, json=json_body, headers=headers, params=params, timeout=timeout
                )
                self.stats.slowest_request_s = max(self.stats.slowest_request_s, time.monotonic() - started)
                self.stats.statuses[response.status_code] += 1
                if response.status_code < 500 and response.status_code != 409:
                    return response
                if response.status_code >= 500:
                    self._check_shape(response)
                    if response.status_code not in RETRY_STATUSES:
                        return response
                elif "still being processed" in response.text and "Idempotency-Key" in headers:
                    # The first attempt died with its instance; its claim never completes.
                    conflict_since = conflict_since or time.monotonic()
                    if time.monotonic() - conflict_since > 5.0:
                        self.stats.stale_idempotency += 1
                        headers["Idempotency-Key"] = uuid.uuid4().hex
                        if notes is not None:
                            notes["rekeyed"] = True
                        conflict_since = None
                else:
                    return response
            except requests.RequestException:
                self.stats.connection_errors += 1
                with self.lock:
                    self.prefer += 1  # try the next instance
            if time.monotonic() - began > self.deadline_s:
                raise Unacknowledged(f"{method} {path} not acknowledged within {self.deadline_s} s")
            self.stats.retries += 1
            time.sleep(0.2)

    def _check_shape(self, response: requests.Response) -> None:
        try:
            body = response.json()
            ok = set(body) == ERROR_KEYS and body["code"] == response.status_code and "Traceback" not in response.text
        except ValueError:
            ok = False
        if not ok:
            self.stats.error_bodies_bad.append((response.status_code, response.text[:300]))


class Client:
    def __init__(self, bases: list[str], session: dict, name: str, poll_wait: float = 5.0, poll_base: int = 0) -> None:
        self.stats = Stats()
        self.http = Http(bases, self.stats)
        self.http.prefer = poll_base
        self.poll_http = Http(bases, self.stats)
        self.poll_http.prefer = poll_base
        self.session = session
        self.name = name
        self.poll_wait = poll_wait
        self.after = 0
        self.seen_seqs: set[int] = set()
        self.inbox: list[tuple[float, dict]] = []  # (arrival monotonic time, message)
        self.offers: dict[str, tuple[str, float]] = {}  # request_id -> (stream, acknowledged at)
        self.sent: list[tuple[int, float]] = []  # (n, acknowledged at)
        self.rekeyed_chats: set[int] = set()  # n of chat posts sent again under a new Idempotency-Key
        self.poll_gaps: list[float] = []  # seconds between a failed poll and the next answered one
        self.last_answer_at = 0.0  # monotonic time the last poll was answered
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.participant_id = ""
        self.token = ""

    # -- requests -----------------------------------------------------------------------------
    @property
    def sid(self) -> str:
        return self.session["session_id"]

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def join(self) -> Client:
        response = self.http.request(
            "POST",
            f"/api/v1/sessions/{self.sid}/participants",
            json_body={"display_name": self.name, "join_token": self.session["join_token"]},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        self.participant_id, self.token = body["participant_id"], body["token"]
        return self

    def _post(self, path: str, body: dict, notes: dict | None = None) -> requests.Response:
        response = self.http.request(
            "POST", f"/api/v1/sessions/{self.sid}{path}", json_body=body, headers=self.auth, notes=notes
        )
        assert response.status_code in (201, 202), f"{path}: {response.status_code} {response.text}"
        return response

    def offer(self, stream: str = "publish") -> str:
        sdp = PUBLISH_SDP if stream == "publish" else SUBSCRIBE_SDP
        response = self._post(f"/participants/{self.participant_id}/offers", {"stream": stream, "sdp": sdp})
        request_id = response.json()["request_id"]
        self.offers[request_id] = (stream, time.monotonic())
        return request_id

    def trickle(self, stream: str = "publish") -> None:
        candidates = PUBLISH_CANDIDATES if stream == "publish" else SUBSCRIBE_CANDIDATES
        self._post(f"/participants/{self.participant_id}/candidates", {"stream": stream, "candidates": candidates})

    def chat(self, n: int, tag: str) -> None:
        notes: dict = {}
        self._post("/messages", {"payload": {"tag": tag, "from": self.participant_id, "n": n}}, notes)
        self.sent.append((n, time.monotonic()))
        if notes.get("rekeyed"):
            self.rekeyed_chats.add(n)

    def rejoin(self) -> None:
        """Fresh media after mediaServerLost: the client then publishes and subscribes again."""
        self._post(f"/participants/{self.participant_id}/rejoin", {})

    # -- the long poll ------------------------------------------------------------------------
    def start_polling(self) -> Client:
        self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()
        return self

    def pause_polling(self) -> None:
        self._paused.set()

    def resume_polling(self) -> None:
        self._paused.clear()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(self.poll_wait + 40)

    def _poll_loop(self) -> None:
        failed_at = None
        path = f"/api/v1/sessions/{self.sid}/participants/{self.participant_id}/messages"
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.05)
                continue
            base = self.poll_http.bases[self.poll_http.prefer % len(self.poll_http.bases)]
            try:
                response = self.poll_http.http.get(
                    base + path,
                    params={"after": self.after, "wait": self.poll_wait, "limit": 100},
                    headers=self.auth,
                    timeout=self.poll_wait + 25,
                )
            except requests.RequestException:
                self.stats.connection_errors += 1
                failed_at = failed_at or time.monotonic()
                self.poll_http.prefer += 1
                time.sleep(0.2)
                continue
            self.stats.statuses[response.status_code] += 1
            if response.status_code != 200:
                if response.status_code >= 500:
                    self.http._check_shape(response)
                failed_at = failed_at or time.monotonic()
                time.sleep(0.3)
                continue
            body = response.json()
            now = self.last_answer_at = time.monotonic()
            if failed_at is not None:
                self.poll_gaps.append(now - failed_at)
                failed_at = None
            with self.cond:
                for message in body["messages"]:
                    if message["seq"] in self.seen_seqs or message["seq"] <= self.after:
                        continue  # a repeat of something already processed: a client skips it
                    self.seen_seqs.add(message["seq"])
                    self.inbox.append((now, message))
                self.after = max(self.after, body["last_seq"])
                self.cond.notify_all()

    # -- reading what arrived ----------------------------------------------------------------
    def messages(self, type_: str | None = None) -> list[dict]:
        with self.cond:
            return [m for _t, m in self.inbox if type_ is None or m["type"] == type_]

    def wait_until(self, predicate, timeout: float, what: str = "") -> float:
        """Waits until predicate(self) holds; returns the monotonic time it first held."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.name}: {what or predicate} not within {timeout} s; "
                        f"got {[m['type'] for _t, m in self.inbox]}"
                    )
                self.cond.wait(min(remaining, 0.5))
        return time.monotonic()

    def chat_received(self, tag: str) -> Counter:
        """(sender, n) -> copies received, for chat messages of run `tag`."""
        return Counter(
            (m["payload"]["from"], m["payload"]["n"])
            for m in self.messages("message")
            if m.get("payload", {}).get("tag") == tag
        )

    def arrival_of(self, predicate) -> float | None:
        with self.cond:
            return next((t for t, m in self.inbox if predicate(m)), None)


class Call:
    """Sessions of participants that publish, subscribe, trickle and chat, checked afterwards."""

    def __init__(
        self,
        bases: list[str],
        sessions: int = 3,
        per_session: int = 3,
        poll_wait: float = 5.0,
        poll_bases: list[int] | None = None,
        on_created=None,
        api_key: str | None = None,
    ) -> None:
        """`on_created(sessions)` runs after the sessions exist and before anyone joins; `api_key`
        for a deployment with SIGNALING_API_KEYS."""
        self.bases = bases
        self.tag = uuid.uuid4().hex[:8]
        self.poll_wait = poll_wait
        self.sessions: list[dict] = []
        self.clients: list[Client] = []
        http = Http(bases, Stats())
        for s in range(sessions):
            response = http.request(
                "POST",
                "/api/v1/sessions",
                json_body={"name": f"fault-{s}", "max_participants": per_session + 2},
                headers={"X-API-Key": api_key} if api_key else None,
            )
            assert response.status_code == 201, response.text
            self.sessions.append(response.json())
        if on_created is not None:
            on_created(self.sessions)
        self.departed: list[Client] = []
        for s, session in enumerate(self.sessions):
            for p in range(per_session):
                index = s * per_session + p
                poll_base = poll_bases[index % len(poll_bases)] if poll_bases else index
                self.clients.append(Client(bases, session, f"s{s}p{p}", poll_wait, poll_base))
        self.pool = ThreadPoolExecutor(16)
        list(self.pool.map(lambda c: c.join().start_polling(), self.clients))
        self.next_n: dict[str, int] = {}

    def members(self, client: Client) -> list[Client]:
        return [c for c in self.clients if c.sid == client.sid]

    def senders(self, client: Client) -> list[Client]:
        """Everyone whose chat `client` is owed: the members, and those who left after sending."""
        return [c for c in [*self.clients, *self.departed] if c.sid == client.sid]

    def depart(self, client: Client) -> None:
        """The service removed `client` (it stopped polling): the checks expect it gone."""
        client._stop.set()
        self.clients.remove(client)
        self.departed.append(client)

    def connect_everyone(self) -> None:
        """Every participant publishes, then subscribes to every other one of its session;
        returns once every offer was answered."""
        self.publish_all()
        self.wait_published()
        self.subscribe_all()
        self.wait_answers()

    def publish_all(self) -> None:
        """Every participant publishes and trickles; returns once every publish offer was acknowledged."""

        def publish(c: Client) -> None:
            c.offer("publish")
            c.trickle("publish")

        list(self.pool.map(publish, self.clients))

    def subscribe_all(self) -> None:
        """Every participant subscribes to every other participant of its session."""

        def subscribe(pair) -> None:
            c, other = pair
            c.offer(other.participant_id)
            c.trickle(other.participant_id)

        pairs = [(c, o) for c in self.clients for o in self.members(c) if o is not c]
        list(self.pool.map(subscribe, pairs))

    def chat_round(self, count: int = 1) -> None:
        """Each participant sends `count` numbered broadcasts, concurrently with the others."""

        def send(c: Client) -> None:
            for _ in range(count):
                n = self.next_n.get(c.participant_id, 0)
                self.next_n[c.participant_id] = n + 1
                c.chat(n, self.tag)

        list(self.pool.map(send, self.clients))

    def expected_streams(self, client: Client) -> set[str]:
        """Streams that should have an endpoint now: subscriptions to departed publishers are gone."""
        gone = {c.participant_id for c in self.departed}
        return {stream for stream, _t in client.offers.values() if stream not in gone}

    def wait_answers(self, timeout: float = 60.0) -> None:
        for c in self.clients:
            ids = set(c.offers)
            c.wait_until(
                lambda cl, ids=ids: ids <= {m["request_id"] for m in cl.messages("sdpAnswer")},
                timeout,
                "an sdpAnswer for every acknowledged offer",
            )

    def wait_gathered(self, timeout: float = 60.0) -> None:
        """Every stream offered got its KMS events through: iceGatheringDone arrived for it."""
        for c in self.clients:
            streams = {stream for stream, _t in c.offers.values()}
            c.wait_until(
                lambda cl, streams=streams: streams <= {m["stream"] for m in cl.messages("iceGatheringDone")},
                timeout,
                "iceGatheringDone for every offered stream",
            )

    def wait_chat(self, timeout: float = 60.0) -> None:
        for c in self.clients:
            owed = {(o.participant_id, n) for o in self.senders(c) for n, _t in o.sent}
            c.wait_until(
                lambda cl, owed=owed: owed <= set(cl.chat_received(self.tag)), timeout, f"{len(owed)} chat messages"
            )

    def wait_published(self, timeout: float = 60.0) -> None:
        for c in self.clients:
            others = {o.participant_id for o in self.members(c) if o is not c}
            c.wait_until(
                lambda cl, others=others: others <= {m["participant_id"] for m in cl.messages("streamPublished")},
                timeout,
                "streamPublished of every other participant",
            )

    def stop(self) -> None:
        everyone = [*self.clients, *self.departed]
        for c in everyone:
            c._stop.set()
        for c in everyone:
            c.stop_polling()
        self.pool.shutdown(wait=False)

    # -- the checks --------------------------------------------------------------------------
    def check_delivery(self) -> dict:
        """No acknowledged chat message lost, every offer answered exactly once; returns counts."""
        duplicates = 0
        owed_total = 0
        for c in self.clients:
            received = c.chat_received(self.tag)
            owed = {(o.participant_id, n) for o in self.senders(c) for n, _t in o.sent}
            missing = owed - set(received)
            assert not missing, f"{c.name} lost {len(missing)} acknowledged messages: {sorted(missing)[:10]}"
            unexpected = set(received) - owed
            assert not unexpected, f"{c.name} got messages nobody had acknowledged: {sorted(unexpected)[:5]}"
            duplicates += sum(copies - 1 for copies in received.values())
            owed_total += len(owed)
            answers = Counter(m["request_id"] for m in c.messages("sdpAnswer"))
            for request_id in c.offers:
                assert answers[request_id] == 1, f"{c.name}: request {request_id} answered {answers[request_id]} times"
            assert set(answers) <= set(c.offers), f"{c.name}: answers for requests it never made"
            errors = c.messages("error")
            assert not errors, f"{c.name} got error messages: {errors}"
            seqs = [m["seq"] for _t, m in c.inbox]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), f"{c.name}: seq out of order or repeated"
        bad = [b for c in self.clients for b in c.stats.error_bodies_bad]
        assert not bad, f"5xx answers outside the documented error shape: {bad[:3]}"
        return {
            "chat_deliveries_owed": owed_total,
            "chat_duplicates_deduped": duplicates,
            "offers": sum(len(c.offers) for c in self.clients),
        }

    def duplicated_chats(self) -> set[tuple[str, int]]:
        """(sender, n) of every chat message some participant received more than once."""
        return {identity for c in self.clients for identity, copies in c.chat_received(self.tag).items() if copies > 1}

    def rekeyed_chats(self) -> set[tuple[str, int]]:
        """(sender, n) of every chat post the client had to send again under a new key."""
        return {(c.participant_id, n) for c in [*self.clients, *self.departed] for n in c.rekeyed_chats}

    def check_state(
        self, kms_urls: list[str], orphans_swept_within_s: float = 10.0, other_sessions: tuple[str, ...] = ()
    ) -> dict:
        """MongoDB and the media servers hold exactly what the sessions should have: the right
        participant counts, one Endpoint per offered stream with a live WebRtcEndpoint, each
        subscription connected to its publisher's endpoint, one pipeline per session, and nothing
        else (no leaked endpoint or pipeline)."""
        from models import PUBLISH, Endpoint, Participant, ParticipantState, Session

        expected_pipelines = set()
        expected_endpoints = set()
        subscriptions = 0
        for session in self.sessions:
            sid = session["session_id"]
            members = [c for c in self.clients if c.sid == sid]
            stored = Session.objects(id=sid).first()
            assert stored.participant_count == len(members), f"{sid}: count {stored.participant_count}"
            assert Participant.objects(session_id=sid, state=ParticipantState.JOINED).count() == len(members)
            for gone in (c for c in self.departed if c.sid == sid):
                assert Participant.objects(id=gone.participant_id).first().state == ParticipantState.LEFT
            assert stored.pipeline is not None, f"{sid} has no pipeline"
            expected_pipelines.add(stored.pipeline.id)
            endpoints = list(Endpoint.objects(session_id=sid))
            keys = sorted((e.participant_id, e.stream) for e in endpoints)
            want = sorted((c.participant_id, stream) for c in members for stream in self.expected_streams(c))
            assert keys == want, f"{sid}: endpoint documents {keys} != {want}"
            for e in endpoints:
                assert e.kurento is not None, f"no WebRtcEndpoint stored for {e.participant_id}/{e.stream}"
                assert e.kurento.id.split("/")[0] == stored.pipeline.id
                expected_endpoints.add(e.kurento.id)
            # Every subscription is fed by its publisher's current publish endpoint.
            publishing = {e.participant_id: e.kurento.id for e in endpoints if e.stream == PUBLISH}
            for e in endpoints:
                if e.stream != PUBLISH:
                    sources = {c["source"] for c in e.kurento.invoke("getSourceConnections")}
                    assert publishing.get(e.stream) in sources, (
                        f"{e.participant_id}'s subscription to {e.stream} is fed by {sources}, not its publisher"
                    )
                    subscriptions += 1
        for sid in other_sessions:  # sessions of the test outside the call: their pipelines are expected too
            other = Session.objects(id=sid).first()
            if other is not None and other.pipeline is not None:
                expected_pipelines.add(other.pipeline.id)
        live_pipelines, live_endpoints = _live_media(kms_urls)
        # A pipeline left on a media server that was given up for dead and then answered again
        # (paused, partitioned) is released by the sweep once it answers: wait for that too.
        deadline = time.monotonic() + orphans_swept_within_s
        while live_pipelines - expected_pipelines and time.monotonic() < deadline:
            time.sleep(0.5)
            live_pipelines, live_endpoints = _live_media(kms_urls)
        assert live_pipelines == expected_pipelines, (
            f"pipelines on the media servers {sorted(live_pipelines)} != stored {sorted(expected_pipelines)}"
        )
        # An endpoint a killed worker created and never stored is released by the orphan sweep
        # after its grace (the fault stacks run it every second with a 3 s grace): wait for it.
        first_leaked = live_endpoints - expected_endpoints
        deadline = time.monotonic() + orphans_swept_within_s
        while live_endpoints - expected_endpoints and time.monotonic() < deadline:
            time.sleep(0.5)
            live_endpoints = _live_media(kms_urls)[1]
        leaked, missing = live_endpoints - expected_endpoints, expected_endpoints - live_endpoints
        assert not leaked and not missing, f"leaked {sorted(leaked)}, missing {sorted(missing)}"
        return {
            "pipelines": len(live_pipelines),
            "endpoints": len(live_endpoints),
            "subscriptions_fed_by_their_publisher": subscriptions,
            "orphaned_endpoints_released_by_the_sweep": len(first_leaked),
        }


def rejoin_all(clients: list[Client]) -> None:
    """After mediaServerLost: every client rejoins and re-publishes at the same moment, then
    re-subscribes to each other client of its session as that one's new streamPublished arrives
    (as a frontend does). Returns once every new offer was acknowledged."""
    since = time.monotonic()
    barrier = threading.Barrier(len(clients))

    def rejoin_and_publish(c: Client) -> None:
        barrier.wait(30)
        c.rejoin()
        c.offer("publish")
        c.trickle("publish")

    def resubscribe(pair) -> None:
        c, other = pair
        c.wait_until(
            lambda cl: any(
                t > since and m["type"] == "streamPublished" and m["participant_id"] == other.participant_id
                for t, m in cl.inbox
            ),
            60,
            f"a new streamPublished of {other.name}",
        )
        c.offer(other.participant_id)
        c.trickle(other.participant_id)

    pairs = [(c, o) for c in clients for o in clients if o.sid == c.sid and o is not c]
    with ThreadPoolExecutor(len(clients) + len(pairs)) as pool:
        publishing = [pool.submit(rejoin_and_publish, c) for c in clients]
        subscribing = [pool.submit(resubscribe, pair) for pair in pairs]
        for future in [*publishing, *subscribing]:
            future.result()


def _live_media(kms_urls: list[str]) -> tuple[set[str], set[str]]:
    """Every pipeline on the media servers, and every child of those pipelines."""
    import kurento
    from kurento.objects import MediaObject

    pipelines, endpoints = set(), set()
    for url in kms_urls:
        client = kurento.KurentoClient(url, request_timeout=10)
        try:
            for pipeline_id in client.server_manager.get_pipelines():
                pipelines.add(pipeline_id)
                endpoints.update(MediaObject(client, pipeline_id).invoke("getChildren"))
        finally:
            client.close()
    return pipelines, endpoints


class Chatter(threading.Thread):
    """Chat rounds every 0.3 s while the fault runs: acknowledged messages are owed to everyone."""

    def __init__(self, call: Call) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.call.chat_round(1)
                time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.errors.append(exc)

    def stop(self) -> None:
        self.stopping.set()
        self.join(120)
        assert not self.errors, self.errors
