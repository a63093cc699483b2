"""Fixtures of the browser tests: Debian's chromium (installed with apt-get when missing, as
root; never a browser downloaded by Playwright) and one headless browser per module."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root, else a clear failure."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0:
            pytest.fail(
                f"{CHROMIUM} is missing and the tests do not run as root: install it with "
                "`sudo apt-get update && sudo apt-get install -y chromium`",
                pytrace=False,
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.fail(
                    f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}",
                    pytrace=False,
                )
        if not CHROMIUM.exists():
            pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing", pytrace=False)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
