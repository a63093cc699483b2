"""The /demo page's media controls in Chromium, through the emulator's media mode (real WebRTC).

Three pages: the moderator "mo" starts the session with an API key under Options, "bob" and "carol"
join through the invite link. Bob shares his screen (a second publication, `screen`, from
getDisplayMedia: Chromium's fake capture, granted by --use-fake-ui-for-media-stream); mo mutes and
unmutes carol's video from her tile; mo records bob's camera from his tile, and the file decodes.
"""

from __future__ import annotations

import time

import av
import pytest

from tests.conftest import media_mode_stack
from tests.support.browser import Person, wait_in_page, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.media]

KEY = "k-media-controls"
# Three pages, each publishing, plus a screen: the emulator forwards every stream in Python.
VIDEO = "320x240@15"
RECORDED_S = 5.0
# How long a publication's framesDecoded must stand still to count as stopped.
STILL_S = 2.0


@pytest.fixture(scope="module")
def controls_stack(run_dir, mongodb_uri):
    files = run_dir / "recordings-media-controls"
    with media_mode_stack(
        run_dir, mongodb_uri, "media-controls", SIGNALING_API_KEYS=KEY, RECORDINGS_URI=f"file://{files}"
    ) as stack:
        yield stack, files


@pytest.fixture(scope="module")
def people(browser, controls_stack):
    stack, _ = controls_stack
    base = stack.base_url
    people = {name: Person(browser, base, name) for name in ("mo", "bob", "carol")}
    try:
        mo = people["mo"]
        mo.page.goto(f"{base}/demo?video={VIDEO}")
        mo.page.click("#advanced summary")
        mo.page.fill("#api-key", KEY)
        mo.join_filled()
        assert mo.page.evaluate("window.demo.client.role") == "moderator"
        invite = mo.page.input_value("#share-link")
        for name in ("bob", "carol"):
            people[name].join(f"{invite}&video={VIDEO}")
        yield people
    finally:
        for person in people.values():
            person.context.close()


def report(people: dict[str, Person], what: str) -> str:
    return f"{what}:\n" + "\n".join(f"{p.diagnostics()}\n  frames {p.frames_decoded()}" for p in people.values())


def decoding(person: Person, stream: str, above: int = 0) -> bool:
    return person.frames_decoded().get(stream, 0) > above


def tile(stream: str) -> str:
    return f"[id='tile-{stream}']"


def frames_stand_still(person: Person, stream: str) -> bool:
    """framesDecoded of that stream did not move over STILL_S (the observation window, not a wait)."""
    before = person.frames_decoded().get(stream, 0)
    time.sleep(STILL_S)
    return person.frames_decoded().get(stream, 0) == before


@pytest.mark.timeout(150)
def test_a_shared_screen_is_a_second_publication_everyone_decodes(people):
    mo, bob, carol = people["mo"], people["bob"], people["carol"]
    screen = f"{bob.participant_id}:screen"
    wait_until(
        lambda: all(decoding(p, bob.participant_id) for p in (mo, carol)),
        60,
        lambda: report(people, "bob's camera is not decoded by mo and carol"),
    )
    bob.page.click("#screen-button")
    wait_in_page(bob.page, "window.demo.client.peerConnections.has('publish:screen')", 20)
    assert bob.page.inner_text("#screen-button") == "Stop sharing"
    assert bob.page.locator(tile("publish:screen")).count() == 1
    wait_until(
        lambda: all(decoding(p, screen) and decoding(p, bob.participant_id) for p in (mo, carol)),
        60,
        lambda: report(people, "mo and carol do not decode both of bob's publications"),
    )
    for person in (mo, carol):
        assert "(screen)" in person.page.inner_text(f"{tile(screen)} .name")

    # Stopping the share unpublishes it: the others' screen tiles go, the camera stays.
    bob.page.click("#screen-button")
    for person in (mo, carol):
        person.page.wait_for_selector(tile(screen), state="detached", timeout=20_000)
        assert person.page.locator(tile(bob.participant_id)).count() == 1
    assert bob.page.inner_text("#screen-button") == "Share screen"
    assert bob.page.evaluate("window.demo.client.localStreams.has('screen')") is False


@pytest.mark.timeout(150)
def test_the_browser_ending_the_capture_unpublishes_the_screen(people):
    """The browser's own "stop sharing" ends the captured track by itself (`ended`; a page's own
    track.stop() fires no event, so the test dispatches it as the browser does)."""
    mo, bob = people["mo"], people["bob"]
    screen = f"{bob.participant_id}:screen"
    bob.page.click("#screen-button")
    wait_until(lambda: decoding(mo, screen), 60, lambda: report(people, "mo does not decode bob's screen"))
    bob.page.evaluate("""() => { const track = window.demo.screenStream.getVideoTracks()[0];
        track.stop(); track.dispatchEvent(new Event('ended')); }""")
    mo.page.wait_for_selector(tile(screen), state="detached", timeout=20_000)
    wait_in_page(bob.page, "!window.demo.client.localStreams.has('screen')", 20)
    assert bob.page.inner_text("#screen-button") == "Share screen"


@pytest.mark.timeout(150)
def test_a_moderator_mutes_and_unmutes_a_participants_video(people):
    mo, bob, carol = people["mo"], people["bob"], people["carol"]
    target = carol.participant_id
    wait_until(
        lambda: all(decoding(p, target) for p in (mo, bob)),
        60,
        lambda: report(people, "carol's camera is not decoded by mo and bob"),
    )
    # Only a moderator's page offers the actions.
    assert bob.page.locator(f"{tile(target)} button.mute-video").count() == 0
    mo.page.click(f"{tile(target)} button.mute-video")
    for person in (mo, bob):
        wait_in_page(
            person.page,
            f"(document.getElementById('tile-{target}') || {{dataset: {{}}}}).dataset.muted === 'video'",
            20,
        )
    assert mo.page.inner_text(f"{tile(target)} button.mute-video") == "unmute video"
    # Frames already on their way may still arrive: wait until the counter stands still for 2 s.
    wait_until(
        lambda: frames_stand_still(bob, target),
        20,
        lambda: report(people, "bob still decodes carol's video after the mute"),
    )
    # Meanwhile the unmuted publications keep flowing to the same page.
    still_at = bob.frames_decoded()[mo.participant_id]
    wait_until(
        lambda: decoding(bob, mo.participant_id, still_at),
        20,
        lambda: report(people, "bob stopped decoding mo's video too"),
    )

    stalled = {p.name: p.frames_decoded()[target] for p in (mo, bob)}
    mo.page.click(f"{tile(target)} button.mute-video")
    for person in (mo, bob):
        wait_in_page(person.page, f"document.getElementById('tile-{target}').dataset.muted === ''", 20)
        wait_until(
            lambda person=person: decoding(person, target, stalled[person.name]),
            30,
            lambda: report(people, f"carol's video did not resume after the unmute (stalled at {stalled})"),
        )
    assert mo.page.inner_text(f"{tile(target)} button.mute-video") == "mute video"


@pytest.mark.timeout(150)
def test_a_moderator_records_a_publisher_from_the_page(people, controls_stack):
    _, files = controls_stack
    mo, bob, carol = people["mo"], people["bob"], people["carol"]
    target = bob.participant_id
    wait_until(lambda: decoding(mo, target), 60, lambda: report(people, "mo does not decode bob"))
    assert carol.page.locator(f"{tile(target)} button.record").count() == 0
    # The recorded span as mo's page saw it (page clock): from recordingStarted to the stop click. Test-side
    # latencies (Playwright's round trips on a loaded machine) would otherwise count as recorded time.
    mo.page.evaluate("""() => window.demo.client.on('recordingStarted', () => {
        window.recordingSeenAt = window.recordingSeenAt || performance.now(); })""")
    mo.page.click(f"{tile(target)} button.record")
    # Everyone sees the state on the tile, from recordingStarted.
    for person in (mo, carol):
        person.page.wait_for_selector(f"{tile(target)}[data-recording='recording']", timeout=30_000)
    assert mo.page.inner_text(f"{tile(target)} button.record") == "stop recording"
    rid = mo.page.get_attribute(tile(target), "data-recording-id")
    seen_at = mo.page.evaluate("window.recordingSeenAt")
    time.sleep(RECORDED_S)  # what is recorded: the duration under test, not a wait for something
    clicked_at = mo.page.evaluate(
        f'() => {{ document.querySelector("{tile(target)} button.record").click(); return performance.now(); }}'
    )
    recorded_for = (clicked_at - seen_at) / 1000
    for person in (mo, carol):
        person.page.wait_for_selector(f"{tile(target)}[data-recording='stopped']", timeout=30_000)
    assert mo.page.inner_text(f"{tile(target)} .recording") == "stopped"
    assert mo.page.inner_text(f"{tile(target)} button.record") == "record"

    session_id = mo.page.evaluate("window.demo.client.sessionId")
    path = files / session_id / f"{rid}.webm"
    assert path.is_file() and path.stat().st_size > 0, f"no recording at {path}"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(stream)]
    assert len(pts) > 1, f"{len(pts)} video frames decoded from {path}"
    step = (pts[-1] - pts[0]) / (len(pts) - 1)
    duration = float((pts[-1] - pts[0] + step) * stream.time_base)
    # About RECORDED_S: the span mo's page saw, give or take the service's start and stop latencies.
    assert abs(duration - recorded_for) <= 1.0, (duration, recorded_for, len(pts))
    print(f"\nrecorded from the page for {recorded_for:.2f} s: {len(pts)} video frames over {duration:.2f} s")
