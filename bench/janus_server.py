"""Janus (Debian package `janus`) on loopback, for the side-by-side figures.

Uses a system `janus` when one is installed; otherwise downloads the package and exactly the
libraries this machine lacks (`apt-get install --download-only`, as root), unpacks them with
`dpkg -x` into var/janus/root and runs the binary from there with LD_LIBRARY_PATH. The
configuration is our own: the HTTP transport on 127.0.0.1 and the VideoRoom plugin only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signaling_cli.processes import ManagedProcess, free_port, spawn, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "janus"
LIBDIR = "usr/lib/x86_64-linux-gnu"


class JanusUnavailable(RuntimeError):
    pass


def _run(argv: list[str], timeout: float = 600) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise JanusUnavailable(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr[-800:]}")


def locate() -> tuple[Path, Path, dict[str, str]]:
    """(janus binary, module dir, extra env): a system install, or the unpacked package."""
    system = shutil.which("janus")
    if system and Path(f"/{LIBDIR}/janus/plugins/libjanus_videoroom.so").exists():
        return Path(system), Path(f"/{LIBDIR}/janus"), {}
    unpacked = CACHE / "root"
    binary = unpacked / "usr/bin/janus"
    if not binary.exists():
        _unpack(unpacked)
    libs = [str(unpacked / LIBDIR), str(unpacked / "usr/lib"), str(unpacked / "lib/x86_64-linux-gnu")]
    env = {"LD_LIBRARY_PATH": ":".join([*libs, os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":")}
    return binary, unpacked / LIBDIR / "janus", env


def _unpack(target: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise JanusUnavailable("Janus is not installed and this is not a Debian system (no apt-get/dpkg)")
    if os.geteuid() != 0:
        raise JanusUnavailable(
            "Janus is not installed; run once as root so the benchmark can fetch the "
            "Debian package `janus` (or `apt-get install janus`)"
        )
    debs = CACHE / "debs"
    (debs / "partial").mkdir(parents=True, exist_ok=True)
    print("bench: fetching the Debian package janus and its missing libraries...", flush=True)
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    get = ["apt-get", "install", "-y", "-q", "--download-only", *lock, "-o", f"Dir::Cache::archives={debs}", "janus"]
    try:
        _run(get)
    except JanusUnavailable:
        _run(["apt-get", "update", "-q", *lock])
        _run(get)
    staging = Path(tempfile.mkdtemp(prefix="janus-root-", dir=CACHE))
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(staging)])
    if not (staging / "usr/bin/janus").exists():
        raise JanusUnavailable(f"no usr/bin/janus in the unpacked packages under {debs}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def version(binary: Path, env: dict[str, str]) -> str:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=20, env={**os.environ, **env}
        )
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as exc:  # noqa: BLE001 - only informative
        return f"unknown ({exc})"


def _write_config(conf: Path, modules: Path, port: int) -> None:
    plugins, transports, empty = conf / "plugins", conf / "transports", conf / "empty"
    for folder in (plugins, transports, empty):
        folder.mkdir(parents=True, exist_ok=True)
    (plugins / "libjanus_videoroom.so").symlink_to(modules / "plugins" / "libjanus_videoroom.so")
    (transports / "libjanus_http.so").symlink_to(modules / "transports" / "libjanus_http.so")
    (conf / "janus.jcfg").write_text(f"""general: {{
    configs_folder = "{conf}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{empty}"
    loggers_folder = "{empty}"
    debug_level = 3
    session_timeout = 120
    server_name = "bench"
}}
media: {{
}}
nat: {{
    nice_debug = false
}}
plugins: {{
}}
transports: {{
}}
events: {{
    broadcast = false
}}
""")
    _write_http_config(conf, port)
    (conf / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")


def _write_http_config(conf: Path, port: int) -> None:
    (conf / "janus.transport.http.jcfg").write_text(f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
""")


@contextmanager
def janus_server() -> Iterator[tuple[str, ManagedProcess, str]]:
    """Yields (base_url, ManagedProcess, version string) for a Janus on a free loopback port."""
    binary, modules, env = locate()
    run_dir = Path(tempfile.mkdtemp(prefix="janus-bench-"))
    port = free_port()
    _write_config(run_dir / "conf", modules, port)
    argv = [str(binary), "-F", str(run_dir / "conf"), "-C", str(run_dir / "conf" / "janus.jcfg"), "-E", "lo", "-d", "3"]
    proc: ManagedProcess = spawn("janus", argv, env, run_dir / "logs", port)
    try:
        try:
            wait_for_port(port, 30, proc)
        except Exception as exc:
            log = (run_dir / "logs" / "janus.log").read_text(errors="replace")[-2000:]
            raise JanusUnavailable(f"Janus did not start: {exc}\n{log}") from exc
        time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/janus", proc, version(binary, env)
    finally:
        proc.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
