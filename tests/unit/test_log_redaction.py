"""Secrets never reach a log line: tokens, keys and the password of any URL with credentials."""

from __future__ import annotations

import pytest

from observability.logs import redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to amqp://guest:guest-pass@127.0.0.1:5672//", "guest-pass"),
        ("ServerSelectionTimeoutError: mongodb://app:s3cr%40t@db-0:27017/signaling", "s3cr%40t"),
        ("mongodb+srv://admin:hunter2@cluster0.example.net/signaling?w=majority", "hunter2"),
        ("redis://:only-a-password@cache:6379/0", "only-a-password"),
        ("Authorization: Bearer eyJzIjoiczEifQ.abc", "eyJzIjoiczEifQ.abc"),
        ('{"join_token": "tok-123"}', "tok-123"),
        ("X-API-Key: key-456", "key-456"),
    ],
)
def test_the_secret_is_replaced_and_the_rest_kept(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned and "***" in cleaned
    assert cleaned.split("***")[0] == text.split(secret)[0]  # what came before it is intact


def test_urls_without_credentials_are_left_alone():
    text = "KMS ws://10.0.0.7:8888/kurento answered; see http://host:15672/api"
    assert redact(text) == text
