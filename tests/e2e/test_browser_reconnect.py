"""The media server of a call dies and another one starts: the pages reconnect by themselves.

Two demo pages in a call through the emulator's media mode. `kill -9` of the emulator: the
service's health monitor tells both pages `mediaServerLost`; their clients (automatic
reconnection, the default) rejoin with backoff, failing while no media server answers. A new
emulator then starts on the same address, and with no click each page publishes again and
decodes the other's video on new peer connections. Its own stack: the media server is gone for
good in the middle.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import media_mode_stack
from tests.support.browser import Person, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.media]

VIDEO = "320x240@15"
DOWN_S = 3.0  # how long no media server answers: the first attempts fail


@pytest.fixture(scope="module")
def call(browser, run_dir, mongodb_uri):
    with media_mode_stack(run_dir, mongodb_uri, "browser-reconnect") as stack:
        base = stack.base_url
        pages = {name: Person(browser, base, name) for name in ("dora", "eve")}
        try:
            dora, eve = pages["dora"], pages["eve"]
            dora.join(f"{base}/demo?video={VIDEO}")
            eve.join(f"{dora.page.input_value('#share-link')}&video={VIDEO}")
            yield stack, dora, eve
        finally:
            for page in pages.values():
                page.context.close()


def _each_receives_the_other(dora: Person, eve: Person, floor: dict[str, int] | None = None) -> bool:
    floor = floor or {}
    return dora.frames_decoded().get(eve.participant_id, 0) > floor.get("dora", 0) and eve.frames_decoded().get(
        dora.participant_id, 0
    ) > floor.get("eve", 0)


@pytest.mark.timeout(180)
def test_killing_the_media_server_and_starting_another_reconnects_the_pages_by_themselves(call):
    stack, dora, eve = call

    def describe(what: str):
        return lambda: f"{what}:\n{dora.diagnostics()}\n{eve.diagnostics()}"

    wait_until(lambda: _each_receives_the_other(dora, eve), 60, describe("no media before the fault"))
    old = {p.name: p.page.evaluate_handle("window.demo.peerConnections.get('publish')") for p in (dora, eve)}

    stack.kms.kill()
    killed = time.monotonic()
    for page in (dora, eve):  # told, and trying on their own: no Rejoin button while they do
        page.page.wait_for_selector("#notice-text:has-text('reconnecting')", timeout=20_000)
        assert page.page.is_hidden("#rejoin-button")
    time.sleep(max(0.0, DOWN_S - (time.monotonic() - killed)))
    stack.kms.start()  # another media server at the same address (KMS_URLS)

    for page in (dora, eve):
        page.page.wait_for_selector("#chat li.event:has-text('Reconnected to a media server.')", timeout=90_000)
        assert page.page.is_hidden("#notice")
        assert page.page.evaluate("(old) => window.demo.peerConnections.get('publish') !== old", old[page.name])
    # New peer connections on both sides: their counters start from zero again.
    wait_until(lambda: _each_receives_the_other(dora, eve), 60, describe("media not back after the new media server"))
