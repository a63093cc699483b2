"""The STUN/TURN servers a participant's peer connections use (`ice_servers` in join and rejoin answers).

Two sources: ICE_SERVERS, handed out as configured, and the TURN servers of TURN_URLS, for which each
participant gets ephemeral credentials in coturn's `use-auth-secret` scheme (the "TURN REST API" of
draft-uberti-behave-turn-rest): `username = "<unix expiry>:<participant_id>"` and
`credential = base64(HMAC-SHA1(TURN_SECRET, username))`. coturn checks the HMAC with its
`static-auth-secret` and refuses the username once its expiry has passed, so nothing is stored and
a leaked credential dies on its own; a rejoin answer hands out fresh ones.

Costs no database or broker operation: ICE_SERVERS is parsed once per process, and minting is one HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from settings import Settings

IceServer = dict[str, Any]  # {"urls": [str, ...], "username"?: str, "credential"?: str}
_FIELDS = {"urls", "username", "credential"}


class BadIceServers(ValueError):
    """ICE_SERVERS cannot be read; raised when the web app is created, never on a join."""


def parse_ice_servers(raw: str) -> list[IceServer]:
    """ICE_SERVERS: a JSON list of RTCIceServer objects, or comma-separated URLs (one entry each)."""
    raw = raw.strip()
    if not raw:
        return []
    if not raw.startswith("["):
        return [{"urls": [url.strip()]} for url in raw.split(",") if url.strip()]
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise BadIceServers(f"ICE_SERVERS is not a valid JSON list: {exc}") from None
    return [_entry(i, entry) for i, entry in enumerate(entries)]


def _entry(index: int, entry: object) -> IceServer:
    where = f"ICE_SERVERS[{index}]"
    if not isinstance(entry, dict) or "urls" not in entry or set(entry) - _FIELDS:
        raise BadIceServers(f"{where} must be an object with urls and optionally username and credential")
    urls = [entry["urls"]] if isinstance(entry["urls"], str) else entry["urls"]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise BadIceServers(f"{where}.urls must be a URL or a non-empty list of URLs")
    if not all(isinstance(entry.get(k, ""), str) for k in ("username", "credential")):
        raise BadIceServers(f"{where}: username and credential must be strings")
    return {**entry, "urls": urls}


def turn_credentials(secret: str, participant_id: str, expires_at: int) -> tuple[str, str]:
    """(username, credential) that coturn with `static-auth-secret=secret` accepts until `expires_at`."""
    username = f"{expires_at}:{participant_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True)
class IceServers:
    static: tuple[IceServer, ...]
    turn_urls: tuple[str, ...]
    turn_secret: str
    turn_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> IceServers:
        return cls(
            tuple(parse_ice_servers(settings.ice_servers)),
            settings.turn_urls,
            settings.turn_secret,
            settings.turn_ttl_s,
        )

    def for_participant(self, participant_id: str, now: float | None = None) -> list[IceServer]:
        """ICE_SERVERS, then the TURN servers with credentials of this participant (when configured)."""
        servers = [dict(server) for server in self.static]
        if self.turn_urls and self.turn_secret:
            expires_at = int(time.time() if now is None else now) + self.turn_ttl_s
            username, credential = turn_credentials(self.turn_secret, participant_id, expires_at)
            servers.append({"urls": list(self.turn_urls), "username": username, "credential": credential})
        return servers


EXTENSION = "signaling_ice_servers"


def init_ice_servers(app: Flask) -> None:
    """Reads ICE_SERVERS once, so that a bad value stops the web process at start, not a join."""
    app.extensions[EXTENSION] = IceServers.from_settings(app.extensions["signaling_settings"])


def for_participant(participant_id: str) -> list[IceServer]:
    """The `ice_servers` of a join or rejoin answer of this participant (in a request of the web app)."""
    servers: IceServers = current_app.extensions[EXTENSION]
    return servers.for_participant(participant_id)
