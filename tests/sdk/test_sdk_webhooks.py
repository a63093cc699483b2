"""Webhook verification in the SDK, against the service's own signer (messaging.webhook_events): a
body the service signed verifies, any other body, secret or header does not, and the SDK's names
for the headers and event types are the service's."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime

import pytest

from messaging import webhook_events
from signaling_sdk import WebhookSignatureError, parse_event, signature, verify_event, verify_signature
from signaling_sdk import webhooks as sdk_webhooks

SECRET = "whsec-test"
EVENT = {
    "id": "3f0c6a0e1b8d4f1c9e0a7d2b5c4e3f21",
    "type": "participantJoined",
    "session_id": "s1",
    "participant_id": "p9",
    "at": "2025-01-31T09:12:45.123Z",
    "data": {"display_name": "alice"},
}
BODY = json.dumps(EVENT, separators=(",", ":")).encode()


def test_a_body_the_service_signed_verifies_and_parses():
    header = webhook_events.signature(SECRET, BODY)
    assert signature(SECRET, BODY) == header
    assert verify_signature(SECRET, BODY, header)
    event = verify_event(SECRET, BODY, {"content-type": "application/json", "x-signaling-signature": header})
    assert (event.id, event.type, event.session_id, event.participant_id) == (
        EVENT["id"],
        "participantJoined",
        "s1",
        "p9",
    )
    assert event.at == datetime(2025, 1, 31, 9, 12, 45, 123000, tzinfo=UTC)
    assert event.data == {"display_name": "alice"} and event.raw == EVENT


@pytest.mark.parametrize(
    ("body", "secret", "header"),
    [
        (BODY.replace(b"alice", b"mallory"), SECRET, "signed"),  # body changed in transit
        (json.dumps(EVENT, indent=1).encode(), SECRET, "signed"),  # the same JSON, other bytes
        (BODY, "another secret", "signed"),
        (BODY, SECRET, None),
        (BODY, SECRET, ""),
        (BODY, SECRET, "sha1=" + "0" * 40),
        (BODY, SECRET, "signed-upper"),
    ],
    ids=["tampered", "reserialised", "wrong-secret", "no-header", "empty-header", "other-scheme", "case-changed"],
)
def test_anything_but_the_signed_bytes_under_the_secret_is_refused(body, secret, header):
    signed = webhook_events.signature(SECRET, BODY)
    value = {"signed": signed, "signed-upper": signed.upper()}.get(header, header)
    assert not verify_signature(secret, body, value)
    with pytest.raises(WebhookSignatureError):
        verify_event(secret, body, value)


def test_headers_are_looked_up_whatever_their_case_or_given_as_the_value():
    header = webhook_events.signature(SECRET, BODY)
    assert verify_event(SECRET, BODY, {"X-Signaling-Signature": header}).id == EVENT["id"]
    assert verify_event(SECRET, BODY, header).id == EVENT["id"]
    with pytest.raises(WebhookSignatureError):
        verify_event(SECRET, BODY, {"X-Other": header})


def test_an_empty_secret_is_a_configuration_error_not_a_check_that_passes():
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        verify_signature("", BODY, webhook_events.signature("", BODY))


def test_an_event_about_the_session_has_no_participant_id():
    event = parse_event(json.dumps({**EVENT, "type": "sessionClosed", "data": {"reason": "empty"}} | {"x": 1}))
    assert event.type == "sessionClosed" and event.data == {"reason": "empty"}
    body = {k: v for k, v in EVENT.items() if k != "participant_id"}
    assert parse_event(json.dumps(body)).participant_id is None


def test_the_sdk_names_the_services_headers_and_event_types():
    assert sdk_webhooks.SIGNATURE_HEADER == webhook_events.SIGNATURE_HEADER
    assert sdk_webhooks.EVENT_ID_HEADER == webhook_events.EVENT_ID_HEADER
    assert typing.get_args(sdk_webhooks.EventType) == typing.get_args(webhook_events.EventType)
