"""`ice_servers` in the join and rejoin answers, checked against a real coturn: a stack whose TURN_URLS
name a `turnserver` started here on loopback with `use-auth-secret`, and aioice's TURN client making
allocations with what the service handed out (and with credentials coturn must refuse)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import shutil
import time

import pytest
from aioice import stun, turn

from signaling_cli import processes
from signaling_web.ice_servers import turn_credentials
from tests.conftest import stack_env, start_stack
from tests.support.checks import assert_error

pytestmark = pytest.mark.integration

API_KEY = "ice-key-" + secrets.token_urlsafe(8)
TURN_SECRET = secrets.token_urlsafe(24)
TURN_TTL_S = 600
STATIC = [
    {"urls": ["stun:stun.example.org:3478"]},
    {"urls": ["turn:static.example.org:3478"], "username": "static-user", "credential": "static-pass"},
]


@pytest.fixture(scope="module")
def turn_port(run_dir):
    """coturn on loopback, with the shared secret of the TURN REST API (`use-auth-secret`)."""
    binary = shutil.which("turnserver")
    assert binary, "coturn's turnserver is not installed: `make coturn` (apt-get install coturn)"
    port = processes.free_port()
    workdir = run_dir / "coturn"
    workdir.mkdir(exist_ok=True)
    argv = [
        binary,
        "-n",  # no configuration file: everything is on this line
        "--listening-ip=127.0.0.1",
        f"--listening-port={port}",
        "--relay-ip=127.0.0.1",
        "--allow-loopback-peers",
        "--use-auth-secret",
        f"--static-auth-secret={TURN_SECRET}",
        "--realm=signaling.test",
        f"--userdb={workdir / 'turndb'}",
        f"--pidfile={workdir / 'turnserver.pid'}",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--log-file=stdout",
        "--simple-log",
    ]
    proc = processes.spawn("coturn", argv, {}, run_dir / "logs-ice", port)
    try:
        processes.wait_for_port(port, 30, proc)  # its TCP listener shares the UDP port
        yield port
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def ice_stack(run_dir, rabbitmq_url, mongodb_uri, kms_url, turn_port):
    env = stack_env(
        rabbitmq_url,
        mongodb_uri,
        [kms_url],
        SIGNALING_API_KEYS=API_KEY,
        ICE_SERVERS=json.dumps(STATIC),
        TURN_URLS=f"turn:127.0.0.1:{turn_port}?transport=udp,turn:127.0.0.1:{turn_port}?transport=tcp",
        TURN_SECRET=TURN_SECRET,
        TURN_TTL_S=str(TURN_TTL_S),
    )
    running = start_stack(env, run_dir / "logs-ice", workers=1)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def ice_api(ice_stack):
    return ice_stack.api(api_key=API_KEY)


def allocate(port: int, username: str, credential: str, transport: str = "udp") -> tuple[str, int]:
    """A TURN allocation on the loopback coturn; its relayed address, or stun.TransactionFailed."""

    async def run() -> tuple[str, int]:
        relay, _protocol = await turn.create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", port), username, credential, transport=transport
        )
        try:
            return relay.get_extra_info("sockname")
        finally:
            relay.close()

    return asyncio.run(asyncio.wait_for(run(), 20))


def join(api, session: dict, name: str) -> dict:
    response = api.http.post(
        f"{api.base}/api/v1/sessions/{session['session_id']}/participants",
        json={"display_name": name, "join_token": session["join_token"]},
    )
    assert response.status_code == 201, response.text
    return response.json()


def check_turn_entry(entry: dict, participant_id: str, minted_between: tuple[float, float], port: int) -> None:
    assert entry["urls"] == [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]
    expiry, pid = entry["username"].split(":")
    assert pid == participant_id
    assert int(minted_between[0]) + TURN_TTL_S <= int(expiry) <= int(minted_between[1]) + TURN_TTL_S
    expected = hmac.new(TURN_SECRET.encode(), entry["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(entry["credential"]) == expected


def test_the_join_answer_hands_out_ice_servers_and_turn_credentials_coturn_accepts(ice_api, turn_port):
    session = ice_api.create_session(name="ice")
    before = time.time()
    joined = join(ice_api, session, "alice")
    after = time.time()
    *static, minted = joined["ice_servers"]
    assert static == STATIC  # ICE_SERVERS as configured, in order, credentials included
    check_turn_entry(minted, joined["participant_id"], (before, after), turn_port)
    host, port = allocate(turn_port, minted["username"], minted["credential"])
    assert host == "127.0.0.1" and port > 0
    # Over TCP too (the second URL): the same credentials.
    assert allocate(turn_port, minted["username"], minted["credential"], transport="tcp")[0] == "127.0.0.1"


def test_coturn_refuses_a_wrong_an_expired_or_another_secrets_credential(ice_api, turn_port):
    joined = join(ice_api, ice_api.create_session(name="ice"), "mallory")
    minted = joined["ice_servers"][-1]
    expired = turn_credentials(TURN_SECRET, joined["participant_id"], int(time.time()) - 60)
    other_secret = turn_credentials("not-the-secret", joined["participant_id"], int(time.time()) + 600)
    for username, credential in [(minted["username"], "wrong"), expired, other_secret]:
        with pytest.raises(stun.TransactionFailed) as refused:
            allocate(turn_port, username, credential)
        assert refused.value.response.error_code == 401, (username, credential)
    # Another participant's name under this one's credential: the HMAC covers the username.
    forged = f"{minted['username'].split(':')[0]}:someone-else"
    with pytest.raises(stun.TransactionFailed):
        allocate(turn_port, forged, minted["credential"])


def test_the_rejoin_answer_hands_out_fresh_credentials(ice_api, turn_port):
    session = ice_api.create_session(name="ice")
    joined = join(ice_api, session, "bob")
    pid = joined["participant_id"]
    before = time.time()
    rejoined = ice_api.http.post(
        f"{ice_api.base}/api/v1/sessions/{session['session_id']}/participants/{pid}/rejoin",
        headers={"Authorization": f"Bearer {joined['token']}"},
    )
    after = time.time()
    assert rejoined.status_code == 202, rejoined.text
    *static, minted = rejoined.json()["ice_servers"]
    assert static == STATIC
    check_turn_entry(minted, pid, (before, after), turn_port)
    assert allocate(turn_port, minted["username"], minted["credential"])[0] == "127.0.0.1"


def test_a_refused_rejoin_hands_out_nothing(ice_api):
    session = ice_api.create_session(name="ice")
    joined = join(ice_api, session, "carol")
    base = f"{ice_api.base}/api/v1/sessions/{session['session_id']}/participants/{joined['participant_id']}"
    headers = {"Authorization": f"Bearer {joined['token']}"}
    assert "ice_servers" not in assert_error(ice_api.http.post(f"{base}/rejoin"), 401)  # no token
    assert ice_api.http.delete(base, headers=headers).status_code == 202
    body = assert_error(ice_api.http.post(f"{base}/rejoin", headers=headers), 409)
    assert "ice_servers" not in body


def test_without_ice_settings_the_list_is_empty(api):
    session = api.create_session(name="plain")
    joined = join(api, session, "dave")
    assert joined["ice_servers"] == []
    rejoined = api.http.post(
        f"{api.base}/api/v1/sessions/{session['session_id']}/participants/{joined['participant_id']}/rejoin",
        headers={"Authorization": f"Bearer {joined['token']}"},
    )
    assert rejoined.status_code == 202 and rejoined.json() == {"ice_servers": []}
