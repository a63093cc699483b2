from __future__ import annotations

import marshmallow as ma

from signaling_web.extensions import Schema


class MuteSchema(Schema):
    audio = ma.fields.Bool(
        load_default=None, metadata={"description": "true: stop forwarding audio to subscribers; false: resume."}
    )
    video = ma.fields.Bool(
        load_default=None, metadata={"description": "true: stop forwarding video to subscribers; false: resume."}
    )
