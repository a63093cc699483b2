"""Every request the SDK sends is an operation of the service's OpenAPI document that takes the API
key, with only query parameters and body fields that operation documents.

The requests are the SDK's own (each method called against the scripted local server); the document
is the one the service serves at /api/v1/openapi.json, built in-process from the app factory.

Until issue 14's other branches are merged, some of these fail by design, naming the route:
- i14-roles: POST /sessions/{sid}/tokens, POST /sessions/{sid}/join-token, and the API key on
  DELETE /sessions/{sid}/participants/{pid};
- i14-listing: GET /sessions, and the API key on POST /sessions/{sid}/messages.
Recordings are not in the service yet: those cases are expected failures (strict, so the marker
has to go when they land).
"""

from __future__ import annotations

import re

import pytest

from settings import load_settings
from signaling_web import create_app

# (name, call, the answer the scripted server gives); ids as the service would make them.
CALLS = [
    ("create_session", lambda c: c.create_session(name="n", max_participants=4), {}),
    ("get_session", lambda c: c.get_session("s1"), {"participants": []}),
    ("list_sessions", lambda c: c.list_sessions(state="open", limit=5, cursor="c"), {"sessions": []}),
    ("close_session", lambda c: c.close_session("s1"), {}),
    (
        "mint_token",
        lambda c: c.mint_token("s1", role="moderator", display_name="a", metadata={"k": 1}, ttl_s=60),
        {"role": "moderator", "expires_at": "2026-01-01T00:00:00Z"},
    ),
    ("rotate_join_token", lambda c: c.rotate_join_token("s1"), {}),
    ("remove_participant", lambda c: c.remove_participant("s1", "p1"), {}),
    ("send_message", lambda c: c.send_message("s1", {"a": 1}, to="p2"), {}),
]
RECORDING_CALLS = [
    ("start_recording", lambda c: c.start_recording("s1", "p1", name="screen", profile="mp4"), {}),
    ("list_recordings", lambda c: c.list_recordings("s1"), {"recordings": []}),
    ("get_recording", lambda c: c.get_recording("s1", "r1"), {}),
    ("stop_recording", lambda c: c.stop_recording("s1", "r1"), {}),
]
# Enough of every answer for any method's parser; each call adds its own fields.
ANSWER = {
    "session_id": "s1",
    "join_token": "jt",
    "name": "n",
    "state": "open",
    "recording_id": "r1",
    "participant_id": "p1",
    "profile": "webm",
    "uri": "file:///r1.webm",
    "next_cursor": None,
}


@pytest.fixture(scope="module")
def spec():
    settings = load_settings(
        {"SECRET_KEY": "sdk-test", "RATE_LIMIT_PER_S": "0", "MONGODB_URI": "mongodb://127.0.0.1:1/unused"}
    )
    response = create_app(settings).test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def operation_for(spec: dict, method: str, path: str) -> dict | None:
    for template, item in spec["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method in item:
            return item[method]
    return None


@pytest.mark.parametrize(
    ("call", "answer"),
    [pytest.param(call, answer, id=name) for name, call, answer in CALLS]
    + [pytest.param(call, answer, id=name) for name, call, answer in RECORDING_CALLS],
)
def test_the_sdk_calls_documented_operations_with_the_api_key(spec, service, client, call, answer):
    service.default.body = {**ANSWER, **answer}
    call(client)
    (sent,) = service.requests
    path, _, query = sent.path.partition("?")
    operation = operation_for(spec, sent.method.lower(), path)
    assert operation is not None, f"{sent.method} {path} is not in the service's OpenAPI document"
    assert {"apiKey": []} in operation["security"], f"{sent.method} {path} does not take the API key"
    parameters = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert {pair.split("=")[0] for pair in query.split("&") if pair} <= parameters
    if sent.body and sent.json:
        schema = resolve(spec, operation["requestBody"]["content"]["application/json"]["schema"])
        assert set(sent.json) <= set(schema["properties"]), (path, sorted(set(sent.json) - set(schema["properties"])))
