"""Chromium pages of the /demo for the browser tests: Debian's chromium driven by Playwright.

`Person` is one page in its own browser context; `wait_until`/`wait_in_page` poll from here (the
demo's Content-Security-Policy refuses the eval Playwright's own waits use).
"""

from __future__ import annotations

import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    # Real host addresses in ICE candidates rather than mDNS .local names the emulator ignores.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
# Per page: publisher participant_id -> inbound video framesDecoded, from each subscription's getStats().
FRAMES_DECODED_JS = """
async () => {
  const result = {};
  for (const [stream, pc] of window.demo.peerConnections) {
    if (stream === 'publish') continue;
    const stats = await pc.getStats();
    let frames = 0;
    stats.forEach((report) => {
      if (report.type === 'inbound-rtp' && report.kind === 'video') frames += report.framesDecoded || 0;
    });
    result[stream] = frames;
  }
  return result;
}
"""


class Person:
    """One page of the demo, in its own browser context (own storage, own media permissions)."""

    def __init__(self, browser, base_url: str, name: str) -> None:
        self.name = name
        self.context = browser.new_context(viewport={"width": 1280, "height": 540}, base_url=base_url)
        self.context.grant_permissions(["camera", "microphone"], origin=base_url)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        self.participant_id: str | None = None

    def join(self, url: str) -> None:
        self.page.goto(url)
        self.join_filled()

    def join_filled(self) -> None:
        """Joins from the lobby already open (with any Options set)."""
        self.page.fill("#display-name", self.name)
        self.page.click("#join-button")
        self.page.wait_for_selector("#call:not([hidden])", timeout=20_000)
        wait_in_page(self.page, "window.demo.client.peerConnections.has('publish')", 20)
        self.participant_id = self.page.evaluate("window.demo.client.participantId")

    def frames_decoded(self) -> dict[str, int]:
        return self.page.evaluate(FRAMES_DECODED_JS)

    def remote_tiles(self) -> list[str]:
        return self.page.eval_on_selector_all("#grid .tile.remote", "tiles => tiles.map(t => t.dataset.participantId)")

    def diagnostics(self) -> str:
        state = self.page.evaluate("""() => [...window.demo.peerConnections].map(([s, pc]) =>
            `${s}: ${pc.connectionState}/${pc.iceConnectionState}`).join(', ')""")
        return f"{self.name} ({self.participant_id}): {state}\n  " + "\n  ".join(self.console[-15:])


def wait_until(condition, timeout: float, describe) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        time.sleep(0.25)


def wait_in_page(page, expression: str, timeout: float, describe=None, arg=None) -> None:
    """Polls a page expression from here. Playwright's wait_for_function re-runs its predicate
    through eval, which the demo's Content-Security-Policy (no 'unsafe-eval') refuses: it failed
    whenever the predicate was not already true at the first try."""
    wait_until(lambda: page.evaluate(expression, arg), timeout, describe or (lambda: f"not true: {expression}"))
