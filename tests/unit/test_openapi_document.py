"""The OpenAPI document: every operation says who may call it, documents every error it can
return in the error shape, and has request and response examples that fit its schemas.

Built in-process from the app factory (no database or broker is touched). The few errors that
need neither are also provoked for real, to check that the documented examples are what the
service sends.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest

from settings import load_settings
from signaling_web import auth, create_app

ERROR_KEYS = {"code", "status", "message", "errors"}
EVERY_ROUTE = {"429", "503"}
EVERY_POST = {"400", "409", "413", "422"}  # 422: an Idempotency-Key reused with another body
# What each operation can return besides those, read from its code (auth, membership, schemas).
EXPECTED = {
    ("post", "/api/v1/sessions"): {"401", "422"},
    ("get", "/api/v1/sessions"): {"401", "422"},
    ("get", "/api/v1/sessions/{session_id}"): {"401", "403", "404", "409"},
    ("delete", "/api/v1/sessions/{session_id}"): {"401", "403", "404", "409"},  # 403: not a moderator
    ("post", "/api/v1/sessions/{session_id}/participants"): {"403", "404", "409", "422"},
    ("post", "/api/v1/sessions/{session_id}/tokens"): {"401", "404", "409", "422"},
    ("post", "/api/v1/sessions/{session_id}/join-token"): {"401", "404", "409"},
    ("delete", "/api/v1/sessions/{session_id}/participants/{participant_id}"): {"401", "403", "404", "409"},
    ("post", "/api/v1/sessions/{session_id}/participants/{participant_id}/rejoin"): {"401", "403", "404", "409"},
    ("post", "/api/v1/sessions/{session_id}/participants/{participant_id}/offers"): {"401", "403", "404", "409", "422"},
    ("post", "/api/v1/sessions/{session_id}/participants/{participant_id}/candidates"): {
        "401",
        "403",
        "404",
        "409",
        "422",
    },
    ("get", "/api/v1/sessions/{session_id}/participants/{participant_id}/messages"): {"401", "403", "404", "422"},
    ("post", "/api/v1/sessions/{session_id}/messages"): {"401", "403", "404", "409", "422"},
    ("delete", "/api/v1/sessions/{session_id}/participants/{participant_id}/streams/{name}"): {
        "401",
        "403",
        "404",
        "422",
    },
    ("post", "/api/v1/sessions/{session_id}/participants/{participant_id}/streams/{name}/mute"): {
        "401",
        "403",
        "404",
        "422",
    },
    ("post", "/api/v1/sessions/{session_id}/recordings"): {"401", "404", "409", "422"},
    ("get", "/api/v1/sessions/{session_id}/recordings"): {"401", "404"},
    ("get", "/api/v1/sessions/{session_id}/recordings/{recording_id}"): {"401", "404"},
    ("post", "/api/v1/sessions/{session_id}/recordings/{recording_id}/stop"): {"401", "404"},
}


@pytest.fixture(scope="module")
def app():
    settings = load_settings(
        {
            "SECRET_KEY": "openapi-test",
            "RATE_LIMIT_PER_S": "0",
            "MONGODB_URI": "mongodb://127.0.0.1:1/unused",
            "LOG_FORMAT": "text",
        }
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def spec(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, operation


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def json_schema(spec, schema):
    """An OpenAPI 3.0 schema as plain JSON Schema: references inlined, `nullable` as a type."""
    schema = copy.deepcopy(resolve(spec, schema))
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    for key in ("properties",):
        for name, sub in schema.get(key, {}).items():
            schema[key][name] = json_schema(spec, sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = json_schema(spec, schema[key])
    return schema


def test_security_schemes_are_the_participant_token_and_the_api_key(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["participantToken"] == {**schemes["participantToken"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}


def test_every_operation_says_who_may_call_it(spec):
    for method, path, operation in operations(spec):
        assert "security" in operation, (method, path)
        names = {name for requirement in operation["security"] for name in requirement}
        assert names <= set(spec["components"]["securitySchemes"]), (method, path)
        if "/streams/" in path:  # a participant's own publications, the API key (or a moderator)
            assert operation["security"] == [{"apiKey": []}, {"participantToken": []}], (method, path)
        elif "{participant_id}" in path:
            # Removing a participant: also the API key (or a moderator's token, still a participantToken).
            removal = method == "delete" and path.endswith("/{participant_id}")
            expected = [{"apiKey": []}, {"participantToken": []}] if removal else [{"participantToken": []}]
            assert operation["security"] == expected, (method, path)
        if path.endswith(("/tokens", "/join-token")):
            assert operation["security"] == [{"apiKey": []}], (method, path)
    # The application's backend sends with its API key (`from` "server"), participants with their token.
    send = spec["paths"]["/api/v1/sessions/{session_id}/messages"]["post"]
    assert send["security"] == [{"apiKey": []}, {"participantToken": []}]
    assert spec["paths"]["/api/v1/sessions"]["get"]["security"] == [{"apiKey": []}]
    join = spec["paths"]["/api/v1/sessions/{session_id}/participants"]["post"]
    assert join["security"] == [], "joining needs only the join token in the body"


def test_every_operation_documents_every_error_it_can_return(spec):
    assert {(m, p) for m, p, _o in operations(spec)} == set(EXPECTED)
    for method, path, operation in operations(spec):
        expected = EXPECTED[(method, path)] | EVERY_ROUTE | (EVERY_POST if method == "post" else set())
        documented = {code for code in operation["responses"] if code.startswith(("4", "5"))}
        assert documented == expected, (method, path, sorted(documented ^ expected))
        for code in EVERY_ROUTE:
            assert "Retry-After" in resolve(spec, operation["responses"][code]).get("headers", {}), (path, code)
        if method == "post":
            assert "Idempotency-Key" in {p["name"] for p in operation.get("parameters", [])}, path
            assert "Idempotency-Key" in resolve(spec, operation["responses"]["422"])["description"], path
        if "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", [])):
            assert "invalid" in resolve(spec, operation["responses"]["422"])["description"], (method, path)
        for code in documented:
            response = resolve(spec, operation["responses"][code])
            assert response["description"], (method, path, code)
            content = response["content"]["application/json"]
            assert resolve(spec, content["schema"]) == spec["components"]["schemas"]["Error"], (path, code)


def test_every_response_and_request_has_an_example_that_fits_its_schema(spec):
    for method, path, operation in operations(spec):
        for code, response in operation["responses"].items():
            content = resolve(spec, response)["content"]["application/json"]
            assert "example" in content, (method, path, code)
            example = content["example"]
            jsonschema.validate(example, json_schema(spec, content["schema"]))
            if code.startswith(("4", "5")) and code != "default":
                assert set(example) == ERROR_KEYS and example["code"] == int(code), (method, path, code)
        if "requestBody" in operation:
            content = operation["requestBody"]["content"]["application/json"]
            assert "example" in content, (method, path)
            jsonschema.validate(content["example"], json_schema(spec, content["schema"]))
        for parameter in operation.get("parameters", []):
            if parameter["in"] in ("query", "header"):
                assert "example" in parameter or "example" in parameter["schema"], (method, path, parameter["name"])


def documented_example(spec, method, path, code):
    return resolve(spec, spec["paths"][path][method]["responses"][code])["content"]["application/json"]["example"]


def test_the_examples_are_what_the_service_sends(app, spec):
    """The errors that need no database, provoked for real, against their documented examples."""
    client = app.test_client()
    sessions = "/api/v1/sessions"
    messages = "/api/v1/sessions/{session_id}/participants/{participant_id}/messages"
    too_big = client.post(
        sessions, data="x" * (app.extensions["signaling_settings"].max_body_bytes + 1), content_type="application/json"
    )
    assert too_big.status_code == 413
    assert too_big.get_json() == documented_example(spec, "post", sessions, "413")
    bad_key = client.post(sessions, json={}, headers={"Idempotency-Key": "k" * 256})
    assert bad_key.get_json() == documented_example(spec, "post", sessions, "400")
    poll = "/api/v1/sessions/s1/participants/p1/messages"
    assert client.get(poll).get_json() == documented_example(spec, "get", messages, "401")
    with app.app_context():
        someone_else = auth.issue_token("s1", "p2")
    other = client.get(poll, headers={"Authorization": f"Bearer {someone_else}"})
    assert other.get_json() == documented_example(spec, "get", messages, "403")
    invalid = client.get(poll, query_string={"wait": "forever"})
    body = invalid.get_json()
    assert invalid.status_code == 422 and set(body) == ERROR_KEYS
    assert body["message"] == documented_example(spec, "get", messages, "422")["message"]
