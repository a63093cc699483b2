"""Liveness, readiness and Prometheus metrics, at the server root."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from celery import Celery
from flask import Blueprint, Response, current_app, jsonify

from media_tasks.dispatch import sending_app
from messaging.broker import broker_reachable
from models import ping_db
from observability import web_metrics
from settings import Settings

blp = Blueprint("health", __name__)

WORKER_CHECK_TTL_S = 5.0


@dataclass
class _WorkerCheck:
    at: float = 0.0
    ok: bool = False


_worker_check = _WorkerCheck()


@functools.cache
def _control_app(settings: Settings) -> Celery:
    """The ping's own app, publishing unconfirmed: a broker that blocks publishers (memory or disk
    alarm) never confirms, and with the confirmed task connections /ready hung for as long as the
    alarm lasted. Unread, the ping gets no reply: not ready, after its 1 s."""
    app = sending_app(settings)
    app.conf.broker_transport_options = {"confirm_publish": False}
    return app


def _workers_answer() -> bool:
    # A control ping costs a broadcast and a wait, so its answer is reused for a few seconds.
    now = time.monotonic()
    if now - _worker_check.at > WORKER_CHECK_TTL_S or not _worker_check.ok:
        try:
            _worker_check.ok = bool(
                _control_app(current_app.extensions["signaling_settings"]).control.ping(timeout=1.0)
            )
        except Exception:
            _worker_check.ok = False
        _worker_check.at = now
    return _worker_check.ok


@blp.get("/health")
def health() -> Response:
    return jsonify(status="ok")


@blp.get("/ready")
def ready() -> Response:
    settings = current_app.extensions["signaling_settings"]
    checks = {"broker": broker_reachable(settings), "database": ping_db()}
    checks["workers"] = checks["broker"] and _workers_answer()
    ok = all(checks.values())
    response = jsonify(status="ready" if ok else "unavailable", checks=checks)
    response.status_code = 200 if ok else 503
    return response


@blp.get("/metrics")
def metrics() -> Response:
    return web_metrics.render()
