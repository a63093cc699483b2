"""A TCP relay run as its own process (`python -m tests.support.tcp_proxy PORT HOST:PORT
[LISTEN_HOST]`), so a fault test can put it between a web instance and the broker and SIGSTOP it:
both sides keep their connections open and nothing passes, as with a host lost without a TCP
reset. LISTEN_HOST (127.0.0.1 by default) lets a process on a test host reach a service that
listens on this host's loopback only (tests/faults/netns.py)."""

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
    listen_host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    host, _, target_port = target.rpartition(":")
    listener = socket.create_server((listen_host, port))
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
