"""Shared helpers for the chart tests: Helm's own engine (helm-python-sdk, which binds Helm's Go
SDK through ctypes; no helm binary and no cluster) renders the chart, and kubernetes-validate checks
the manifests against the Kubernetes OpenAPI schemas it ships."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "signaling"
RELEASE = "signaling"
NAMESPACE = "media"


def load_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def load_schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Rendered:
    """The manifests of one `helm template` run, parsed."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.notes = next((text for path, text in files.items() if path.endswith("NOTES.txt")), "")
        self.docs: list[dict] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__template__", path)
                    self.docs.append(doc)

    def manifests(self) -> list[dict]:
        return [{k: v for k, v in doc.items() if k != "__template__"} for doc in self.docs]

    def kinds(self) -> list[tuple[str, str]]:
        return sorted((d["kind"], d["metadata"]["name"]) for d in self.docs)

    def get(self, kind: str, name: str) -> dict:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found among {self.kinds()}"
        return found[0]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]


def render(overrides: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """Render like `helm template <name> helm/signaling -n <namespace> -f overrides` (schema checked)."""
    with helm.Chart.load(str(CHART)) as chart:
        return Rendered(chart.render(overrides or {}, name=name, namespace=namespace, is_install=True))


def render_error(overrides: dict) -> str:
    with pytest.raises(helm.HelmError) as info:
        render(overrides)
    return str(info.value)


@pytest.fixture(scope="session")
def default_render() -> Rendered:
    return render()
