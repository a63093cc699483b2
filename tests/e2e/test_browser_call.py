"""The /demo page in Chromium: three people in one call through the emulator's media mode.

Three Playwright pages (one browser, fake camera and microphone) open the demo served by the
web tier: the first starts a session, the two others join through its invite link. Each page
must decode video from both others, read from its own RTCPeerConnection.getStats(); then one
clicks Leave and the two others' grids shrink to a single remote tile.

Chromium is Debian's ``/usr/bin/chromium`` (tests/e2e/conftest.py, tests/support/browser.py).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, media_mode_stack
from tests.support.browser import Person, wait_in_page, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.media]

NAMES = ("alice", "bob", "carol")
# Three pages publish and the emulator forwards six streams in Python: keep the frames small.
VIDEO = "320x240@15"
SCREENSHOT = ARTIFACTS / "demo-three-participants.png"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "demo.png"


@pytest.fixture(scope="module")
def demo_stack(run_dir, mongodb_uri):
    with media_mode_stack(run_dir, mongodb_uri, "browser") as stack:
        yield stack


@pytest.fixture(scope="module")
def people(browser, demo_stack):
    base = demo_stack.base_url
    people = {name: Person(browser, base, name) for name in NAMES}
    try:
        alice = people["alice"]
        alice.join(f"{base}/demo?video={VIDEO}")
        invite = alice.page.input_value("#share-link")
        assert invite.startswith(f"{base}/demo?session=") and "join_token=" in invite
        for name in NAMES[1:]:
            people[name].join(f"{invite}&video={VIDEO}")
        yield people
    finally:
        for person in people.values():
            person.context.close()


@pytest.mark.timeout(120)
def test_every_page_decodes_video_from_every_other_participant(people):
    started = time.monotonic()

    def everyone_sees_everyone() -> bool:
        for person in people.values():
            frames = person.frames_decoded()
            others = [p.participant_id for p in people.values() if p is not person]
            if not all(frames.get(pid, 0) > 0 for pid in others):
                return False
        return True

    wait_until(
        everyone_sees_everyone,
        60,
        lambda: (
            "not every subscription decoded video:\n"
            + "\n".join(f"{p.diagnostics()}\n  frames {p.frames_decoded()}" for p in people.values())
        ),
    )
    print(f"\nall 6 subscriptions decoding video {time.monotonic() - started:.1f} s after the third join")
    for person in people.values():
        others = {p.participant_id for p in people.values() if p is not person}
        assert set(person.remote_tiles()) == others
    # Trickle ICE went both ways: every connection of the page has a selected pair whose remote end
    # is a candidate the service trickled. The transport's selectedCandidatePairId is the reliable
    # view; a pair's `nominated` flag can lag behind decoded frames, so poll briefly.
    selected_pairs_js = """async () => {
        const out = {};
        for (const [stream, pc] of window.demo.peerConnections) {
          const stats = await pc.getStats();
          stats.forEach((t) => {
            const pair = t.type === 'transport' && t.selectedCandidatePairId && stats.get(t.selectedCandidatePairId);
            if (!pair) return;
            const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
            out[stream] = `${local.address}:${local.port} (${local.candidateType}) -> ` +
                          `${remote.address}:${remote.port} (${remote.candidateType})`;
          });
        }
        return out;
    }"""
    pairs: dict = {}

    def every_connection_has_a_selected_pair() -> bool:
        pairs.clear()
        pairs.update(people["alice"].page.evaluate(selected_pairs_js))
        return len(pairs) == 3

    wait_until(every_connection_has_a_selected_pair, 15, lambda: f"selected candidate pairs: {pairs}")
    print("alice's selected candidate pairs:", pairs)

    # Let the remote videos paint a frame, then keep the picture for the README and CI.
    alice = people["alice"]
    wait_in_page(
        alice.page,
        """() => [...document.querySelectorAll('#grid .tile video')]
        .every((v) => v.videoWidth > 0 && v.readyState >= 2)""",
        20,
    )
    alice.page.fill("#chat-input", "Hello from alice")
    alice.page.click("#chat-form button")
    for person in people.values():
        person.page.wait_for_selector("#chat li:has-text('Hello from alice')", timeout=20_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    alice.page.screenshot(path=str(SCREENSHOT))
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        # Only on request: a test run must not leave the working tree modified.
        shutil.copy(SCREENSHOT, DOCS_SCREENSHOT)


def _receive_each_other(people: dict[str, Person], who: Person) -> bool:
    others = [p for p in people.values() if p is not who]
    return all(p.frames_decoded().get(who.participant_id, 0) > 0 for p in others) and all(
        who.frames_decoded().get(p.participant_id, 0) > 0 for p in others
    )


def _frames_report(people: dict[str, Person], what: str) -> str:
    return f"{what}:\n" + "\n".join(f"{p.diagnostics()}\n  frames {p.frames_decoded()}" for p in people.values())


@pytest.mark.timeout(90)
def test_connection_failed_on_a_subscription_resubscribes_by_itself(people):
    """The client's automatic reconnection: `connectionFailed` for one received stream offers again
    on that stream only (a fresh peer connection), without a click and without a rejoin."""
    alice, bob = people["alice"], people["bob"]
    old = alice.page.evaluate_handle(f"window.demo.peerConnections.get('{bob.participant_id}')")
    old_publish = alice.page.evaluate_handle("window.demo.peerConnections.get('publish')")
    alice.page.evaluate(
        "(stream) => window.demo.client._handle({seq: 0, type: 'connectionFailed', stream})", bob.participant_id
    )
    alice.page.wait_for_selector("#chat li.event:has-text('Media connection restored.')", timeout=30_000)
    assert alice.page.evaluate(f"(old) => window.demo.peerConnections.get('{bob.participant_id}') !== old", old)
    assert alice.page.evaluate("(old) => window.demo.peerConnections.get('publish') === old", old_publish)
    assert alice.page.is_hidden("#notice")
    wait_until(
        lambda: alice.frames_decoded().get(bob.participant_id, 0) > 0,
        45,
        lambda: _frames_report(people, "alice does not receive bob again"),
    )


@pytest.mark.timeout(90)
def test_connection_failed_on_the_publication_republishes_and_subscribers_get_it_back(people):
    """`connectionFailed` for bob's own stream: his client offers again on `publish` only; the
    service reconnects everyone's subscription to his new endpoint (issue 15), so the others get
    his video back without doing anything."""
    bob = people["bob"]
    old_publish = bob.page.evaluate_handle("window.demo.peerConnections.get('publish')")
    others = {
        p.name: p.page.evaluate_handle(f"window.demo.peerConnections.get('{bob.participant_id}')")
        for p in people.values()
        if p is not bob
    }
    bob.page.evaluate("window.demo.client._handle({seq: 0, type: 'connectionFailed', stream: 'publish'})")
    bob.page.wait_for_selector("#chat li.event:has-text('Media connection restored.')", timeout=30_000)
    assert bob.page.evaluate("(old) => window.demo.peerConnections.get('publish') !== old", old_publish)
    before = {p.name: p.frames_decoded().get(bob.participant_id, 0) for p in people.values() if p is not bob}

    def flowing_again() -> bool:
        return all(
            p.frames_decoded().get(bob.participant_id, 0) > before[p.name] + 10 for p in people.values() if p is not bob
        )

    wait_until(flowing_again, 45, lambda: _frames_report(people, "subscribers do not get bob's video back"))
    for person in people.values():
        if person is not bob:  # their own subscriptions were kept: nothing to do on their side
            assert person.page.evaluate(
                f"(old) => window.demo.peerConnections.get('{bob.participant_id}') === old", others[person.name]
            )


@pytest.mark.timeout(60)
def test_media_server_lost_with_reconnection_off_shows_the_notice_and_one_click_rejoins(people):
    """The manual fallback (autoReconnect off, or after the client gave up): the notice names the
    media server, and its Rejoin button asks the service for fresh media (POST .../rejoin) and
    publishes again on a new connection.

    Killing the media server would send the real message to every page: that is
    tests/e2e/test_browser_reconnect.py. Here the message is handed to the client's own handler,
    as if it came from the long poll."""
    alice = people["alice"]
    me = f"/api/v1/sessions/{alice.page.evaluate('window.demo.client.sessionId')}/participants/{alice.participant_id}"
    posts: list[tuple[str, dict | None]] = []
    alice.page.on(
        "request",
        lambda request: (
            posts.append((request.url, request.post_data_json))
            if request.method == "POST" and me in request.url
            else None
        ),
    )
    old_publish = alice.page.evaluate_handle("window.demo.peerConnections.get('publish')")
    alice.page.evaluate("window.demo.client.autoReconnect = false")
    try:
        alice.page.evaluate("window.demo.client._handle({seq: 0, type: 'mediaServerLost'})")
        alice.page.wait_for_selector("#notice:not([hidden])", timeout=5_000)
        assert "media server" in alice.page.inner_text("#notice-text") and "Rejoin" in alice.page.inner_text("#notice")
        assert posts == [], "nothing happens before the user clicks"
        alice.page.click("#rejoin-button")
        alice.page.wait_for_selector("#notice", state="hidden", timeout=30_000)
    finally:
        alice.page.evaluate("window.demo.client.autoReconnect = true")

    sent = [(url.split(me, 1)[1].split("?")[0], (body or {}).get("stream")) for url, body in posts]
    assert sent[0] == ("/rejoin", None), sent
    assert ("/offers", "publish") in sent[1:], sent
    assert alice.page.evaluate("(old) => window.demo.peerConnections.get('publish') !== old", old_publish)
    wait_in_page(alice.page, "window.demo.peerConnections.get('publish')?.connectionState === 'connected'", 30)
    alice.page.wait_for_selector("#chat li.event:has-text('Rejoined with fresh media.')", timeout=5_000)
    wait_until(lambda: _receive_each_other(people, alice), 45, lambda: _frames_report(people, "after the rejoin"))


@pytest.mark.timeout(90)
def test_leaving_shrinks_the_other_grids(people):
    carol = people["carol"]
    stayers = [people["alice"], people["bob"]]
    carol.page.click("#leave-button")
    carol.page.wait_for_selector("#ended:not([hidden])", timeout=20_000)
    for stayer in stayers:
        other = next(p for p in stayers if p is not stayer)
        wait_in_page(
            stayer.page,
            """([gone, other]) => {
                const tiles = [...document.querySelectorAll('#grid .tile.remote')].map((t) => t.dataset.participantId);
                return tiles.length === 1 && tiles[0] === other && !tiles.includes(gone);
            }""",
            30,
            arg=[carol.participant_id, other.participant_id],
        )
        stayer.page.wait_for_selector("#chat li.event:has-text('carol left')", timeout=20_000)
        assert carol.participant_id not in stayer.page.evaluate("[...window.demo.peerConnections.keys()]")
    # The two who stay still receive each other.
    for stayer in stayers:
        other = next(p for p in stayers if p is not stayer)
        before = stayer.frames_decoded()[other.participant_id]
        wait_until(
            lambda s=stayer, o=other, b=before: s.frames_decoded()[o.participant_id] > b + 5,
            20,
            lambda s=stayer: f"video stopped after carol left:\n{s.diagnostics()}",
        )
