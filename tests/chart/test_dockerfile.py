"""Static checks of the Dockerfile (no Docker engine here): multi-stage, slim non-root runtime
without build tools, and every first-party module the processes import is copied in."""

from __future__ import annotations

import re

from .conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
# Entry points: web, worker/flower (celery -A media_tasks.app), the emulator, and celeryconfig,
# which media_tasks/app.py loads by name (config_from_object), not by an import statement.
ENTRY_PACKAGES = ("signaling_web", "media_tasks", "kms_emulator", "celeryconfig")


def stages() -> list[tuple[str, list[str]]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        else:
            out[-1][1].append(line)
    return out


def test_multi_stage_slim_non_root_runtime():
    (builder_from, builder), (runtime_from, runtime) = stages()
    assert builder_from.startswith("FROM python:3.11-slim AS builder")
    assert runtime_from.startswith("FROM python:3.11-slim AS runtime")
    assert any("pip install -r /tmp/requirements.txt" in line for line in builder)
    assert any(line.startswith("COPY --from=builder /opt/venv /opt/venv") for line in runtime)
    assert not any("apt-get install" in line or "build-essential" in line for line in runtime)
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert "ARG UID=10001" in runtime  # the chart's podSecurityContext.runAsUser


def copied_names() -> set[str]:
    names = set()
    for _, lines in stages()[1:]:
        for line in lines:
            if line.startswith("COPY ") and "--from" not in line:
                names.update(part.rstrip("/").split("/")[-1] for part in line.split()[1:-1])
    return names


def first_party_imports(path) -> set[str]:
    top_level = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    found = set()
    files = [path] if path.is_file() else path.rglob("*.py")
    for file in files:
        for match in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", file.read_text(), re.M):
            if match.group(1) in top_level:
                found.add(match.group(1))
    return found


def test_every_first_party_module_the_processes_import_is_copied():
    copied = copied_names()
    todo, seen = list(ENTRY_PACKAGES), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT / name if (ROOT / name).is_dir() else ROOT / f"{name}.py"
        assert (name if path.is_dir() else path.name) in copied, f"{name} is imported but not copied"
        todo.extend(first_party_imports(path) - {"tests", "bench"})
    assert {"settings", "celeryconfig", "models", "messaging", "kurento"} <= seen


def test_dockerignore_keeps_the_context_small():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", "tests", "**/node_modules"} <= ignored
