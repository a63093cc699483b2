"""The web tier: REST API v1, long-poll delivery, health endpoints."""

from __future__ import annotations

import logging

from flask import Flask, g
from werkzeug.middleware.proxy_fix import ProxyFix

from media_tasks.dispatch import TaskQueue, sending_app
from messaging.mailbox import Mailbox
from models import bound_to, connect_db
from observability.logs import use_json_logs
from observability.web_metrics import init_metrics
from settings import Settings, load_settings
from signaling_web import apidocs
from signaling_web.cors import init_cors
from signaling_web.errors import register_error_handlers
from signaling_web.extensions import Api
from signaling_web.ice_servers import init_ice_servers
from signaling_web.idempotency import init_idempotency, next_root_id
from signaling_web.openapi import init_openapi
from signaling_web.participant_cache import ParticipantCache
from signaling_web.ratelimit import init_rate_limits

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """The web app for these settings (read from the environment only when none are given)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        API_TITLE="Kurento signaling service",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=apidocs.ASSETS_URL,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )
    app.extensions["signaling_settings"] = settings
    app.extensions["signaling_mailbox"] = Mailbox(settings)
    app.extensions["signaling_tasks"] = TaskQueue(sending_app(settings), next_root_id=next_root_id)
    app.extensions["signaling_participant_cache"] = ParticipantCache(settings.participant_cache_s)
    if settings.log_format == "json":
        use_json_logs()
    if not settings.api_keys:
        log.warning("SIGNALING_API_KEYS is not set: anyone can create sessions")
    if settings.trusted_proxies > 0:
        # Behind N proxies the peer is the nearest proxy; the client is N hops from the right of
        # X-Forwarded-For (what rate limits key on). Without any, those headers are the client's own words.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    init_ice_servers(app)
    bind_database(app, connect_db(settings))
    api = Api(app)
    init_openapi(api)
    register_blueprints(app, api)
    register_error_handlers(app)
    # Order matters: preflights are answered before any limit, and a refused request (429)
    # claims no Idempotency-Key.
    init_cors(app)
    init_rate_limits(app)
    init_idempotency(app)
    init_metrics(app)
    return app


def bind_database(app: Flask, alias: str) -> None:
    """Every request of this app works on this app's database, whatever else the process holds."""

    def bind() -> None:
        g.database_binding = bound_to(alias)
        g.database_binding.__enter__()

    def unbind(_exc: BaseException | None) -> None:
        binding = g.pop("database_binding", None)
        if binding is not None:
            binding.__exit__(None, None, None)

    # First in, last out: the idempotency and rate-limit hooks registered later use it too.
    app.before_request(bind)
    app.teardown_request(unbind)


def register_blueprints(app: Flask, api: Api) -> None:
    from signaling_web import demo, health
    from signaling_web.join_tokens.resources import blp as join_tokens_blp
    from signaling_web.messages.resources import blp as messages_blp
    from signaling_web.participants.resources import blp as participants_blp
    from signaling_web.recordings.resources import blp as recordings_blp
    from signaling_web.sessions.resources import blp as sessions_blp
    from signaling_web.streams.resources import blp as streams_blp

    for blueprint in (sessions_blp, participants_blp, streams_blp, messages_blp, recordings_blp, join_tokens_blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(health.blp)
    app.register_blueprint(demo.blp)
    app.register_blueprint(apidocs.blp)
