"""Test hosts of their own: network namespaces joined to this one by veth pairs, so that a test
can cut exactly one link (`ip link set down`) while the processes on both ends keep running.

A cut link drops packets silently (no reset, no ICMP): each side learns of it only by its own
timeouts, as with a failed switch or a half-open connection. Every address is in the block
10.213.<slot>.0/24, and every namespace and interface name starts with `sf<slot>`: a slot is
reserved for the life of this process by a lock on /run/signaling-netns/<slot> (released by the
kernel if the process dies), so concurrent runs never collide, and whoever takes a slot next
first removes what a crashed run left in it.

Addresses: .1 to .15 are service addresses on this namespace's `lo` (always up, so that
processes here reach them whatever happens to a link); link n joins this namespace (.4n+1) to a
host's namespace (.4n+2), n from 16.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LOCK_DIR = Path("/run/signaling-netns")
SLOTS = range(1, 251)
FIRST_LINK = 16


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def tc(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["tc", *(["-n", netns] if netns else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


def unavailable_reason() -> str | None:
    """Why this machine cannot run the netns tests, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2's `ip` and `tc` are not installed"
    probe = f"sfprobe{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@dataclass
class Link:
    """A veth pair between this namespace and a host's; `cut()` drops every packet both ways.

    Both ends stay up with their routes, and each gets a root qdisc that holds no packet
    (`pfifo limit 0`): packets vanish, so connections time out as over a dead switch. (Downing an
    end would flush its routes: that side would fail at once as unreachable, and this namespace
    would send the other side's packets along its default route, off this machine.)"""

    netns: str
    root_if: str
    peer_if: str
    root_addr: str
    peer_addr: str
    routes: list[str] = field(default_factory=list)  # destinations the host reaches through it

    def cut(self) -> None:
        for netns, ifname in ((None, self.root_if), (self.netns, self.peer_if)):
            tc(netns, "qdisc", "replace", "dev", ifname, "root", "pfifo", "limit", "0")

    def heal(self) -> None:
        for netns, ifname in ((None, self.root_if), (self.netns, self.peer_if)):
            tc(netns, "qdisc", "del", "dev", ifname, "root", check=False)

    def _up(self) -> None:
        ip("link", "set", self.root_if, "up")
        ip("-n", self.netns, "link", "set", self.peer_if, "up")
        for dest in self.routes:
            ip("-n", self.netns, "route", "replace", dest, "via", self.root_addr, "dev", self.peer_if)


class Network:
    """The namespaces, links and service addresses of one test; `close()` removes them all."""

    def __init__(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self._lock_fd, self.slot = self._reserve()
        self.prefix = f"10.213.{self.slot}"
        self.tag = f"sf{self.slot}"
        self.hosts: list[str] = []
        self.links: list[Link] = []
        self._next_link = FIRST_LINK
        self._remove_leftovers()

    def _reserve(self) -> tuple[int, int]:
        for slot in SLOTS:
            fd = os.open(LOCK_DIR / str(slot), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd, slot
        raise RuntimeError("every netns slot is taken")

    def _remove_leftovers(self) -> None:
        """What a crashed run of this slot left: its namespaces (their veths go with them), its
        root-side interfaces, its service addresses."""
        for line in ip("netns", "list").stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"{self.tag}-"):
                ip("netns", "del", name, check=False)
        for line in ip("-o", "link", "show").stdout.splitlines():
            ifname = line.split(":")[1].strip().split("@")[0]
            if ifname.startswith(f"{self.tag}r"):
                ip("link", "del", ifname, check=False)
        for line in ip("-o", "-4", "addr", "show", "dev", "lo").stdout.splitlines():
            addr = line.split()[3]
            if addr.startswith(f"{self.prefix}."):
                ip("addr", "del", addr, "dev", "lo", check=False)

    def service_address(self, n: int) -> str:
        """10.213.<slot>.n on this namespace's lo: an address the hosts reach through their links."""
        assert 1 <= n < 16
        addr = f"{self.prefix}.{n}"
        ip("addr", "add", f"{addr}/32", "dev", "lo")
        return addr

    def host(self, name: str) -> str:
        """A new namespace (with its lo up); returns its name, for `exec_prefix`."""
        netns = f"{self.tag}-{name}"
        ip("netns", "add", netns)
        self.hosts.append(netns)
        ip("-n", netns, "link", "set", "lo", "up")
        return netns

    def link(self, netns: str, routes: tuple[str, ...] = ()) -> Link:
        """A veth pair from here to `netns`; the host reaches each of `routes` (addresses here) through it."""
        n = self._next_link
        self._next_link += 1
        root_if, peer_if = f"{self.tag}r{n}", f"{self.tag}p{n}"
        root_addr, peer_addr = f"{self.prefix}.{4 * n + 1}", f"{self.prefix}.{4 * n + 2}"
        ip("link", "add", root_if, "type", "veth", "peer", "name", peer_if, "netns", netns)
        ip("addr", "add", f"{root_addr}/30", "dev", root_if)
        ip("link", "set", root_if, "up")
        ip("-n", netns, "addr", "add", f"{peer_addr}/30", "dev", peer_if)
        link = Link(netns, root_if, peer_if, root_addr, peer_addr, [f"{dest}/32" for dest in routes])
        link._up()
        self.links.append(link)
        return link

    def close(self) -> None:
        self._remove_leftovers()
        os.close(self._lock_fd)


def exec_prefix(netns: str | None) -> list[str]:
    """argv prefix running a command in `netns` (`ip netns exec` execs it: same pid)."""
    return ["ip", "netns", "exec", netns] if netns else []
