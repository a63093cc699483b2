"""The chart sets every environment variable settings.py reads, one values key per setting, with
values settings.py can parse."""

from __future__ import annotations

import base64
from dataclasses import fields

import settings as service_settings
from media_tasks.kms_discovery import media_servers

from .conftest import load_values, render

# Variables that carry credentials come from Secrets, not from `settings` in values.yaml.
FROM_SECRETS = {"RABBITMQ_URL", "MONGODB_URI", "SIGNALING_API_KEYS", "SECRET_KEY", "WEBHOOK_SECRET", "TURN_SECRET"}
# Derived by the chart from the kms.* values (external URLs, or the headless Service's name).
DERIVED = {"KMS_URLS", "KMS_DISCOVERY_DNS"}
# Hooks for fault tests only: never deployed.
TEST_ONLY = {"TEST_PAUSE_AFTER_OUTBOX_STORE"}


def env_names() -> set[str]:
    return {service_settings.env_name(f.name) for f in fields(service_settings.Settings)} - TEST_ONLY


def camel(env: str) -> str:
    first, *rest = env.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)


def test_values_settings_map_one_to_one_to_environment_variables():
    expected = {camel(name) for name in env_names() - FROM_SECRETS - DERIVED}
    assert set(load_values()["settings"]) == expected


def test_configmap_renders_each_setting_under_its_variable(default_render):
    data = default_render.get("ConfigMap", "signaling")["data"]
    assert set(data) == env_names() - FROM_SECRETS
    for key, value in load_values()["settings"].items():
        env = next(name for name in data if camel(name) == key)
        # Helm renders booleans as YAML does (false), which settings.py reads back as False.
        assert data[env] == (str(value).lower() if isinstance(value, bool) else str(value)), env


def test_every_service_container_gets_every_variable(default_render):
    configmap_keys = set(default_render.get("ConfigMap", "signaling")["data"])
    webhooks = render({"settings": {"webhookUrls": "https://backend.example/hooks"}})
    for rendered, name in [
        *((default_render, n) for n in ("signaling-web", "signaling-worker", "signaling-flower")),
        (webhooks, "signaling-webhooks"),
    ]:
        (container,) = rendered.get("Deployment", name)["spec"]["template"]["spec"]["containers"]
        provided = set(configmap_keys) | {e["name"] for e in container["env"]}
        assert env_names() <= provided, (name, env_names() - provided)


def test_settings_py_parses_the_rendered_environment(default_render):
    environ = dict(default_render.get("ConfigMap", "signaling")["data"])
    for secret in ("signaling", "signaling-connections"):
        environ.update(
            {k: base64.b64decode(v).decode() for k, v in default_render.get("Secret", secret)["data"].items()}
        )
    parsed = service_settings.load_settings(environ)
    values = load_values()["settings"]
    assert parsed.shards == values["shards"] and parsed.name_prefix == values["signalingPrefix"]
    assert parsed.max_poll_wait_s == float(values["maxPollWaitS"])
    servers = media_servers(parsed)
    assert servers.static == () and servers.discovery is not None
    assert servers.discovery.target.port == load_values()["kms"]["port"]
    assert parsed.kms_discovery_dns.startswith("signaling-kms-headless.")
    # Closed by default: the chart generated one API key.
    assert parsed.api_keys == (environ["SIGNALING_API_KEYS"],) and parsed.secret_key == environ["SECRET_KEY"]
    assert parsed.rabbitmq_url.startswith("amqp://") and "replicaSet=rs0" in parsed.mongodb_uri
    # Generated like SECRET_KEY, for the receivers to verify signatures with.
    assert len(parsed.webhook_secret) == 48 and parsed.webhook_urls == ()
    # Generated too, shared with the chart's coturn (turn.enabled); no TURN URLs, so no TURN entry yet.
    assert len(parsed.turn_secret) == 48 and parsed.turn_urls == () and parsed.ice_servers == ""
    assert parsed.trusted_proxies == 0 and parsed.turn_ttl_s == load_values()["settings"]["turnTtlS"]
