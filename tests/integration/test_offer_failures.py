"""Every accepted offer ends in its answer or in `error {request_id, code, message}` (issue 11,
items 4 and 7): real worker processes and an emulator of their own, told to fail.

The emulator is this module's, not the shared one: `withholdResponses` cannot be undone, and the
unreachable-server test kills it (what follows needs no media server). The tests run in file
order; each one alone runs too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import Stack, read_fixture, stack_env, start_stack
from tests.support.api import Api, Member
from tests.support.emulator import EmulatorProcess
from tests.support.emulator_control import control, count_operations, drop_connections
from tests.support.rabbit import create_vhost, delete_vhost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PUBLISH_SDP = read_fixture("chromium-publish.sdp")


@pytest.fixture(scope="module")
def kms(run_dir) -> Iterator[EmulatorProcess]:
    server = EmulatorProcess(run_dir / "logs-offer-failures", test_control=True, name="kms-offer-failures").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def failing_stack(run_dir, rabbitmq_url, mongodb_uri, kms) -> Iterator[Stack]:
    url, vhost = create_vhost(rabbitmq_url)
    # One retry and short KMS requests keep "unavailable through every retry" within seconds.
    env = stack_env(url, mongodb_uri, [kms.url], TASK_MAX_RETRIES="1", KMS_REQUEST_TIMEOUT_S="2")
    stack = start_stack(env, run_dir / "logs-offer-failures", workers=1)
    yield stack
    stack.stop()
    delete_vhost(vhost)


def joined(stack: Stack) -> Member:
    api = Api(stack.base_url)
    return api.join(api.create_session(name="failures"))


def requests_of(kms: EmulatorProcess, operation: str) -> int:
    return count_operations(control(kms.url, "requests")["requests"], operation)


def test_process_offer_failing_with_an_unmapped_code_ends_in_error(failing_stack, kms) -> None:
    alice = joined(failing_stack)
    control(kms.url, "failOperation", operation="processOffer", code=40999, message="element crashed")
    request_id = alice.offer(PUBLISH_SDP)
    error = alice.wait_type("error", timeout=15, request_id=request_id)
    assert error["code"] == 502 and "element crashed" in error["message"], error
    # The failure was the only one: the next offer is answered.
    again = alice.offer(PUBLISH_SDP)
    alice.wait_type("sdpAnswer", timeout=15, request_id=again)


def test_endpoint_creation_failing_ends_in_error(failing_stack, kms) -> None:
    alice = joined(failing_stack)
    alice.offer(PUBLISH_SDP)  # the session's pipeline exists from here on
    alice.wait_type("sdpAnswer", timeout=15)
    control(kms.url, "failOperation", operation="create", type="WebRtcEndpoint", code=40999, message="no room")
    request_id = alice.offer(PUBLISH_SDP)
    error = alice.wait_type("error", timeout=15, request_id=request_id)
    assert error["code"] == 502 and "no room" in error["message"], error


def test_process_offer_cut_off_by_the_media_server_is_not_retried(failing_stack, kms) -> None:
    alice = joined(failing_stack)
    before = requests_of(kms, "processOffer")
    control(kms.url, "withholdResponses", operation="processOffer")  # for good: a server that stalls on it
    request_id = alice.offer(PUBLISH_SDP)
    deadline = time.monotonic() + 15
    while requests_of(kms, "processOffer") == before:
        assert time.monotonic() < deadline, "processOffer never reached the media server"
        time.sleep(0.05)
    assert drop_connections(kms.url) >= 1  # the connection dies while processOffer runs
    error = alice.wait_type("error", timeout=15, request_id=request_id)
    assert error["code"] == 502 and "not retried" in error["message"], error
    # Exactly once: no retry sent the same SDP to the server again.
    assert requests_of(kms, "processOffer") == before + 1


def test_media_server_unreachable_through_every_retry_ends_in_error(failing_stack, kms) -> None:
    kms.kill()  # the module's emulator is gone from here on
    alice = joined(failing_stack)
    request_id = alice.offer(PUBLISH_SDP)
    error = alice.wait_type("error", timeout=20, request_id=request_id)
    assert error["code"] == 503, error


def test_offers_and_candidate_requests_over_their_caps_are_refused_with_422(failing_stack) -> None:
    alice = joined(failing_stack)
    section = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{}\r\n"
    crowded = "v=0\r\n" + "".join(section.format(i) for i in range(33))  # MAX_MEDIA_SECTIONS is 32
    refused = alice.api.http.post(
        f"{alice.base}/offers", json={"stream": "publish", "sdp": crowded}, headers=alice.headers
    )
    assert refused.status_code == 422 and "at most 32" in refused.text, refused.text
    candidate = {"candidate": "candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host", "sdpMid": "0"}
    too_many = alice.candidates("publish", [candidate] * 101)  # MAX_CANDIDATES_PER_REQUEST is 100
    assert too_many.status_code == 422 and too_many.json()["code"] == 422, too_many.text
    assert alice.candidates("publish", [candidate] * 100).status_code == 202
