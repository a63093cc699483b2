"""Render the chart with Helm's engine and check the manifests: valid Kubernetes for the oldest and
newest versions kubernetes-validate ships schemas for, KEDA's ScaledObject checked by hand (a CRD),
and the wiring between objects (names, selectors, secrets, KMS DNS, shard queues)."""

from __future__ import annotations

import base64
import re
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from .conftest import NAMESPACE, RELEASE, Rendered, load_values, render, render_error

KUBE_VERSIONS = ("1.25.0", "1.37.0")  # Chart.yaml kubeVersion >=1.25; the newest schemas shipped
OUR_IMAGE = load_values()["image"]["repository"]
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

KEDA = {"worker": {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": False}}}}
HPA = {"worker": {"autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": True}}}}
NO_AUTOSCALING = {"worker": {"autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": False}}}}
EXTERNAL = {
    "rabbitmq": {"enabled": False},
    "mongodb": {"enabled": False},
    "externalRabbitmq": {
        "url": "amqp://sig:pw@broker.example:5672/sig",
        "managementUrl": "http://sig:pw@broker.example:15672",
    },
    "externalMongodb": {"uri": "mongodb://sig:pw@db-0.example,db-1.example/signaling?replicaSet=rs0"},
}
EXISTING_SECRETS = {
    "rabbitmq": {"enabled": False},
    "mongodb": {"enabled": False},
    "externalRabbitmq": {"existingSecret": "broker-urls"},
    "externalMongodb": {"existingSecret": "db-uri"},
    "secrets": {"existingSecret": "signaling-keys"},
}
EMULATOR = {"kms": {"useEmulator": True, "emulatorMode": "signaling", "replicas": 3}}

VARIANTS = {
    "defaults": {},
    "keda": KEDA,
    "hpa": HPA,
    "no-autoscaling": NO_AUTOSCALING,
    "external": EXTERNAL,
    "existing-secrets": EXISTING_SECRETS,
    "emulator": EMULATOR,
    "external-kms": {"kms": {"enabled": False, "externalUrls": ["ws://kms-a:8888/kurento", "ws://kms-b:8888/kurento"]}},
    "flower-auth": {"flower": {"basicAuthSecret": "flower-auth"}},
    "webhooks": {"settings": {"webhookUrls": "https://a.example/hooks,https://b.example/hooks"}},
    "turn": {
        "turn": {
            "enabled": True,
            "externalIp": "203.0.113.7",
            "extraArgs": ["--denied-peer-ip=192.168.0.0-192.168.255.255"],
        },
        "settings": {"turnUrls": "turn:turn.example.org:3478?transport=udp,turn:turn.example.org:3478?transport=tcp"},
    },
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request) -> tuple[str, Rendered]:
    return request.param, render(VARIANTS[request.param])


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def containers(rendered: Rendered, kind: str, name: str) -> list[dict]:
    return pod_spec(rendered.get(kind, name))["containers"]


def secret_data(rendered: Rendered, name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in rendered.get("Secret", name)["data"].items()}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# --- every variant ----------------------------------------------------------------------------


def test_manifests_are_valid_kubernetes(variant):
    _, rendered = variant
    for manifest in rendered.manifests():
        if manifest["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked in test_keda_scaled_object
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_names_and_labels(variant):
    _, rendered = variant
    for doc in rendered.docs:
        name = doc["metadata"]["name"]
        assert DNS_1123.match(name) and len(name) <= 63, name
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "namespace" not in doc["metadata"]  # helm sets it at install


def test_selectors_match_their_pods(variant):
    _, rendered = variant
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads}
    for workload in workloads:
        assert workload["spec"]["selector"]["matchLabels"].items() <= pods[workload["metadata"]["name"]].items()
    for obj in rendered.of_kind("Service") + rendered.of_kind("PodDisruptionBudget"):
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matching = [name for name, labels in pods.items() if selector.items() <= labels.items()]
        assert len(matching) == 1, f"{obj['kind']}/{obj['metadata']['name']} selects {matching}"


def test_references_resolve(variant):
    """Every ConfigMap/Secret a pod reads is rendered with that key, or is a declared existing Secret."""
    name, rendered = variant
    external = {"broker-urls", "db-uri", "signaling-keys", "flower-auth"}
    for workload in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet"):
        spec = pod_spec(workload)
        assert (
            spec["serviceAccountName"] == rendered.get("ServiceAccount", spec["serviceAccountName"])["metadata"]["name"]
        )
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                rendered.get("ConfigMap", source["configMapRef"]["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                if ref["name"] in external:
                    continue
                assert ref["key"] in rendered.get("Secret", ref["name"])["data"], (name, env["name"])


def test_our_pods_run_as_non_root_with_requests(variant):
    _, rendered = variant
    for workload in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet"):
        spec = pod_spec(workload)
        for container in spec["containers"]:
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= requests.keys(), workload["metadata"]["name"]
            if not container["image"].startswith(OUR_IMAGE + ":"):
                continue  # Kurento's own image runs as its image says
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] != 0
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_never_both_autoscalers(variant):
    _, rendered = variant
    assert len(rendered.of_kind("ScaledObject")) + len(rendered.of_kind("HorizontalPodAutoscaler")) <= 1


# --- defaults -----------------------------------------------------------------------------------


def test_default_objects(default_render):
    assert default_render.kinds() == sorted(
        [
            ("ConfigMap", "signaling"),
            ("Deployment", "signaling-flower"),
            ("Deployment", "signaling-web"),
            ("Deployment", "signaling-worker"),
            ("HorizontalPodAutoscaler", "signaling-worker"),
            ("PodDisruptionBudget", "signaling-web"),
            ("PodDisruptionBudget", "signaling-worker"),
            ("Secret", "signaling"),
            ("Secret", "signaling-connections"),
            ("Secret", "signaling-signaling-credentials"),
            ("Service", "signaling-flower"),
            ("Service", "signaling-kms-headless"),
            ("Service", "signaling-web"),
            ("ServiceAccount", "signaling"),
            ("StatefulSet", "signaling-kms"),
        ]
    )
    assert "signaling-web.media.svc" in default_render.notes


def test_web_probes_and_shutdown(default_render):
    (web,) = containers(default_render, "Deployment", "signaling-web")
    assert web["command"][:3] == ["gunicorn", "--worker-class", "gevent"]
    assert web["command"][-1] == "signaling_web.wsgi:app"
    assert web["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert web["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert web["ports"][0]["name"] == "http"
    graceful = int(web["command"][web["command"].index("--graceful-timeout") + 1])
    spec = pod_spec(default_render.get("Deployment", "signaling-web"))
    assert float(default_render.get("ConfigMap", "signaling")["data"]["MAX_POLL_WAIT_S"]) < graceful
    assert spec["terminationGracePeriodSeconds"] > graceful + int(web["lifecycle"]["preStop"]["exec"]["command"][1])


def test_worker_consumes_every_shard_and_has_a_liveness_ping(default_render):
    (worker,) = containers(default_render, "Deployment", "signaling-worker")
    command = worker["command"]
    assert command[:4] == ["celery", "-A", "media_tasks.app", "worker"]
    assert command[command.index("-Q") + 1] == ",".join(f"signaling.shard.{i}" for i in range(8))
    assert command[command.index("-n") + 1] == "celery@%h"  # the name the probe pings
    probe = " ".join(worker["livenessProbe"]["exec"]["command"])
    assert 'celery -A media_tasks.app inspect ping -d "celery@${HOSTNAME}"' in probe
    values = load_values()["worker"]
    assert (
        pod_spec(default_render.get("Deployment", "signaling-worker"))["terminationGracePeriodSeconds"]
        > values["longestTaskSeconds"]
    )


def test_shards_and_prefix_come_from_values():
    rendered = render({"settings": {"shards": 3, "signalingPrefix": "acme"}})
    (worker,) = containers(rendered, "Deployment", "signaling-worker")
    assert worker["command"][worker["command"].index("-Q") + 1] == "acme.shard.0,acme.shard.1,acme.shard.2"
    data = rendered.get("ConfigMap", "signaling")["data"]
    assert (data["SHARDS"], data["SIGNALING_PREFIX"]) == ("3", "acme")


def test_kms_statefulset_discovered_through_its_headless_service(default_render):
    data = default_render.get("ConfigMap", "signaling")["data"]
    assert data["KMS_DISCOVERY_DNS"] == f"{RELEASE}-kms-headless.{NAMESPACE}.svc.cluster.local:8888/kurento"
    assert data["KMS_URLS"] == ""
    sts = default_render.get("StatefulSet", "signaling-kms")
    headless = default_render.get("Service", "signaling-kms-headless")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert headless["spec"]["ports"][0]["port"] == 8888
    (kms,) = pod_spec(sts)["containers"]
    assert kms["image"] == "kurento/kurento-media-server:7.3.0"
    assert kms["ports"][0]["containerPort"] == 8888


def test_kms_discovery_follows_release_namespace_and_cluster_domain_not_replicas():
    rendered = render(
        {"kms": {"replicas": 3, "clusterDomain": "corp.internal", "port": 9000}}, name="prod", namespace="rtc"
    )
    data = rendered.get("ConfigMap", "prod-signaling")["data"]
    assert data["KMS_DISCOVERY_DNS"] == "prod-signaling-kms-headless.rtc.svc.corp.internal:9000/kurento"
    assert data == {
        **render(
            {"kms": {"replicas": 5, "clusterDomain": "corp.internal", "port": 9000}}, name="prod", namespace="rtc"
        ).get("ConfigMap", "prod-signaling")["data"]
    }, "scaling the media servers must not change the ConfigMap (and roll web and worker pods)"


def test_external_media_servers_are_listed_not_discovered():
    data = render(VARIANTS["external-kms"]).get("ConfigMap", "signaling")["data"]
    assert data["KMS_URLS"] == "ws://kms-a:8888/kurento,ws://kms-b:8888/kurento"
    assert data["KMS_DISCOVERY_DNS"] == ""


def test_emulator_instead_of_kurento():
    rendered = render(EMULATOR)
    (kms,) = containers(rendered, "StatefulSet", "signaling-kms")
    assert kms["image"].startswith(OUR_IMAGE + ":")
    assert kms["command"] == [
        "python",
        "-m",
        "kms_emulator",
        "--host",
        "0.0.0.0",
        "--port",
        "8888",
        "--path",
        "kurento",
        "--mode",
        "signaling",
    ]
    assert rendered.get("ConfigMap", "signaling")["data"]["KMS_DISCOVERY_DNS"].startswith("signaling-kms-headless.")


def test_bundled_broker_and_database_passwords_agree(default_render):
    creds = secret_data(default_render, "signaling-signaling-credentials")
    conn = secret_data(default_render, "signaling-connections")
    amqp, mgmt, mongo = (
        urlsplit(conn["RABBITMQ_URL"]),
        urlsplit(conn["RABBITMQ_MGMT_URL"]),
        urlsplit(conn["MONGODB_URI"]),
    )
    assert (amqp.scheme, amqp.hostname, amqp.port, amqp.path) == ("amqp", "signaling-rabbitmq.media.svc", 5672, "//")
    assert (mgmt.scheme, mgmt.hostname, mgmt.port) == ("http", "signaling-rabbitmq.media.svc", 15672)
    assert amqp.username == mgmt.username == "signaling"
    assert amqp.password == mgmt.password == creds["rabbitmq-password"]
    assert len(creds["rabbitmq-password"]) == 32
    hosts = mongo.netloc.split("@", 1)[1].split(",")
    assert hosts == [f"signaling-mongodb-{i}.signaling-mongodb-headless.media.svc:27017" for i in range(3)]
    assert mongo.path == "/signaling" and mongo.query == "replicaSet=rs0&authSource=signaling"
    assert mongo.netloc.split("@")[0] == f"signaling:{creds['mongodb-passwords']}"
    assert {"mongodb-root-password", "mongodb-replica-set-key"} <= creds.keys()
    app = secret_data(default_render, "signaling")
    assert len(app["SECRET_KEY"]) == 64
    # Closed by default: a key is generated rather than leaving session creation open.
    assert len(app["SIGNALING_API_KEYS"]) == 40 and "generated" in default_render.notes
    assert "WARNING" not in default_render.notes


def test_open_creation_only_when_asked_for_and_given_keys_are_kept():
    opened = render({"secrets": {"allowOpenCreation": True}})
    assert secret_data(opened, "signaling")["SIGNALING_API_KEYS"] == ""
    assert "anyone who reaches the API can create sessions" in opened.notes
    given = render({"secrets": {"apiKeys": "k1,k2"}})
    assert secret_data(given, "signaling")["SIGNALING_API_KEYS"] == "k1,k2"


def test_subcharts_read_the_generated_credentials():
    values = load_values()
    # Bitnami runs `tpl` over these names; the chart refuses any other value (test_misconfigurations).
    assert values["rabbitmq"]["auth"]["existingPasswordSecret"] == "{{ .Release.Name }}-signaling-credentials"
    assert values["mongodb"]["auth"]["existingSecret"] == "{{ .Release.Name }}-signaling-credentials"
    assert values["rabbitmq"]["image"]["repository"].startswith("bitnamilegacy/")
    assert values["mongodb"]["image"]["repository"].startswith("bitnamilegacy/")
    assert values["global"]["security"]["allowInsecureImages"] is True


def test_external_services():
    rendered = render(EXTERNAL)
    conn = secret_data(rendered, "signaling-connections")
    assert conn == {
        "RABBITMQ_URL": EXTERNAL["externalRabbitmq"]["url"],
        "RABBITMQ_MGMT_URL": EXTERNAL["externalRabbitmq"]["managementUrl"],
        "MONGODB_URI": EXTERNAL["externalMongodb"]["uri"],
    }
    assert not [d for d in rendered.of_kind("Secret") if d["metadata"]["name"].endswith("credentials")]


def test_existing_secrets():
    rendered = render(EXISTING_SECRETS)
    assert [d["metadata"]["name"] for d in rendered.of_kind("Secret")] == []
    (web,) = containers(rendered, "Deployment", "signaling-web")
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env_of(web).items()}
    assert refs["RABBITMQ_URL"] == {"name": "broker-urls", "key": "RABBITMQ_URL"}
    assert refs["RABBITMQ_MGMT_URL"] == {"name": "broker-urls", "key": "RABBITMQ_MGMT_URL"}
    assert refs["MONGODB_URI"] == {"name": "db-uri", "key": "MONGODB_URI"}
    assert refs["SECRET_KEY"] == {"name": "signaling-keys", "key": "SECRET_KEY"}
    assert refs["SIGNALING_API_KEYS"] == {"name": "signaling-keys", "key": "SIGNALING_API_KEYS"}


def test_webhook_worker_only_with_receivers_and_only_on_its_queue(default_render):
    assert "signaling-webhooks" not in [name for _, name in default_render.kinds()]
    rendered = render({"settings": {"webhookUrls": "https://a.example/hooks", "signalingPrefix": "acme"}})
    (webhooks,) = containers(rendered, "Deployment", "signaling-webhooks")
    command = webhooks["command"]
    assert command[:4] == ["celery", "-A", "media_tasks.webhook_app", "worker"]
    assert command[command.index("-Q") + 1] == "acme.webhooks"
    assert env_of(webhooks)["WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "signaling",
        "key": "WEBHOOK_SECRET",
        "optional": True,
    }
    assert rendered.get("ConfigMap", "signaling")["data"]["WEBHOOK_URLS"] == "https://a.example/hooks"


def test_flower(default_render):
    (flower,) = containers(default_render, "Deployment", "signaling-flower")
    assert flower["command"][:4] == ["celery", "-A", "media_tasks.app", "flower"]
    assert "--address=0.0.0.0" in flower["command"]
    env = env_of(flower)
    names = [e["name"] for e in flower["env"]]
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    assert env["FLOWER_BROKER_API"]["value"] == "$(RABBITMQ_MGMT_URL)/api/"
    assert names.index("RABBITMQ_MGMT_URL") < names.index("FLOWER_BROKER_API")
    assert flower["readinessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert default_render.get("Deployment", "signaling-flower")["spec"]["replicas"] == 1


def test_coturn_shares_the_services_turn_secret_and_listens_where_the_urls_say():
    rendered = render(VARIANTS["turn"])
    deployment = rendered.get("Deployment", "signaling-turn")
    (turn,) = pod_spec(deployment)["containers"]
    assert pod_spec(deployment)["hostNetwork"] is True and deployment["spec"]["strategy"]["type"] == "Recreate"
    # The same Secret key as the web tier's TURN_SECRET, expanded into the argument by Kubernetes.
    assert env_of(turn)["TURN_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "signaling", "key": "TURN_SECRET"}
    (web,) = containers(rendered, "Deployment", "signaling-web")
    assert env_of(web)["TURN_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "signaling"
    assert len(secret_data(rendered, "signaling")["TURN_SECRET"]) == 48
    args = turn["args"]
    for arg in ("--use-auth-secret", "--static-auth-secret=$(TURN_SECRET)", "--listening-port=3478", "--no-cli"):
        assert arg in args, arg
    assert "--external-ip=203.0.113.7" in args and "--denied-peer-ip=192.168.0.0-192.168.255.255" in args
    assert {(p["containerPort"], p["protocol"]) for p in turn["ports"]} == {(3478, "UDP"), (3478, "TCP")}
    service = rendered.get("Service", "signaling-turn")
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {(3478, "UDP"), (3478, "TCP")}
    config = rendered.get("ConfigMap", "signaling")["data"]
    assert config["TURN_URLS"].startswith("turn:turn.example.org:3478")
    assert "signaling-turn" not in [name for _, name in render().kinds()]  # off by default


def test_a_given_turn_secret_is_used_and_ice_servers_json_survives_the_configmap():
    import settings as service_settings

    ice = '[{"urls": ["stun:stun.example.org:3478"]}, {"urls": "turn:t.example", "username": "u", "credential": "p"}]'
    rendered = render(
        {"secrets": {"turnSecret": "shared-with-coturn"}, "settings": {"iceServers": ice, "trustedProxies": 1}}
    )
    assert secret_data(rendered, "signaling")["TURN_SECRET"] == "shared-with-coturn"
    parsed = service_settings.load_settings(dict(rendered.get("ConfigMap", "signaling")["data"]) | {"SECRET_KEY": "k"})
    assert parsed.ice_servers == ice and parsed.trusted_proxies == 1


# --- autoscaling ------------------------------------------------------------------------------


def shard_queue_regex(scaled_object: dict) -> re.Pattern:
    return re.compile(scaled_object["spec"]["triggers"][0]["metadata"]["queueName"])


def test_keda_scaled_object():
    rendered = render(KEDA)
    assert rendered.of_kind("HorizontalPodAutoscaler") == []
    so = rendered.get("ScaledObject", "signaling-worker")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    # Required by the ScaledObject CRD: spec.scaleTargetRef.name and spec.triggers[].type/metadata.
    target = so["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "signaling-worker"}
    rendered.get("Deployment", target["name"])
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
    assert isinstance(so["spec"]["pollingInterval"], int) and isinstance(so["spec"]["cooldownPeriod"], int)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "trigger metadata is map[string]string"
    assert meta["protocol"] == "http"
    assert meta["useRegex"] == "true"
    assert meta["mode"] == "QueueLength" and float(meta["value"]) > 0
    assert meta["excludeUnacknowledged"] == "false"
    assert "host" not in meta  # credentials never in the ScaledObject
    # The regex covers every shard queue and nothing else of ours.
    regex = shard_queue_regex(so)
    assert all(regex.search(f"signaling.shard.{i}") for i in range(8))
    for other in (
        "signaling.dead",
        "signaling.participant.p1",
        "signaling.session.s1",
        "signalingXshardX1",
        "other.shard.1",
        "signaling.shard",
    ):
        assert not regex.search(other), other
    # hostFromEnv names a variable of the target's container, read from a Secret with an http URL.
    (worker,) = containers(rendered, "Deployment", "signaling-worker")
    ref = env_of(worker)[meta["hostFromEnv"]]["valueFrom"]["secretKeyRef"]
    assert secret_data(rendered, ref["name"])[ref["key"]].startswith("http://")
    # KEDA owns the replica count.
    assert "replicas" not in rendered.get("Deployment", "signaling-worker")["spec"]


def test_keda_regex_escapes_the_prefix():
    so = render({**KEDA, "settings": {"signalingPrefix": "a.b"}}).get("ScaledObject", "signaling-worker")
    regex = shard_queue_regex(so)
    assert regex.search("a.b.shard.0") and not regex.search("aXb.shard.0")


def test_hpa_on_cpu():
    rendered = render(HPA)
    assert rendered.of_kind("ScaledObject") == []
    hpa = rendered.get("HorizontalPodAutoscaler", "signaling-worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "signaling-worker"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "replicas" not in rendered.get("Deployment", "signaling-worker")["spec"]


def test_fixed_replicas_without_autoscaling():
    rendered = render(NO_AUTOSCALING)
    assert rendered.of_kind("ScaledObject") == rendered.of_kind("HorizontalPodAutoscaler") == []
    assert rendered.get("Deployment", "signaling-worker")["spec"]["replicas"] == 2


def test_keda_and_hpa_together_fail():
    message = render_error({"worker": {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}}})
    assert "worker.autoscaling.keda.enabled and worker.autoscaling.hpa.enabled are both true" in message


MISCONFIGURATIONS = {
    "grace below the longest task": (
        {"worker": {"terminationGracePeriodSeconds": 30}},
        "must exceed worker.longestTaskSeconds",
    ),
    "long polls cut on shutdown": ({"web": {"gracefulTimeoutSeconds": 20}}, "must exceed settings.maxPollWaitS"),
    "no broker": ({"rabbitmq": {"enabled": False}}, "set externalRabbitmq.url"),
    "no database": ({"mongodb": {"enabled": False}}, "set externalMongodb.uri"),
    "two brokers": ({"externalRabbitmq": {"url": "amqp://x@y//"}}, "choose the bundled broker or an external one"),
    "two databases": ({"externalMongodb": {"uri": "mongodb://x/y"}}, "choose the bundled database or an external one"),
    "renamed subchart secret": ({"rabbitmq": {"auth": {"existingPasswordSecret": "mine"}}}, "must stay"),
    "no media servers": ({"kms": {"enabled": False}}, "kms.externalUrls"),
    "coturn without URLs": ({"turn": {"enabled": True}}, "set settings.turnUrls"),
    "relay range upside down": ({"turn": {"minPort": 60000, "maxPort": 50000}}, "turn.minPort must not exceed"),
}


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_misconfigurations_fail_with_a_message(case):
    overrides, message = MISCONFIGURATIONS[case]
    assert message in render_error(overrides)
