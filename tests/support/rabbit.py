"""A RabbitMQ virtual host per test run, so runs never see each other's queues or workers.

Names carry their creation time, so a run that was killed before its clean-up is swept by
a later run: leftover vhosts full of quorum queues would otherwise slow every broker start.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from urllib.parse import quote, unquote, urlsplit

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"
PREFIX = "signaling-test-"
STALE_AFTER_S = 3 * 3600


def _rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=120).stdout


def sweep_stale_vhosts(now: float | None = None) -> list[str]:
    now = now or time.time()
    swept = []
    for name in _rabbitmqctl("list_vhosts", "name").split():
        if not name.startswith(PREFIX):
            continue
        created = name[len(PREFIX) :].split("-")[0]
        if not created.isdigit() or now - int(created) > STALE_AFTER_S:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=120)
            swept.append(name)
    return swept


def create_vhost(base_url: str = DEFAULT_URL) -> tuple[str, str | None]:
    """(url, vhost) of a fresh vhost; falls back to the base URL when rabbitmqctl is not usable."""
    if shutil.which("rabbitmqctl") is None:
        return base_url, None
    vhost = f"{PREFIX}{int(time.time())}-{uuid.uuid4().hex[:8]}"
    parts = urlsplit(base_url)
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return base_url, None
    return f"{parts.scheme}://{parts.netloc}/{quote(vhost, safe='')}", vhost


def delete_vhost(vhost: str | None) -> None:
    if vhost:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=120)


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def bindings(url: str) -> set[tuple[str, str]]:
    """(exchange, queue) pairs bound in the vhost of `url`, as the broker lists them."""
    out = _rabbitmqctl("list_bindings", "-p", vhost_of(url), "--no-table-headers", "source_name", "destination_name")
    return {(source, destination) for source, _, destination in (line.partition("\t") for line in out.splitlines())}


def exchanges(url: str) -> set[str]:
    return set(_rabbitmqctl("list_exchanges", "-p", vhost_of(url), "--no-table-headers", "name").split())


def ready_messages(url: str, queue: str) -> int:
    """Messages ready in `queue` (a passive declare: the queue is neither created nor changed)."""
    from kombu import Connection

    with Connection(url) as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count
