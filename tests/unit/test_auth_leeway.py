"""Participant tokens across instances whose clocks differ: TOKEN_LEEWAY_S either side."""

from __future__ import annotations

import time

import pytest
from itsdangerous import SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from settings import load_settings
from signaling_web.auth import TOKEN_SALT, _claims


def _token_from_a_clock(secret: str, offset_s: int) -> str:
    class SkewedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) + offset_s

    return URLSafeTimedSerializer(secret, salt=TOKEN_SALT, signer=SkewedSigner).dumps({"s": "S", "p": "P"})


@pytest.mark.parametrize("offset_s", [2, -2, 5])
def test_a_token_from_an_instance_whose_clock_differs_within_the_leeway_verifies(offset_s):
    settings = load_settings({"SECRET_KEY": "k" * 32, "TOKEN_LEEWAY_S": "5"})
    assert _claims(_token_from_a_clock(settings.secret_key, offset_s), settings) == {"s": "S", "p": "P"}


def test_a_token_from_further_in_the_future_than_the_leeway_or_past_its_ttl_is_expired():
    settings = load_settings({"SECRET_KEY": "k" * 32, "TOKEN_LEEWAY_S": "5", "TOKEN_TTL_S": "60"})
    with pytest.raises(SignatureExpired):
        _claims(_token_from_a_clock(settings.secret_key, 30), settings)
    with pytest.raises(SignatureExpired):
        _claims(_token_from_a_clock(settings.secret_key, -70), settings)


def test_without_leeway_a_token_from_a_clock_ahead_is_refused():
    settings = load_settings({"SECRET_KEY": "k" * 32, "TOKEN_LEEWAY_S": "0"})
    with pytest.raises(SignatureExpired):
        _claims(_token_from_a_clock(settings.secret_key, 2), settings)
