from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from settings import Settings, load_settings
from signaling_web import create_app
from signaling_web.ice_servers import BadIceServers, IceServers, parse_ice_servers, turn_credentials


def test_comma_separated_urls_are_one_entry_each():
    assert parse_ice_servers(" stun:a.example:3478, stun:b.example ,") == [
        {"urls": ["stun:a.example:3478"]},
        {"urls": ["stun:b.example"]},
    ]
    assert parse_ice_servers("") == [] and parse_ice_servers("  ") == []


def test_a_json_list_is_taken_as_rtc_ice_servers_with_urls_always_a_list():
    raw = '[{"urls": "turn:t.example", "username": "u", "credential": "p"}, {"urls": ["stun:s1", "stun:s2"]}]'
    assert parse_ice_servers(raw) == [
        {"urls": ["turn:t.example"], "username": "u", "credential": "p"},
        {"urls": ["stun:s1", "stun:s2"]},
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "[",
        '[{"username": "u"}]',
        '[{"urls": []}]',
        '[{"urls": [""]}]',
        '[{"urls": 3}]',
        '["stun:a"]',
        '[{"urls": "stun:a", "credential": 1}]',
        '[{"urls": "stun:a", "credentialType": "oauth"}]',
    ],
)
def test_a_bad_json_value_is_refused_with_what_is_wrong(raw):
    with pytest.raises(BadIceServers, match="ICE_SERVERS"):
        parse_ice_servers(raw)


def test_a_bad_value_stops_the_web_app_at_creation_not_at_a_join():
    settings = load_settings({"SECRET_KEY": "k", "ICE_SERVERS": "[{", "MONGODB_URI": "mongodb://127.0.0.1:1/unused"})
    with pytest.raises(BadIceServers):
        create_app(settings)


def test_turn_credentials_follow_coturns_rest_api_scheme():
    username, credential = turn_credentials("secret", "pid", 1700000000)
    assert username == "1700000000:pid"
    assert credential == base64.b64encode(hmac.new(b"secret", b"1700000000:pid", hashlib.sha1).digest()).decode()


def test_turn_entries_need_both_urls_and_secret_and_expire_after_the_ttl():
    static = "stun:s.example"
    assert IceServers.from_settings(Settings(ice_servers=static, turn_urls=("turn:t",))).for_participant("p") == [
        {"urls": ["stun:s.example"]}
    ]
    assert IceServers.from_settings(Settings(turn_secret="s")).for_participant("p") == []
    servers = IceServers.from_settings(Settings(ice_servers=static, turn_urls=("turn:t", "turns:t"), turn_secret="s"))
    *_, minted = servers.for_participant("p", now=1000.5)
    assert minted == {
        "urls": ["turn:t", "turns:t"],
        **dict(zip(("username", "credential"), turn_credentials("s", "p", 1000 + 86400), strict=True)),
    }
