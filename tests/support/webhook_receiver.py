"""A webhook receiver for tests, run as its own process: `python -m tests.support.webhook_receiver
PORT RECORD MODE`.

Every request is appended to RECORD as one JSON line (headers, the raw body as text, the answer
given). MODE is a file the test rewrites to change behaviour: "ok" answers 204, "fail" answers
500, "hang" answers nothing until MODE says otherwise (and then 204). A request is recorded when
it arrives, with `answered: false` first for a hanging one, so a test sees it is held.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_write = threading.Lock()


def main() -> None:
    port, record, mode = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    def append(entry: dict) -> None:
        with _write, record.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            now = mode.read_text().strip()
            entry = {"path": self.path, "headers": dict(self.headers), "body": body.decode(), "mode": now}
            if now == "hang":
                append({**entry, "answered": False})
                while mode.read_text().strip() == "hang":
                    time.sleep(0.05)
            status = 500 if now == "fail" else 204
            append({**entry, "answered": True, "status": status})
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
