"""Swagger UI assets served from the swagger-ui-bundle package: the docs page works offline."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/api/v1/docs/assets/"

blp = Blueprint("apidocs_assets", __name__)


@blp.get(f"{ASSETS_URL}<path:filename>")
def asset(filename: str) -> Response:
    return send_from_directory(swagger_ui_path, filename, max_age=3600)
