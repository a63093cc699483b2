"""Settings are injected, never read at import: two web apps with different settings in one
process each talk to their own database (and their own queues), whatever the environment says."""

from __future__ import annotations

import secrets

import pytest
from pymongo import MongoClient

from models import bound_to, current_db, database_alias
from settings import Settings
from signaling_web import create_app

pytestmark = pytest.mark.integration


def _settings(rabbitmq_url: str, mongodb_uri: str, name: str) -> Settings:
    base = mongodb_uri.rsplit("/", 1)[0]
    return Settings(
        rabbitmq_url=rabbitmq_url,
        mongodb_uri=f"{base}/signaling_{name}_{secrets.token_hex(3)}",
        name_prefix=f"t{secrets.token_hex(3)}",
        api_keys=(f"key-{name}",),
        secret_key=f"secret-{name}",
        shard_queue_type="classic",
    )


def test_two_apps_with_different_settings_in_one_process_use_their_own_databases(
    rabbitmq_url, mongodb_uri, monkeypatch
):
    # The environment names a database neither app may touch.
    monkeypatch.setenv("MONGODB_URI", mongodb_uri.rsplit("/", 1)[0] + "/signaling_from_environment")
    first_settings = _settings(rabbitmq_url, mongodb_uri, "first")
    second_settings = _settings(rabbitmq_url, mongodb_uri, "second")
    first = create_app(first_settings).test_client()
    second = create_app(second_settings).test_client()

    created = {}
    for name, client in (("first", first), ("second", second)):  # interleaved on purpose
        response = client.post("/api/v1/sessions", json={"name": name}, headers={"X-API-Key": f"key-{name}"})
        assert response.status_code == 201, response.get_json()
        created[name] = response.get_json()["session_id"]

    read = first.get(f"/api/v1/sessions/{created['first']}", headers={"X-API-Key": "key-first"})
    assert read.status_code == 200 and read.get_json()["name"] == "first"
    assert first.get(f"/api/v1/sessions/{created['second']}", headers={"X-API-Key": "key-first"}).status_code == 404
    assert second.get(f"/api/v1/sessions/{created['first']}", headers={"X-API-Key": "key-second"}).status_code == 404
    # Each app's API key is its own.
    assert second.get(f"/api/v1/sessions/{created['second']}", headers={"X-API-Key": "key-first"}).status_code == 401

    # Acknowledged writes are majority writes, whatever the URI says.
    for settings in (first_settings, second_settings):
        with bound_to(database_alias(settings)):
            assert current_db().client.write_concern.document == {"w": "majority"}

    client = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        for name, settings in (("first", first_settings), ("second", second_settings)):
            database = client[settings.mongodb_uri.rsplit("/", 1)[1]]
            assert [doc["name"] for doc in database["sessions"].find()] == [name]
        assert "sessions" not in client["signaling_from_environment"].list_collection_names()
    finally:
        client.close()
