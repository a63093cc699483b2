"""`signaling doctor`: checks the broker, the database and every media server, and says how to fix what fails."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from media_tasks.kms_discovery import MediaServers, media_servers
from settings import Settings, load_settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _run_check(name: str, action: Callable[[], str], fix: str) -> Check:
    """Runs `action`, timed; on any failure the check carries `fix`, what to do about it."""
    started = time.perf_counter()
    try:
        detail = action()
    except Exception as exc:  # the point is to report any failure, whatever its type
        return Check(name, False, f"{type(exc).__name__}: {exc}", fix)
    return Check(name, True, f"{detail} ({(time.perf_counter() - started) * 1000:.0f} ms)")


def check_broker(settings: Settings) -> Check:
    from kombu import Connection

    def action() -> str:
        with Connection(settings.rabbitmq_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            version = conn.connection.server_properties.get("version", b"?")
            return f"RabbitMQ {version.decode() if isinstance(version, bytes) else version}"

    return _run_check(
        "broker",
        action,
        "Start RabbitMQ (make rabbitmq, or rabbitmq-server -detached) or fix RABBITMQ_URL.",
    )


def check_database(settings: Settings) -> Check:
    import pymongo

    def action() -> str:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            settings.mongodb_uri, serverSelectionTimeoutMS=3000
        )
        try:
            info = client.server_info()
            return f"MongoDB-compatible server {info.get('version', '?')}"
        finally:
            client.close()

    return _run_check(
        "database",
        action,
        "Start MongoDB (make run starts the nx-27017 stand-in) or fix MONGODB_URI.",
    )


def check_media_server(url: str) -> Check:
    import kurento

    def action() -> str:
        client = kurento.KurentoClient(url, request_timeout=3, connect_timeout=3)
        try:
            info = client.server_manager.get_info()
            used = client.server_manager.get_used_memory()
            modules = ", ".join(m.get("name", "?") for m in info.get("modules", []))
            return f"KMS {info.get('version', '?')}, modules {modules}, {used // 1024} MiB used"
        finally:
            client.close()

    return _run_check(f"kms {url}", action, "Start Kurento (or python -m kms_emulator --port PORT) or fix KMS_URLS.")


def check_kms_discovery(settings: Settings, servers: MediaServers | None = None) -> Check:
    """Resolves KMS_DISCOVERY_DNS now, with the resolver the KMS pool uses (DNS, not /etc/hosts)."""
    from media_tasks.kms_discovery import LOOKUP_TIMEOUT_S

    discovery = (servers or media_servers(settings)).discovery
    if discovery is None:
        return Check(
            f"kms discovery {settings.kms_discovery_dns}",
            False,
            "KMS_DISCOVERY_DNS is not set: nothing to resolve",
            "Set KMS_DISCOVERY_DNS to the KMS headless Service (host[:port][/path]).",
        )
    target = discovery.target

    def action() -> str:
        answer = discovery.resolver.resolve(target.host, "A", lifetime=LOOKUP_TIMEOUT_S, search=False)
        return f"{len(answer)} media server(s): " + ", ".join(sorted(record.address for record in answer))

    return _run_check(
        f"kms discovery {target.host}",
        action,
        "Check that the KMS headless Service has ready pods (kubectl get endpoints) or fix KMS_DISCOVERY_DNS.",
    )


def check_workers(settings: Settings) -> Check:
    def action() -> str:
        from media_tasks.dispatch import sending_app

        replies = sending_app(settings).control.ping(timeout=2.0)
        if not replies:
            raise RuntimeError("no worker answered a ping within 2 s")
        return f"{len(replies)} worker(s): " + ", ".join(name for reply in replies for name in reply)

    return _run_check(
        "workers",
        action,
        "Start workers: signaling worker (or make run); check their logs under var/logs.",
    )


def iter_checks(settings: Settings | None = None) -> Iterator[Check]:
    """Each check as soon as it is done (a media server that does not answer takes seconds)."""
    settings = settings or load_settings()
    broker = check_broker(settings)
    yield broker
    yield check_database(settings)
    if settings.kms_discovery_dns:
        yield check_kms_discovery(settings)
    for url in media_servers(settings).urls():
        yield check_media_server(url)
    if broker.ok:
        yield check_workers(settings)


def run_checks(settings: Settings | None = None) -> list[Check]:
    return list(iter_checks(settings))


def main() -> int:
    all_ok = True
    for check in iter_checks():
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}", flush=True)
        if check.fix:
            print(f"     fix: {check.fix}", flush=True)
        all_ok = all_ok and check.ok
    return 0 if all_ok else 1
