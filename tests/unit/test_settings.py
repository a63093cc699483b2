from __future__ import annotations

from settings import Settings, load_settings


def test_defaults_when_environment_is_empty(tmp_path, monkeypatch):
    settings = load_settings({"SECRET_KEY": "k"})
    assert settings == Settings(secret_key="k")


def test_every_field_comes_from_its_variable():
    settings = load_settings(
        {
            "RABBITMQ_URL": "amqp://u:p@h:1/v",
            "MONGODB_URI": "mongodb://m/db",
            "KMS_URLS": "ws://a/kurento, ws://b/kurento",
            "SIGNALING_API_KEYS": "k1,k2",
            "SECRET_KEY": "s",
            "SHARDS": "3",
            "MAX_POLL_WAIT_S": "12.5",
            "SHARD_QUEUE_TYPE": "classic",
            "CORS_ORIGINS": "https://app.example",
        }
    )
    assert settings.kms_urls == ("ws://a/kurento", "ws://b/kurento")
    assert settings.api_keys == ("k1", "k2")
    assert (settings.shards, settings.max_poll_wait_s, settings.shard_queue_type) == (3, 12.5, "classic")
    assert settings.cors_origins == ("https://app.example",)


def test_dev_secret_is_generated_once_and_kept(tmp_path, monkeypatch):
    import settings as settings_module

    monkeypatch.setattr(settings_module, "VAR_DIR", tmp_path)
    first = load_settings({}).secret_key
    assert len(first) > 40 and (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert load_settings({}).secret_key == first
