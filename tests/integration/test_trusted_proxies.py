"""TRUSTED_PROXIES: behind an ingress every request comes from the ingress's address, so the web tier
takes the client from X-Forwarded-For, that many hops from the right, and only then. One deployment,
two web processes on it: one told of one proxy in front, one of none. Their rate limit (5 requests
per 500 s, so no refill during a test) shows whom each request counted against."""

from __future__ import annotations

import secrets

import pytest
import requests

from signaling_cli import processes
from tests.conftest import stack_env, start_stack
from tests.support.checks import assert_error

pytestmark = pytest.mark.integration

BURST = 5
RATE_PER_S = 0.01  # a window of 500 s: nothing refills while a test runs


@pytest.fixture(scope="module")
def webs(run_dir, rabbitmq_url, mongodb_uri, kms_url):
    """(behind one proxy, behind none): the base URLs of two web processes of one deployment."""
    env = stack_env(
        rabbitmq_url,
        mongodb_uri,
        [kms_url],
        SIGNALING_API_KEYS="proxy-key",
        RATE_LIMIT_PER_S=str(RATE_PER_S),
        RATE_LIMIT_BURST=str(BURST),
        TRUSTED_PROXIES="1",
    )
    log_dir = run_dir / "logs-proxies"
    running = start_stack(env, log_dir, workers=1)
    direct = None
    try:
        direct = processes.start_web({**env, "TRUSTED_PROXIES": "0"}, log_dir, name=f"{env['SIGNALING_PREFIX']}-web0")
        yield running.base_url, f"http://127.0.0.1:{direct.port}"
    finally:
        if direct is not None:
            direct.stop()
        running.stop()


def anonymous(base: str, forwarded_for: str | None) -> int:
    """An anonymous request (the listing without a key: 401), counted against the client address."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    return requests.get(f"{base}/api/v1/sessions", headers=headers, timeout=30).status_code


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(webs):
    proxied, _direct = webs
    first, second = f"198.51.100.{secrets.randbelow(200) + 1}", f"192.0.2.{secrets.randbelow(200) + 1}"
    assert [anonymous(proxied, first) for _ in range(BURST)] == [401] * BURST
    refused = requests.get(f"{proxied}/api/v1/sessions", headers={"X-Forwarded-For": first}, timeout=30)
    assert_error(refused, 429)
    # Another client behind the same proxy (same peer address) is not refused with the first.
    assert anonymous(proxied, second) == 401


def test_behind_a_trusted_proxy_what_the_client_put_before_it_is_ignored(webs):
    proxied, _direct = webs
    real = f"198.18.0.{secrets.randbelow(200) + 1}"
    # The client sends its own X-Forwarded-For; the proxy appends the address it saw. Only that counts:
    # a new forged address on each request buys no fresh bucket.
    codes = [anonymous(proxied, f"10.{i}.0.1, {real}") for i in range(BURST + 1)]
    assert codes == [401] * BURST + [429]


def test_without_trusted_proxies_a_forged_header_buys_no_fresh_bucket(webs):
    _proxied, direct = webs
    # Every request from this test's peer address (loopback), each claiming another client.
    codes = [anonymous(direct, f"198.51.100.{i}") for i in range(BURST + 1)]
    assert codes == [401] * BURST + [429]
    assert anonymous(direct, None) == 429  # the same bucket: the peer's address
