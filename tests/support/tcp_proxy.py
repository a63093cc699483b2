"""A TCP relay run as its own process (`python -m tests.support.tcp_proxy PORT HOST:PORT`), so a
fault test can put it between a web instance and the broker and SIGSTOP it: both sides keep
their connections open and nothing passes, as with a host lost without a TCP reset."""

from __future__ import annotations

import socket
import sys
import threading


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main() -> None:
    port, target = int(sys.argv[1]), sys.argv[2]
    host, _, target_port = target.rpartition(":")
    listener = socket.create_server(("127.0.0.1", port))
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection((host, int(target_port)), timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    main()
