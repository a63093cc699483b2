"""Media servers found in DNS: every A record of a name is one Kurento (KMS_DISCOVERY_DNS).

In Kubernetes the KMS StatefulSet's headless Service has one A record per ready pod, so
KMS_DISCOVERY_DNS=kms-headless.<namespace>.svc.cluster.local:8888 lists them all and follows
scaling without restarting anything: each address becomes ws://<ip>:8888/kurento.

`media_servers(settings).urls()` is then the KMS_URLS given (if any) followed by what the name
resolves to, re-resolved at most every KMS_DISCOVERY_INTERVAL_S when it is read. So the pool's
selection and the health monitor, which ask for the list on every use, see servers come and
go. A server whose record disappears (its pod died or is no longer ready) stays listed for
FORGET_AFTER_S: long enough for the health monitor to find it dead and move its sessions to
`mediaServerLost`, which it would never do for a server it no longer checks. A failed lookup
(DNS away) keeps the last answer; a name with no records (NXDOMAIN, no answer) means none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.resolver

from settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8888
DEFAULT_PATH = "kurento"
LOOKUP_TIMEOUT_S = 2.0
# Two failed health probes (media_tasks.kms_health) take about a second; this is ample.
FORGET_AFTER_S = 60.0


@dataclass(frozen=True)
class Target:
    """`host[:port][/path]`, the value of KMS_DISCOVERY_DNS."""

    host: str
    port: int = DEFAULT_PORT
    path: str = DEFAULT_PATH

    @classmethod
    def parse(cls, spec: str) -> Target:
        hostport, _, path = spec.strip().partition("/")
        host, _, port = hostport.partition(":")
        if not host:
            raise ValueError(f"KMS_DISCOVERY_DNS has no host name: {spec!r}")
        return cls(host, int(port) if port else DEFAULT_PORT, path or DEFAULT_PATH)

    def url(self, address: str) -> str:
        return f"ws://{address}:{self.port}/{self.path}"


class Discovery:
    """The URLs of a DNS name's A records, with forgetting after FORGET_AFTER_S."""

    def __init__(
        self,
        target: Target,
        interval_s: float,
        resolver: dns.resolver.Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.interval_s = interval_s
        self.resolver = resolver or dns.resolver.Resolver()
        self.clock = clock
        self._last_seen: dict[str, float] = {}  # url -> when its record was last in an answer
        self._resolved_at: float | None = None
        self._lock = threading.Lock()

    def urls(self) -> list[str]:
        """The current list, re-resolving first when the last lookup is older than the interval."""
        now = self.clock()
        if self._resolved_at is None or now - self._resolved_at >= self.interval_s:
            with self._lock:
                if self._resolved_at is None or now - self._resolved_at >= self.interval_s:
                    self.refresh(now)
        return sorted(self._last_seen, key=_address_order)

    def refresh(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._resolved_at = now
        try:
            answer = self.resolver.resolve(self.target.host, "A", lifetime=LOOKUP_TIMEOUT_S, search=False)
            addresses = {record.address for record in answer}
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            addresses = set()
        except dns.exception.DNSException as exc:
            log.warning(
                "KMS discovery: looking up %s failed (%s); keeping %d server(s)",
                self.target.host,
                exc,
                len(self._last_seen),
            )
            return
        last_seen = dict(self._last_seen)  # replaced whole: readers never see it half-updated
        for address in addresses:
            url = self.target.url(address)
            if url not in last_seen:
                log.info("KMS discovery: %s appeared in %s", url, self.target.host)
            last_seen[url] = now
        for url, seen in list(last_seen.items()):
            if now - seen > FORGET_AFTER_S:
                log.info("KMS discovery: %s left %s %.0f s ago; forgotten", url, self.target.host, now - seen)
                del last_seen[url]
        self._last_seen = last_seen


def _address_order(url: str) -> tuple[int | str, ...]:
    host = url.split("://", 1)[1].rsplit(":", 1)[0]
    return tuple(int(part) if part.isdigit() else part for part in host.split("."))


class MediaServers:
    """The media servers to use: KMS_URLS, then (with KMS_DISCOVERY_DNS) the discovered ones.

    A component of its own rather than part of Settings: it resolves DNS and remembers what it
    has seen, while Settings stays plain values.
    """

    def __init__(self, static: Sequence[str], discovery: Discovery | None = None) -> None:
        self.static = tuple(static)
        self.discovery = discovery

    def urls(self) -> list[str]:
        """Read afresh on every use, so servers come and go without a restart."""
        if self.discovery is None:
            return list(self.static)
        return [*self.static, *(url for url in self.discovery.urls() if url not in self.static)]

    def __repr__(self) -> str:
        host = self.discovery.target.host if self.discovery else None
        return f"MediaServers(static={self.static!r}, dns={host!r})"


_discoveries: dict[tuple[Target, float], Discovery] = {}
_discoveries_lock = threading.Lock()


def register_discovery(discovery: Discovery) -> None:
    """Makes `discovery` (with its own resolver, say) the one its target and interval use."""
    with _discoveries_lock:
        _discoveries[(discovery.target, discovery.interval_s)] = discovery


def media_servers(settings: Settings) -> MediaServers:
    """The process's one Discovery per target, so every user of the same settings shares what it has seen."""
    if not settings.kms_discovery_dns:
        return MediaServers(settings.kms_urls)
    key = (Target.parse(settings.kms_discovery_dns), settings.kms_discovery_interval_s)
    with _discoveries_lock:
        if key not in _discoveries:
            _discoveries[key] = Discovery(*key)
        return MediaServers(settings.kms_urls, _discoveries[key])
