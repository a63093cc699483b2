"""One settings object for every tier, read from the environment in one place.

Each process builds its `Settings` once, at its entry point (`signaling_web.wsgi`, the Celery
entry point `media_tasks.app`, the `signaling` command), and passes it down: nothing reads the
environment at import, and two apps with different settings can live in one process.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

VAR_DIR = Path(__file__).resolve().parent / "var"


@dataclass(frozen=True)
class Settings:
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    """Broker for Celery tasks and for delivery to participants (RABBITMQ_URL)."""
    mongodb_uri: str = "mongodb://127.0.0.1:27017/signaling"
    """All session state (MONGODB_URI); production needs a replica set."""
    kms_urls: tuple[str, ...] = ("ws://127.0.0.1:8888/kurento",)
    """Kurento media servers, comma separated (KMS_URLS). With KMS_DISCOVERY_DNS: these (none
    unless given) come first, then the discovered ones (media_tasks.kms_discovery.media_servers)."""
    kms_discovery_dns: str = ""
    """`host[:port][/path]` whose A records are media servers, ws://<ip>:<port>/<path> each (port 8888 and
    path kurento by default), e.g. the KMS StatefulSet's headless Service (KMS_DISCOVERY_DNS); "" = off."""
    kms_discovery_interval_s: float = 5.0
    """How often KMS_DISCOVERY_DNS is resolved again (KMS_DISCOVERY_INTERVAL_S)."""
    api_keys: tuple[str, ...] = ()
    """Keys allowed to create and delete sessions (SIGNALING_API_KEYS); empty = open creation."""
    secret_key: str = ""
    """Signs participant tokens (SECRET_KEY); generated and kept under ./var/ in dev."""
    name_prefix: str = "signaling"
    """Prefix of every queue and exchange name (SIGNALING_PREFIX); tests isolate runs with it."""
    shards: int = 8
    """Number of durable task queues sessions are hashed onto (SHARDS)."""
    shard_queue_type: str = "quorum"
    """"quorum" (replicated, confirmed) or "classic" for brokers without quorum queues (SHARD_QUEUE_TYPE)."""
    task_start_limit: int = 3
    """Starts of one task that never finished (it kills its worker) before it is dead-lettered (TASK_START_LIMIT)."""
    task_max_retries: int = 5
    """Retries (with backoff, 0 to 5 s apart) of a task whose media server, broker or database is away
    before it fails and the client of an offer gets `error` 503 (TASK_MAX_RETRIES)."""
    task_delivery_limit: int = 20
    """The broker's backstop: deliveries of one task before RabbitMQ dead-letters it (TASK_DELIVERY_LIMIT)."""
    token_ttl_s: int = 24 * 3600
    """Lifetime of participant tokens in seconds (TOKEN_TTL_S)."""
    default_max_participants: int = 16
    """Session size when the creator does not say (DEFAULT_MAX_PARTICIPANTS)."""
    max_participants_limit: int = 256
    """Largest session a creator may ask for (MAX_PARTICIPANTS_LIMIT)."""
    max_sdp_bytes: int = 64 * 1024
    """Largest accepted SDP offer (MAX_SDP_BYTES)."""
    max_candidate_bytes: int = 1024
    """Largest accepted ICE candidate string (MAX_CANDIDATE_BYTES)."""
    max_media_sections: int = 32
    """Most m-lines an SDP offer may have; more is refused with 422 (MAX_MEDIA_SECTIONS)."""
    max_candidates_per_request: int = 100
    """Most ICE candidates in one candidates request; more is refused with 422 (MAX_CANDIDATES_PER_REQUEST)."""
    max_candidates_per_stream: int = 200
    """Most ICE candidates kept waiting for one stream's endpoint before its offer is processed; later ones
    are dropped and the client gets `error` 413 (MAX_CANDIDATES_PER_STREAM)."""
    max_payload_bytes: int = 16 * 1024
    """Largest message payload, as JSON (MAX_PAYLOAD_BYTES)."""
    max_body_bytes: int = 256 * 1024
    """Largest HTTP request body (MAX_BODY_BYTES)."""
    max_poll_wait_s: float = 30.0
    """Longest long poll a client may ask for (MAX_POLL_WAIT_S)."""
    poll_handover_s: float = 1.0
    """How long a web process keeps a participant's poll lease (and its queue consumer) after a delivery,
    so that the next poll, usually on the same keep-alive connection, costs no lease write and no broker
    round trip (POLL_HANDOVER_S). A poll reaching another instance meanwhile waits up to this long for new
    messages; 0 turns keeping off, for load balancers that spread one client's requests over instances."""
    delivery_connections: int = 4
    """Broker connections a web process shares among all its waiting long polls (DELIVERY_CONNECTIONS)."""
    participant_queue_expires_s: int = 300
    """An unused participant queue is deleted by RabbitMQ after this long (PARTICIPANT_QUEUE_EXPIRES_S)."""
    participant_queue_max_length: int = 10000
    """Guard against a participant that never polls (PARTICIPANT_QUEUE_MAX_LENGTH); beyond it the oldest
    messages are dropped and the client gets `messagesDropped {count}` (messaging.overflow)."""
    participant_queue_max_bytes: int = 64 * 1024 * 1024
    """The same guard in bytes of message bodies (PARTICIPANT_QUEUE_MAX_BYTES)."""
    participant_timeout_s: int = 60
    """A participant that has not polled for this long is removed (PARTICIPANT_TIMEOUT_S)."""
    connection_debounce_s: float = 4.0
    """How long a failed media connection may take to recover before the client is told (CONNECTION_DEBOUNCE_S)."""
    kms_health_interval_s: float = 0.5
    """How often the health monitor pings every media server (KMS_HEALTH_INTERVAL_S)."""
    orphan_sweep_s: float = 10.0
    """How often the leading worker looks for endpoints no record names (ORPHAN_SWEEP_S)."""
    orphan_grace_s: float = 30.0
    """How long an endpoint may stay unnamed by any record before it is released as orphaned (ORPHAN_GRACE_S)."""
    empty_session_timeout_s: int = 300
    """A session with no joined participant for this long (from its creation, or since its last participant
    left) is closed as if deleted (EMPTY_SESSION_TIMEOUT_S)."""
    idempotency_ttl_s: int = 24 * 3600
    """How long an Idempotency-Key's stored response is replayed before the record is deleted (IDEMPOTENCY_TTL_S)."""
    retention_s: int = 24 * 3600
    """How long the records of left participants (with their outbox), closed sessions and task starts are kept
    before they are deleted (RETENTION_S)."""
    lifetime_sweep_s: float = 60.0
    """How often the leading worker deletes what outlived its lifetime and closes empty sessions (LIFETIME_SWEEP_S)."""
    kms_request_timeout_s: float = 10.0
    """Timeout of one JSON-RPC request to a media server (KMS_REQUEST_TIMEOUT_S)."""
    broker_heartbeat_s: int = 30
    """AMQP heartbeat of every broker connection (workers, web publishes and long-poll consumers): a peer silent
    for two of these is dropped by both sides, so a lost host's consumer and its unacknowledged messages are
    given back within about a minute instead of TCP's 15 (BROKER_HEARTBEAT_S); 0 = off."""
    task_publish_timeout_s: float = 2.0
    """How long enqueueing a task waits for the broker's confirm, and for a new connection's handshake, per
    attempt; a request whose task could not be enqueued (broker blocked by an alarm, or unreachable without a
    reset) answers 503 within about 4 x this (TASK_PUBLISH_TIMEOUT_S)."""
    mongodb_server_selection_timeout_s: float = 5.0
    """How long a database operation waits for a usable MongoDB server before the request answers 503
    (MONGODB_SERVER_SELECTION_TIMEOUT_S)."""
    mongodb_socket_timeout_s: float = 10.0
    """How long one database operation may wait for MongoDB's answer on an open connection (a paused or
    partitioned server) before the request answers 503 (MONGODB_SOCKET_TIMEOUT_S)."""
    token_leeway_s: int = 5
    """Clock difference tolerated between web instances when checking a participant token's age: a token
    issued by an instance whose clock is ahead by up to this much is accepted (TOKEN_LEEWAY_S)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser (CORS_ORIGINS, comma separated)."""
    rate_limit_per_s: float = 50.0
    """Sustained requests per second of one caller (participant token, API key or client IP), counted by each
    web process on its own; 0 = no rate limit (RATE_LIMIT_PER_S)."""
    rate_limit_burst: int = 100
    """Requests a caller may make at once above the sustained rate before getting 429 (RATE_LIMIT_BURST)."""
    participant_cache_s: float = 2.0
    """How long a web process trusts, for offers and candidates, that a participant it read as joined still
    is; its own leaves and closes forget at once; 0 = read on every request (PARTICIPANT_CACHE_S)."""
    max_polls_per_participant: int = 2
    """Message polls of one participant running at once (all web instances); one more gets 429 at once;
    0 = no limit (MAX_POLLS_PER_PARTICIPANT)."""
    worker_metrics_port: int = 0
    """Port of a worker process's Prometheus endpoint; 0 = none (WORKER_METRICS_PORT)."""
    log_format: str = "json"
    """"json" (one object per line, with session and participant ids) or "text" (LOG_FORMAT)."""
    log_task_received: bool = False
    """Also log a line when a worker receives each task (LOG_TASK_RECEIVED); off, a task logs one INFO line
    when it finishes (succeeded, with its run time), failures and retries as they happen."""
    worker_concurrency: int = 8
    """Threads per worker process; tasks mostly wait on the KMS and the database (WORKER_CONCURRENCY)."""
    kms_thread_share: float = 0.75
    """Share of a worker process's threads that the offers and candidates of one media server may hold at once
    (rounded down; at least 1, and 1 thread always left to the other servers): beyond it a task is put back on
    its queue for 1 s instead of waiting for a slow server in a thread the others need; 1 = no bound
    (KMS_THREAD_SHARE)."""
    webhook_urls: tuple[str, ...] = ()
    """The application backend's webhook receivers, comma separated; each gets every event (WEBHOOK_URLS);
    empty = no events at all."""
    webhook_secret: str = ""
    """Key of the `X-Signaling-Signature` HMAC-SHA256 over each webhook body (WEBHOOK_SECRET)."""
    webhook_timeout_s: float = 5.0
    """A webhook receiver that has not answered after this long is retried later (WEBHOOK_TIMEOUT_S)."""
    webhook_retry_window_s: int = 3600
    """A webhook event is retried until this long after it happened, then dropped (WEBHOOK_RETRY_WINDOW_S)."""
    webhook_retry_max_delay_s: int = 300
    """Retries of a webhook event wait 1, 2, 4 ... seconds, at most this long (WEBHOOK_RETRY_MAX_DELAY_S)."""
    webhook_concurrency: int = 16
    """Threads of the webhook worker process: deliveries in flight at once (WEBHOOK_CONCURRENCY)."""
    recordings_uri: str = ""
    """Where recordings are written, as the media server sees it: `<RECORDINGS_URI>/<session_id>/<recording_id>.<ext>`
    (`file:///...` on the media server's disk, or an http(s) URL it PUTs to) (RECORDINGS_URI); "" = `file://` +
    ./var/recordings beside the code, what `make run` uses with its local emulator."""
    ice_servers: str = ""
    """STUN/TURN servers every join and rejoin answer hands to the client (`ice_servers`): comma-separated
    URLs (`stun:stun.example.org:3478`, one entry each), or a JSON list of RTCIceServer objects
    (`[{"urls": ["turn:t.example.org"], "username": "u", "credential": "p"}]`) (ICE_SERVERS); "" = none."""
    turn_urls: tuple[str, ...] = ()
    """TURN servers sharing TURN_SECRET (coturn `use-auth-secret`), comma separated, e.g.
    `turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349` (TURN_URLS); each participant
    gets ephemeral credentials for them in its join and rejoin answers."""
    turn_secret: str = ""
    """coturn's `static-auth-secret`: signs the ephemeral TURN credentials (TURN_SECRET); "" = no TURN entry."""
    turn_ttl_s: int = 24 * 3600
    """Lifetime of ephemeral TURN credentials; a rejoin answer hands out fresh ones (TURN_TTL_S)."""
    trusted_proxies: int = 0
    """Reverse proxies (ingress, load balancer) in front of the web tier that append to X-Forwarded-For and
    X-Forwarded-Proto; the client address is taken that many hops from the right (rate limits, logs). 0 = the
    peer's address, and those headers are ignored: a client could forge them (TRUSTED_PROXIES)."""
    test_pause_after_outbox_store: str = ""
    """Tests only: a file path; a poll that stored messages in the outbox creates it and then hangs before
    acking them and releasing its lease, so a test can kill the instance in exactly that window
    (TEST_PAUSE_AFTER_OUTBOX_STORE); "" = off."""


_ENV_NAMES = {
    "rabbitmq_url": "RABBITMQ_URL",
    "mongodb_uri": "MONGODB_URI",
    "kms_urls": "KMS_URLS",
    "api_keys": "SIGNALING_API_KEYS",
    "secret_key": "SECRET_KEY",
    "name_prefix": "SIGNALING_PREFIX",
    "cors_origins": "CORS_ORIGINS",
}


def env_name(field_name: str) -> str:
    return _ENV_NAMES.get(field_name, field_name.upper())


def _convert(raw: str, default: object) -> object:
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def _dev_secret_key() -> str:
    """A random key kept under ./var/ so tokens survive restarts of a dev deployment."""
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = environ.get(env_name(f.name))
        if raw is not None and raw != "":
            values[f.name] = _convert(raw, f.default)
    if not values.get("secret_key"):
        values["secret_key"] = _dev_secret_key()
    if values.get("kms_discovery_dns") and "kms_urls" not in values:
        values["kms_urls"] = ()  # discovered servers only, unless KMS_URLS names some too
    return Settings(**values)  # type: ignore[arg-type]  # each value was converted to its field's type
