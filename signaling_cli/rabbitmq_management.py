"""The RabbitMQ management API (HTTP), which Flower reads queue lengths from (`--broker-api`).

RABBITMQ_MANAGEMENT_URL names it explicitly; otherwise the plugin's default place beside the
broker (port 15672, the broker's credentials) is used when it answers. Flower joins
`queues/<vhost>` to the URL it is given, so it must end in `/api/`: a bare
`http://host:15672` or `.../api` is completed.
"""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request
from urllib.parse import quote, unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

DEFAULT_PORT = 15672
PROBE_TIMEOUT_S = 2.0


def normalise(url: str, broker_url: str = "") -> str:
    """`url` as Flower needs it: path ending in /api/, and the broker's credentials if it has none."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if not path.endswith("/api"):
        path += "/api"
    netloc = parts.netloc
    if "@" not in netloc and broker_url:
        broker = urlsplit(broker_url)
        if broker.username:
            netloc = f"{broker.username}:{broker.password or ''}@{netloc}"
    return urlunsplit((parts.scheme or "http", netloc, path + "/", "", ""))


def beside_broker(broker_url: str) -> str:
    """Where the management plugin listens when it runs on the broker's host."""
    broker = urlsplit(broker_url)
    user = quote(unquote(broker.username or "guest"), safe="")
    password = quote(unquote(broker.password or "guest"), safe="")
    return f"http://{user}:{password}@{broker.hostname or '127.0.0.1'}:{DEFAULT_PORT}/api/"


def answers(api_url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """GET <api>/overview with the URL's credentials answers 200."""
    parts = urlsplit(api_url)
    # The credentials go in a header: urllib does not take them from the URL. Cutting them off the
    # netloc (not rebuilding it from .hostname) keeps an IPv6 host's brackets, and a URL without a
    # host fails as a ValueError below rather than a TypeError here.
    host = parts.netloc.rpartition("@")[2]
    bare = urlunsplit((parts.scheme, host, parts.path, "", ""))
    request = urllib.request.Request(bare + "overview")
    if parts.username:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def flower_broker_api(env: dict[str, str]) -> str | None:
    """The URL to give Flower as --broker-api, or None when there is no management API.

    A configured RABBITMQ_MANAGEMENT_URL is used even if it does not answer now (Flower retries
    on every page); without one, the default place is used only if it answers."""
    broker_url = env.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    configured = env.get("RABBITMQ_MANAGEMENT_URL", "").strip()
    if configured:
        return normalise(configured, broker_url)
    candidate = beside_broker(broker_url)
    return candidate if answers(candidate) else None


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
