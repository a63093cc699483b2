"""Which package may import which (docs/architecture.md, "Boundaries"): checked on every run, so a
shortcut through the layers fails here instead of growing unnoticed."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each package (or top-level module) and what it may import of ours; media_tasks is listed by
# module for the web tier, which may only enqueue (media_tasks.dispatch), never run media work.
ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "kurento": set(),  # a client library of its own
    "kms_emulator": set(),  # a separate program: shares no code with the service
    "signaling_sdk": set(),  # installed on its own into an application's backend: stdlib only
    "models": {"settings", "kurento"},  # kurento: stored ids come back as live proxies
    "messaging": {"settings", "models"},
    "observability": {"settings", "models", "kurento"},
    "celeryconfig": {"settings", "media_tasks.routing"},
    "media_tasks": {"settings", "models", "messaging", "kurento", "observability", "celeryconfig"},
    "signaling_web": {"settings", "models", "messaging", "observability", "media_tasks.dispatch"},
}
OURS = {*ALLOWED, "signaling_cli", "bench", "tests", "media_tasks"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in OURS}


def _allowed(package: str, module: str) -> bool:
    if module.split(".")[0] == package:
        return True
    return any(module == rule or module.startswith(rule + ".") for rule in ALLOWED[package])


def test_the_rules_refuse_what_they_should():
    assert not _allowed("signaling_web", "media_tasks.tasks")
    assert not _allowed("signaling_web", "media_tasks")
    assert _allowed("signaling_web", "media_tasks.dispatch")
    assert not _allowed("models", "messaging.publisher")
    assert _allowed("messaging", "models.base")


def test_every_package_imports_only_the_layers_below_it():
    wrong: list[str] = []
    for package in ALLOWED:
        paths = (
            [ROOT / f"{package}.py"] if (ROOT / f"{package}.py").exists() else sorted((ROOT / package).rglob("*.py"))
        )
        assert paths, package
        for path in paths:
            wrong += [
                f"{path.relative_to(ROOT)} imports {m}" for m in sorted(_imports(path)) if not _allowed(package, m)
            ]
    assert wrong == []
