"""Structured JSON logs: one object per line, with the session and participant in scope.

The web tier sets the ids from the URL of each request, the workers from each task's
arguments; every log line written meanwhile carries them, so one grep follows a participant
across web instances and workers.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time

session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)
participant_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("participant_id", default=None)

# Secrets must never reach a log line, even inside an exception message.
_SECRETS = re.compile(
    r"(Bearer\s+|join_token['\"]?\s*[:=]\s*['\"]?|X-API-Key['\"]?\s*[:=]\s*['\"]?)[^\s'\",@]+"
    # The password of any URL with credentials: amqp://, mongodb://, mongodb+srv://, redis://...
    r"|([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^\s'\",@/]+(?=@)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "session_id": session_id_var.get(),
            "participant_id": participant_id_var.get(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, separators=(",", ":"))


def bind(session_id: str | None, participant_id: str | None) -> None:
    session_id_var.set(session_id)
    participant_id_var.set(participant_id)


def use_json_logs(logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
    """Gives every handler of `logger` (root by default) the JSON formatter; adds one if none."""
    logger = logger or logging.getLogger()
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
    logger.setLevel(level)
