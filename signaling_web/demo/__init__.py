"""The browser demo at ``/demo``: a group call page that uses only the public REST contract.

Plain HTML, CSS and ES modules served from ``static/``, no build step and nothing from a CDN.
``static/signaling-client.js`` is the reference client frontend developers can copy.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory, url_for
from werkzeug.wrappers import Response as BaseResponse

STATIC = Path(__file__).resolve().parent / "static"

blp = Blueprint("demo", __name__, static_folder=str(STATIC), static_url_path="/demo/static")


@blp.after_request
def _no_third_parties(response: Response) -> Response:
    # Everything the page needs comes from this server; media permissions only for this origin.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; media-src 'self' blob: mediastream:; img-src 'self' data:; object-src 'none'",
    )
    response.headers.setdefault("Cache-Control", "no-cache")
    return response


@blp.get("/demo")
def page() -> Response:
    """The demo page; join an existing session with ``?session=<id>&join_token=<token>``."""
    return send_from_directory(STATIC, "index.html")


@blp.get("/demo/")
def page_with_slash() -> BaseResponse:
    return redirect(url_for("demo.page"))
