"""Prometheus metrics of the web tier, and the state gauges read from MongoDB at scrape time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from observability import logs

REQUESTS = Counter("signaling_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "signaling_http_request_seconds", "HTTP request duration (long polls included)", ["route", "method"]
)
POLLS_WAITING = Gauge("signaling_long_polls_waiting", "Long polls being held open", multiprocess_mode="livesum")

POLL_ENDPOINT = "messages.ParticipantMessages"


class StateCollector:
    """Sessions and participants by state, media servers' health and memory, from MongoDB."""

    def describe(self) -> list[Metric]:
        # Without it, registering calls collect(): the app could not start while MongoDB is away.
        return []

    def collect(self) -> Iterator[Metric]:
        from models import MediaServer, Participant, Session

        sessions = GaugeMetricFamily("signaling_sessions", "Sessions by state", labels=["state"])
        for state in ("open", "media_lost", "closed"):
            sessions.add_metric([state], Session.objects(state=state).count())
        participants = GaugeMetricFamily("signaling_participants", "Participants by state", labels=["state"])
        for state in ("joined", "left"):
            participants.add_metric([state], Participant.objects(state=state).count())
        up = GaugeMetricFamily("signaling_kms_up", "Media server answering health checks", labels=["url"])
        memory = GaugeMetricFamily("signaling_kms_used_memory_bytes", "Media server used memory", labels=["url"])
        for server in MediaServer.objects():
            up.add_metric([server.url], 1 if server.alive else 0)
            memory.add_metric([server.url], server.used_memory_kib * 1024)
        yield from (sessions, participants, up, memory)


_state_collector_registered = False


def _before() -> None:
    g.request_started = time.perf_counter()
    args = request.view_args or {}
    logs.bind(args.get("session_id"), args.get("participant_id"))
    if request.endpoint == POLL_ENDPOINT:
        POLLS_WAITING.inc()
        g.counted_poll = True


def _after(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    if "request_started" in g:
        REQUEST_SECONDS.labels(route, request.method).observe(time.perf_counter() - g.request_started)
    return response


def _teardown(_exc: BaseException | None) -> None:
    if g.pop("counted_poll", False):
        POLLS_WAITING.dec()
    logs.bind(None, None)


def init_metrics(app: Flask) -> None:
    global _state_collector_registered
    if not _state_collector_registered:
        REGISTRY.register(StateCollector())
        _state_collector_registered = True
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)


def render() -> Response:
    """All metrics; with several gunicorn processes, their shared multiprocess files too."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(StateCollector())
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
