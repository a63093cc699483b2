"""values.yaml against values.schema.json, with jsonschema and with Helm's own validator."""

from __future__ import annotations

import jsonschema
import pytest

from .conftest import CHART, deep_merge, helm, load_schema, load_values


def validator() -> jsonschema.Draft7Validator:
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_default_values_validate():
    errors = [e.message for e in validator().iter_errors(load_values())]
    assert errors == []


def test_helm_accepts_default_values():
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema({})


BAD_VALUES = {
    "unknown top-level key": {"replicaCount": 3},
    "unknown key in a group": {"web": {"replicaz": 2}},
    "unknown setting": {"settings": {"shardz": 8}},
    "shards as a string": {"settings": {"shards": "eight"}},
    "zero shards": {"settings": {"shards": 0}},
    "unknown queue type": {"settings": {"shardQueueType": "lazy"}},
    "KEDA scaling to zero": {"worker": {"autoscaling": {"keda": {"minReplicas": 0}}}},
    "CPU target above 100": {"worker": {"autoscaling": {"hpa": {"targetCPUUtilizationPercentage": 150}}}},
    "web without resource requests": {"web": {"resources": {"requests": None}}},
    "bad quantity": {"worker": {"resources": {"requests": {"cpu": "lots", "memory": "1Gi"}}}},
    "bad service type": {"web": {"service": {"type": "Ingress"}}},
    "port out of range": {"kms": {"port": 70000}},
    "emulator mode": {"kms": {"emulatorMode": "video"}},
    "external KMS URL scheme": {"kms": {"externalUrls": ["http://kms:8888/kurento"]}},
    "standalone MongoDB": {"mongodb": {"architecture": "standalone"}},
    "external broker URL scheme": {"externalRabbitmq": {"url": "redis://broker:6379/0"}},
    "subchart switch as a string": {"rabbitmq": {"enabled": "yes"}},
    "TURN URL of another scheme": {"settings": {"turnUrls": "stun:stun.example.org"}},
    "negative trusted proxies": {"settings": {"trustedProxies": -1}},
    "coturn argument without dashes": {"turn": {"extraArgs": ["denied-peer-ip=10.0.0.0-10.255.255.255"]}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_rejected(case):
    values = deep_merge(load_values(), BAD_VALUES[case])
    assert list(validator().iter_errors(values)), f"schema accepted: {case}"
    # Helm validates user values merged over the chart's defaults, as `helm install -f` does.
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(BAD_VALUES[case])
