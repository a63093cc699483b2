"""A DNS server on loopback answering A queries from a table the test changes while it runs.

Real DNS over UDP, so the code under test resolves exactly as in a cluster; only the
resolver's nameserver and port point here.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset


class LoopbackDns(threading.Thread):
    def __init__(self, records: dict[str, list[str]] | None = None) -> None:
        super().__init__(daemon=True)
        self.records = dict(records or {})  # name (no trailing dot) -> IPv4 addresses; absent = NXDOMAIN
        self.queries = 0
        self.failing = False  # answer SERVFAIL, as a DNS server that is in trouble
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._closed = False

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.cache = None
        return resolver

    def run(self) -> None:
        while not self._closed:
            try:
                wire, client = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().rstrip(".")
            addresses = self.records.get(name)
            if self.failing:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif addresses is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A and addresses:
                response.answer.append(dns.rrset.from_text_list(question.name, 5, "IN", "A", addresses))
            self.queries += 1
            self.sock.sendto(response.to_wire(), client)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
