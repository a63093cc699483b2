"""The `signaling` command as an operator runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from signaling_cli.processes import ROOT

pytestmark = pytest.mark.integration


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "signaling_cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_reports_a_healthy_deployment(stack):
    result = run_cli("doctor", env=stack.env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["ok   broker", "ok   database", "ok   kms ws"]
    assert "modules core, elements, filters" in result.stdout
    assert "ok   workers: 2 worker(s)" in result.stdout


def test_doctor_names_what_is_broken_and_how_to_fix_it(stack):
    result = run_cli("doctor", env={**stack.env, "KMS_URLS": stack.env["KMS_URLS"] + ",ws://127.0.0.1:1/kurento"})
    assert result.returncode == 1
    assert "FAIL kms ws://127.0.0.1:1/kurento: RequestNotSent" in result.stdout
    assert "fix: Start Kurento" in result.stdout


def test_help_lists_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "signaling_cli", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    for command in ("run", "worker", "web", "emulator", "bench", "doctor"):
        assert command in result.stdout


def test_doctor_prints_each_check_as_it_completes(stack):
    """A media server that accepts connections and never answers holds the doctor for its timeout;
    the broker and database lines must already be out while it waits."""
    silent = socket.create_server(("127.0.0.1", 0))
    silent_url = f"ws://127.0.0.1:{silent.getsockname()[1]}/kurento"
    doctor = subprocess.Popen(
        [sys.executable, "-m", "signaling_cli", "doctor"],
        cwd=ROOT,
        text=True,
        env={**os.environ, **stack.env, "KMS_URLS": silent_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert doctor.stdout.readline().startswith("ok   broker")
        assert doctor.stdout.readline().startswith("ok   database")
        connection, _address = silent.accept()  # the doctor is now waiting on the silent server
        assert doctor.poll() is None
        rest = doctor.stdout.read()
        connection.close()
    finally:
        silent.close()
        doctor.wait(30)
        doctor.stdout.close()
    assert doctor.returncode == 1
    assert rest.startswith(f"FAIL kms {silent_url}") and "ok   workers" in rest
