"""flask-smorest subclasses, so customisation lives in one place."""

from __future__ import annotations

import http
import json
import re
from typing import Any, NoReturn

import flask
import flask_smorest
import marshmallow as ma
from flask_smorest.utils import prepare_response
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _deeper_than(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def strict_json_loads(raw: bytes | str) -> Any:
    """Standard JSON only: no NaN or Infinity (browsers' JSON.parse refuses them, so one such
    payload would break every recipient's poll), no lone surrogates (not encodable as UTF-8),
    at most MAX_JSON_DEPTH levels. Every refusal is a JSONDecodeError (400 Bad Request)."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UnicodeDecodeError: 400 too
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(str(exc) or "too deeply nested", text, 0) from exc
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH} levels", text, 0)
    # A surrogate can only come from a \uD800-\uDFFF escape (UTF-8 decoding refuses encoded ones):
    # without one, the costly re-encoding of the whole value is skipped.
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise json.JSONDecodeError("lone surrogate in a string", text, 0) from exc
    return value


class StrictJsonParser(FlaskParser):
    def __init__(self) -> None:
        super().__init__()
        self._schemas: dict[type[ma.Schema], ma.Schema] = {}

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            return core.missing
        return strict_json_loads(req.get_data(cache=True))

    def _get_schema(self, argmap: Any, req: flask.Request) -> ma.Schema:
        """One instance per schema class, made once: webargs would build one per request (a
        marshmallow schema keeps no state between loads)."""
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas[argmap] = argmap()
            return schema
        return super()._get_schema(argmap, req)


class Api(flask_smorest.Api):
    def _register_responses(self) -> None:
        """flask-smorest's shared responses (one per status, and DEFAULT_ERROR), with an example
        of the error shape where signaling_web.openapi has one: operations refer to them."""
        from signaling_web.openapi import COMPONENT_EXAMPLES

        for name, description in [(s.name, s.phrase) for s in http.HTTPStatus] + [
            ("DEFAULT_ERROR", "Default error response")
        ]:
            response: dict[str, Any] = {"description": description}
            status = http.HTTPStatus[name] if name in http.HTTPStatus.__members__ else None
            if status is None or not (100 <= status < 200 or status in (204, 304)):
                response["schema"] = self.ERROR_SCHEMA
            if name in COMPONENT_EXAMPLES:
                response["example"] = COMPONENT_EXAMPLES[name]
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(name, response, lazy=True)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictJsonParser()


class Schema(ma.Schema):
    class Meta:
        # Unknown fields are refused with 422 rather than silently dropped.
        unknown = ma.RAISE
