"""The management API URL Flower gets: completed to .../api/, with the broker's credentials."""

from __future__ import annotations

import pytest

from signaling_cli.rabbitmq_management import beside_broker, flower_broker_api, normalise, without_password

BROKER = "amqp://app:s%40cret@rabbit.example:5672/prod"


@pytest.mark.parametrize(
    "given", ["http://mq:15672", "http://mq:15672/", "http://mq:15672/api", "http://mq:15672/api/"]
)
def test_a_bare_or_partial_url_becomes_the_api_root_with_the_broker_credentials(given):
    assert normalise(given, BROKER) == "http://app:s%40cret@mq:15672/api/"


def test_credentials_and_a_path_prefix_of_the_url_are_kept():
    assert normalise("https://ops:pw@mq.example/rabbit", BROKER) == "https://ops:pw@mq.example/rabbit/api/"


def test_without_a_configured_url_the_plugin_is_looked_for_beside_the_broker():
    assert beside_broker(BROKER) == "http://app:s%40cret@rabbit.example:15672/api/"
    assert beside_broker("amqp://127.0.0.1//") == "http://guest:guest@127.0.0.1:15672/api/"


def test_a_configured_url_is_used_even_when_it_does_not_answer_yet():
    env = {"RABBITMQ_URL": BROKER, "RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:1"}
    assert flower_broker_api(env) == "http://app:s%40cret@127.0.0.1:1/api/"


def test_nothing_is_configured_when_no_management_api_answers():
    # Refused, or 401 for these credentials where the plugin runs: either way no usable API.
    assert flower_broker_api({"RABBITMQ_URL": "amqp://nobody:wrong@127.0.0.1:5672//"}) is None


def test_passwords_are_not_printed():
    assert without_password("http://app:s%40cret@mq:15672/api/") == "http://app:***@mq:15672/api/"
