"""`helm lint --strict` through Helm's own linter (helm-python-sdk), for several value sets.

Offline, `helm dependency build` cannot fetch the Bitnami charts, and Helm skips linting the
templates of a chart whose dependencies are missing. So the lint runs on a copy of the chart
without the `dependencies` list (the subcharts are optional and add no template of ours)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from .conftest import CHART, helm

EXPECTED = {"icon is recommended"}  # INFO only

VALUE_SETS = {
    "defaults": {},
    "keda": {"worker": {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": False}}}},
    "emulator": {"kms": {"useEmulator": True}},
    "external": {
        "rabbitmq": {"enabled": False},
        "mongodb": {"enabled": False},
        "externalRabbitmq": {"existingSecret": "broker"},
        "externalMongodb": {"existingSecret": "db"},
    },
}


@pytest.fixture(scope="module")
def chart_without_dependencies(tmp_path_factory):
    copy = tmp_path_factory.mktemp("lint") / "signaling"
    shutil.copytree(CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    assert {d["name"] for d in meta.pop("dependencies")} == {"rabbitmq", "mongodb"}
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return copy


def lint(chart, values):
    return helm.lint(str(chart), values, strict=True, namespace="media", kube_version="v1.30.0")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(chart_without_dependencies, name):
    report = lint(chart_without_dependencies, VALUE_SETS[name])
    assert {m["error"] for m in report["messages"]} <= EXPECTED, report


def test_helm_lint_sees_template_errors(chart_without_dependencies, tmp_path):
    # (In lint mode Helm logs `fail` instead of failing, so a broken template proves the templates are linted.)
    broken = tmp_path / "signaling"
    shutil.copytree(chart_without_dependencies, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {{ .Values.web.nothing.here }}\n")
    report = lint(broken, {})
    assert report["errors"] and any("broken.yaml" in m["error"] for m in report["messages"]), report


def test_the_real_chart_only_misses_its_dependencies():
    report = lint(CHART, {})
    assert {m["error"] for m in report["messages"]} <= EXPECTED | {
        "chart directory is missing these dependencies: rabbitmq,mongodb"
    }, report
