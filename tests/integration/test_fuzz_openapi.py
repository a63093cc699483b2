"""Schemathesis against the running stack's own OpenAPI document.

Every operation gets a bounded, reproducible number of generated requests (valid and invalid,
from a fixed seed, without shrinking). Every response must conform to the document (status
code, content type, headers, body schema), no response may be a 5xx, every invalid request
must be refused, and every error must be in the documented shape.

Participant routes need a Bearer token: the test creates a session with a participant and
sends its token with every request, and fills the session and participant ids with that
participant's real ids in every other case, so the requests also reach the code behind the
access checks. Cases of DELETE operations get a fresh session of their own, so closing or
leaving does not end the shared one for the operations after them.

The cases come from schemathesis's Python API (`openapi.from_url`, `APIOperation.as_strategy`)
under a plain Hypothesis `@given`: schemathesis's own pytest integration (`from_fixture` +
`parametrize`) fails under pytest 9.2 ('Function' object has no attribute '_nodeid').
"""

from __future__ import annotations

import itertools
import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS

from tests.support.api import Api, Member
from tests.support.checks import ERROR_KEYS, assert_error_body

pytestmark = pytest.mark.integration

# FUZZ_EXAMPLES and FUZZ_EXTRA_CHECKS (comma separated schemathesis check names, for example
# positive_data_acceptance) make a deeper run by hand; the suite runs the bounded default.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SEED = 20240604
MAX_WAIT_S = 0.2  # long polls are cut short: the fuzzer is here for inputs, not for waiting
CHECK_NAMES = tuple(name for name in os.environ.get("FUZZ_EXTRA_CHECKS", "").split(",") if name) + (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "no-shrink": True,
            "deterministic": True,
            "database": "none",
        },
        "phases": {
            "examples": {"enabled": False},
            "coverage": {"enabled": False},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    }
)


class Fixture:
    """The session and participant whose ids and token the generated requests use."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.session = api.create_session(name="fuzz", max_participants=200)
        self.member = api.join(self.session, "fuzzer")
        self.counter = itertools.count()
        self.cases = 0
        self.real_id_cases = 0
        self.statuses: dict[int, int] = {}

    def throwaway(self) -> tuple[dict, Member]:
        session = self.api.create_session(name="fuzz-throwaway")
        return session, self.api.join(session, "fuzzer")


@pytest.fixture(scope="module")
def fuzz_target(stack) -> Fixture:
    yield Fixture(stack.api())
    wait_for_idle_workers(stack)


def wait_for_idle_workers(stack, timeout: float = 60.0) -> None:
    """The fuzzed requests queue tasks (rejoin, leave, close, messages); the tests after this module
    share the stack and time their own tasks, so they start only once the shard queues are empty."""
    from kombu import Connection

    from media_tasks.routing import shard_name
    from settings import load_settings

    settings = load_settings(stack.env)
    deadline = time.monotonic() + timeout
    with Connection(settings.rabbitmq_url) as connection:
        channel = connection.channel()
        while time.monotonic() < deadline:
            waiting = sum(
                channel.queue_declare(shard_name(settings, i), passive=True).message_count
                for i in range(settings.shards)
            )
            if waiting == 0:
                time.sleep(1.0)  # the tasks being run (prefetched, unacked) finish
                return
            time.sleep(0.2)
    raise AssertionError(f"the workers still had {waiting} tasks queued after {timeout} s")


OPERATIONS = (
    "POST /api/v1/sessions",
    "GET /api/v1/sessions",
    "GET /api/v1/sessions/{session_id}",
    "DELETE /api/v1/sessions/{session_id}",
    "POST /api/v1/sessions/{session_id}/participants",
    "DELETE /api/v1/sessions/{session_id}/participants/{participant_id}",
    "POST /api/v1/sessions/{session_id}/participants/{participant_id}/rejoin",
    "POST /api/v1/sessions/{session_id}/participants/{participant_id}/offers",
    "POST /api/v1/sessions/{session_id}/participants/{participant_id}/candidates",
    "GET /api/v1/sessions/{session_id}/participants/{participant_id}/messages",
    "POST /api/v1/sessions/{session_id}/messages",
    "DELETE /api/v1/sessions/{session_id}/participants/{participant_id}/streams/{name}",
    "POST /api/v1/sessions/{session_id}/participants/{participant_id}/streams/{name}/mute",
    # Without SIGNALING_API_KEYS (this stack) nobody holds a key: these answer 401 or 404/422 before it
    # (tests/integration/test_roles.py covers the token routes' input with a key).
    "POST /api/v1/sessions/{session_id}/tokens",
    "POST /api/v1/sessions/{session_id}/join-token",
    "POST /api/v1/sessions/{session_id}/recordings",
    "GET /api/v1/sessions/{session_id}/recordings",
    "GET /api/v1/sessions/{session_id}/recordings/{recording_id}",
    "POST /api/v1/sessions/{session_id}/recordings/{recording_id}/stop",
)


@pytest.fixture(scope="module")
def api_schema(stack):
    return schemathesis.openapi.from_url(f"{stack.base_url}/api/v1/openapi.json", config=CONFIG)


def test_the_document_lists_every_operation_fuzzed_here(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


def _mode(case, location: str) -> GenerationMode | None:
    for key, info in case.meta.components.items():
        if str(getattr(key, "value", key)) == location:
            return info.mode
    return None


def _use_real_ids(case, target: Fixture) -> str:
    """On every other case, the real session (and participant) ids; returns the token to send."""
    params = case.path_parameters or {}
    if not params or next(target.counter) % 2:
        return target.member.token
    if _mode(case, "path") == GenerationMode.NEGATIVE:
        return target.member.token  # an invalid path parameter stays invalid
    session, member = target.throwaway() if case.method.upper() == "DELETE" else (target.session, target.member)
    if "session_id" in params:
        params["session_id"] = session["session_id"]
    if "participant_id" in params:
        params["participant_id"] = member.participant_id
    target.real_id_cases += 1
    return member.token


def _cut_long_polls(case) -> None:
    wait = case.query.get("wait") if isinstance(case.query, dict) else None
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > MAX_WAIT_S:
        case.query["wait"] = MAX_WAIT_S


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_survives_generated_input(label, stack, api_schema, fuzz_target):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    checks = [CHECKS.get_one(name) for name in CHECK_NAMES]

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        token = _use_real_ids(case, fuzz_target)
        _cut_long_polls(case)
        started = time.monotonic()
        # The document declares the Bearer token: a case that leaves it out on purpose (negative)
        # is sent as it is; any other gets the real token instead of a generated one.
        headers = None if api_schema.is_security_param_negated(case) else {"Authorization": f"Bearer {token}"}
        response = case.call_and_validate(base_url=stack.base_url, headers=headers, timeout=30, checks=checks)
        fuzz_target.cases += 1
        fuzz_target.statuses[response.status_code] = fuzz_target.statuses.get(response.status_code, 0) + 1
        assert time.monotonic() - started < 10, "a fuzzed request took more than 10 s"
        if response.status_code >= 400:
            assert_error_shape(response)

    before = fuzz_target.cases
    run()
    print(
        f"\n{label}: {fuzz_target.cases - before} requests; all so far {dict(sorted(fuzz_target.statuses.items()))}, "
        f"{fuzz_target.real_id_cases} with real ids"
    )


def assert_error_shape(response) -> None:
    """assert_error of tests.support.checks, for schemathesis's Response."""
    content_type = (response.headers.get("content-type") or [""])[0]
    assert_error_body(response.status_code, content_type, response.content.decode("utf-8", "replace"), response.json)


def test_finding_poll_after_beyond_an_8_byte_int_is_refused(fuzz_target):
    """Found by a 400-example run: `after` above 2**63 - 1 reached MongoDB and was a 500."""
    # A member of its own: the fuzzed cases just sent spent the shared member's rate-limit window.
    _session, member = fuzz_target.throwaway()
    for after in (2**63, 10**30):
        response = fuzz_target.api.http.get(
            f"{member.base}/messages", params={"after": after, "wait": 0}, headers=member.headers
        )
        assert response.status_code == 422, response.text
        assert set(response.json()) == ERROR_KEYS
    ok = fuzz_target.api.http.get(
        f"{member.base}/messages", params={"after": 2**63 - 1, "wait": 0}, headers=member.headers
    )
    assert ok.status_code == 200, ok.text
