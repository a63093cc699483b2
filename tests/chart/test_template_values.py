"""Every `.Values.x.y` a template reads exists in values.yaml, and every value of ours is read."""

from __future__ import annotations

import re

from .conftest import CHART, load_values

TEMPLATES = sorted((CHART / "templates").glob("*"))
VALUES_REF = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
ALIAS_DEF = re.compile(r"\{\{-?\s*\$([A-Za-z_]\w*)\s*:=\s*\$?\.Values((?:\.[A-Za-z_]\w*)+)")
ALIAS_USE = re.compile(r"\$([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)")
# Subchart values: read by the Bitnami charts, not (only) by ours.
PASS_THROUGH = ("rabbitmq", "mongodb", "global")


def referenced_paths() -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for template in TEMPLATES:
        text = template.read_text()
        aliases = {name: tuple(path.strip(".").split(".")) for name, path in ALIAS_DEF.findall(text)}
        for match in VALUES_REF.finditer(text):
            paths.add(tuple(match.group(1).strip(".").split(".")))
        for name, rest in ALIAS_USE.findall(text):
            if name in aliases:
                paths.add(aliases[name] + tuple(rest.strip(".").split(".")))
    return paths


def lookup(values: dict, path: tuple[str, ...]) -> bool:
    node = values
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def leaves(node, prefix=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, prefix + (key,))
    else:
        yield prefix


def test_the_regex_sees_the_templates():
    paths = referenced_paths()
    assert ("settings", "shards") in paths
    assert ("worker", "autoscaling", "keda", "enabled") in paths  # through `$keda := ...`
    assert len(paths) > 80


def test_every_referenced_value_exists():
    values = load_values()
    missing = sorted(".".join(p) for p in referenced_paths() if not lookup(values, p))
    assert missing == [], f"templates read values that values.yaml does not define: {missing}"


def test_every_value_of_ours_is_used():
    used = referenced_paths()
    unused = []
    for leaf in leaves(load_values()):
        if leaf[0] in PASS_THROUGH:
            continue
        if not any(leaf[: len(p)] == p for p in used):
            unused.append(".".join(leaf))
    assert unused == [], f"values.yaml keys no template reads: {unused}"


def test_every_value_is_in_the_schema():
    from .conftest import load_schema

    schema = load_schema()

    def walk(node, sch, prefix):
        if "$ref" in sch:
            sch = schema["$defs"][sch["$ref"].rsplit("/", 1)[1]]
        if not isinstance(node, dict) or "properties" not in sch:
            return []
        missing = []
        for key, value in node.items():
            if key not in sch["properties"]:
                if sch.get("additionalProperties", True) is False:
                    missing.append(".".join(prefix + (key,)))
                continue
            missing += walk(value, sch["properties"][key], prefix + (key,))
        return missing

    assert walk(load_values(), schema, ()) == []
