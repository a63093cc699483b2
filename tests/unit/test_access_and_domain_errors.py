"""Domain errors become HTTP answers in one place, and access roles refuse before any domain work.

In-process through the app factory with an unreachable database: every request here is refused
(or answered) before anything touches MongoDB or RabbitMQ.
"""

from __future__ import annotations

import inspect

import pytest
from flask.views import MethodView

from models import errors as domain
from settings import load_settings
from signaling_web import access, auth, create_app
from signaling_web.errors import STATUS_BY_KIND, status_of
from signaling_web.extensions import Blueprint
from signaling_web.openapi import errors

ERROR_KEYS = {"code", "status", "message", "errors"}


def make_app(**environ):
    settings = load_settings(
        {
            "SECRET_KEY": "access-test",
            "RATE_LIMIT_PER_S": "0",
            "MONGODB_URI": "mongodb://127.0.0.1:1/unused",
            "LOG_FORMAT": "text",
            **environ,
        }
    )
    return create_app(settings)


def concrete_domain_errors():
    for module in (domain, auth):
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, domain.DomainError) and cls not in (domain.DomainError, *STATUS_BY_KIND):
                yield cls


def test_every_domain_error_has_a_kind_and_so_a_status():
    found = list(concrete_domain_errors())
    assert {c.__name__ for c in found} >= {"SessionNotFound", "SessionFull", "ParticipantLeft", "TokenRequired"}
    arguments = {
        domain.SessionFull: (16,),
        domain.StreamNotFound: ("p2",),
        domain.RecipientNotFound: ("p2",),
        domain.NotPublishing: ("p2", "main"),
    }
    for cls in found:
        exc = cls(*arguments.get(cls, ()))
        assert status_of(exc) in {401, 403, 404, 409, 422}, cls
        assert exc.message and exc.message != domain.DomainError.message, cls


def test_a_domain_error_leaves_in_the_error_shape_with_its_kinds_status():
    app = make_app()

    @app.get("/raise/<kind>")
    def raise_it(kind: str):
        raise {
            "full": domain.SessionFull(3),
            "gone": domain.SessionNotFound(),
            "own": domain.OwnStreamById(),
            "kindless": domain.DomainError("must not leak"),
        }[kind]

    client = app.test_client()
    full = client.get("/raise/full")
    assert full.status_code == 409
    assert full.get_json() == {
        "code": 409,
        "status": "Conflict",
        "message": "The session is full (3 participants).",
        "errors": {},
    }
    assert client.get("/raise/gone").get_json()["message"] == "No such session."
    own = client.get("/raise/own")
    assert own.status_code == 422 and own.get_json()["errors"] == {"stream": ["own participant id"]}
    kindless = client.get("/raise/kindless")
    assert kindless.status_code == 500 and kindless.get_json()["message"] == "Internal error; it has been logged."


def test_errors_refuses_an_operation_that_declares_no_access_role():
    blp = Blueprint("undeclared", __name__)

    with pytest.raises(TypeError, match="access role"):

        class Undeclared(MethodView):
            @errors(blp)
            def get(self):
                return {}


def test_participant_role_refuses_a_missing_or_foreign_token_before_any_domain_work():
    app = make_app()
    client = app.test_client()
    rejoin = "/api/v1/sessions/s1/participants/p1/rejoin"
    missing = client.post(rejoin)
    assert missing.status_code == 401 and missing.get_json()["message"] == auth.TokenRequired.message
    with app.app_context():
        other_participant = auth.issue_token("s1", "p2")
    foreign = client.post(rejoin, headers={"Authorization": f"Bearer {other_participant}"})
    assert foreign.status_code == 403 and foreign.get_json()["message"] == auth.NotYourParticipant.message
    garbled = client.post(rejoin, headers={"Authorization": "Bearer not-a-token"})
    assert garbled.status_code == 401 and garbled.get_json()["message"] == auth.TokenNotValid.message
    assert set(garbled.get_json()) == ERROR_KEYS


def test_closing_needs_the_api_key_or_a_moderator_and_a_publisher_token_never_closes():
    session = "/api/v1/sessions/s1"
    for app in (make_app(SIGNALING_API_KEYS="k1"), make_app()):  # with keys, and an open deployment
        with app.app_context():
            member = auth.issue_token("s1", "p1")
            subscriber = auth.issue_token("s1", "p2", "subscriber")
            elsewhere = auth.issue_token("s2", "p3", "moderator")
        client = app.test_client()
        for token in (member, subscriber):
            refused = client.delete(session, headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 403 and refused.get_json()["message"] == domain.NotAModerator.message
        refused = client.delete(session, headers={"Authorization": f"Bearer {elsewhere}"})
        assert refused.status_code == 403 and refused.get_json()["message"] == auth.NotYourSession.message
        for headers in ({}, {"X-API-Key": "k2"}):
            refused = client.delete(session, headers=headers)
            assert refused.status_code == 401 and refused.get_json()["message"] == auth.TokenRequired.message


def test_creating_a_session_needs_the_api_key_only_when_keys_are_configured():
    refused = make_app(SIGNALING_API_KEYS="k1").test_client().post("/api/v1/sessions", json={"name": "x"})
    assert refused.status_code == 401 and refused.get_json()["message"] == auth.ApiKeyRequired.message
    assert access.operator_if_configured.security == [{"apiKey": []}, {}]
