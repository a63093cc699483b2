"""`pip install ./signaling_sdk` into a fresh virtualenv gives a working, typed package with no
dependencies: what an application's backend does with it, away from this repository."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import venv

import pytest

from signaling_sdk import __version__
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

USE = textwrap.dedent(
    """
    import importlib.metadata, pathlib
    import signaling_sdk
    from signaling_sdk import SignalingClient, TransportError, signature, verify_event

    assert "/site-packages/" in signaling_sdk.__file__, signaling_sdk.__file__
    assert (pathlib.Path(signaling_sdk.__file__).parent / "py.typed").exists()
    assert importlib.metadata.requires("signaling-sdk") is None
    body = b'{"id":"e1","type":"sessionCreated","session_id":"s1","at":"2026-01-01T00:00:00.000Z","data":{}}'
    assert verify_event("secret", body, {"X-Signaling-Signature": signature("secret", body)}).id == "e1"
    try:
        SignalingClient("http://127.0.0.1:9", api_key="k", retries=0).get_session("s1")
    except TransportError:
        print("ok", signaling_sdk.__version__)
    """
)


def test_pip_installs_the_sdk_into_a_fresh_virtualenv(tmp_path):
    source = tmp_path / "signaling_sdk"
    # A copy: building in place would leave build/ and egg-info in the checkout.
    shutil.copytree(ROOT / "signaling_sdk", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(source)], check=True, timeout=240)
    # -I: isolated, so neither this checkout nor the test's environment can lend a module.
    used = subprocess.run([python, "-I", "-c", USE], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert used.returncode == 0, used.stderr
    assert used.stdout.split() == ["ok", __version__]
