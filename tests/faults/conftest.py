"""Fixtures of the fault-injection suite: every test gets its own vhost and its own processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.faults.netns import Network, unavailable_reason
from tests.support.rabbit import create_vhost, delete_vhost


@pytest.fixture
def fault_dir():
    path = Path(tempfile.mkdtemp(prefix="signaling-fault-"))
    yield path
    if os.environ.get("KEEP_FAULT_LOGS"):
        print(f"fault logs kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vhost_url():
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    yield url
    delete_vhost(vhost)


@pytest.fixture
def network():
    """Test hosts (tests/faults/netns.py); skipped where namespaces cannot be made (not root)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    net = Network()
    yield net
    net.close()
