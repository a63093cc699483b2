"""The /demo page's moderator flow in Chromium, on the keyed stack (signaling-mode emulator: this is
about who may do what, not media).

With an API key under Options, the first page creates the session and mints itself a moderator
token; a second page joins through the invite link as a publisher. Both show each participant's
role; only the moderator's page offers "remove", and clicking it ends the other page's call.
"""

from __future__ import annotations

import pytest

from tests.support.browser import Person, wait_in_page

pytestmark = [pytest.mark.integration, pytest.mark.media]

VIDEO = "320x240@15"


def tags(person: Person) -> dict[str, str]:
    """participant_id -> the tag text of its entry in the People list."""
    return person.page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#participants li')]
            .map((li) => [li.dataset.participantId, li.querySelector('.tag').textContent]))"""
    )


@pytest.mark.timeout(120)
def test_a_moderator_page_removes_a_participant(browser, keyed_stack):
    base = keyed_stack.base_url
    mo, bob = Person(browser, base, "mo"), Person(browser, base, "bob")
    try:
        mo.page.goto(f"{base}/demo?video={VIDEO}")
        mo.page.click("#advanced summary")
        mo.page.fill("#api-key", "k1")
        mo.join_filled()
        assert mo.page.evaluate("window.demo.client.role") == "moderator"
        invite = mo.page.input_value("#share-link")
        assert "jt." not in invite  # the invite carries the shared token, not the single-use one
        bob.join(f"{invite}&video={VIDEO}")
        assert bob.page.evaluate("window.demo.client.role") == "publisher"

        wait_in_page(mo.page, "document.querySelectorAll('#participants li').length === 2", 20)
        wait_in_page(bob.page, "document.querySelectorAll('#participants li').length === 2", 20)
        assert "moderator" in tags(mo)[mo.participant_id] and "publisher" in tags(mo)[bob.participant_id]
        assert "moderator" in tags(bob)[mo.participant_id]
        # Only a moderator's page offers removal, and never of itself.
        assert bob.page.locator("#participants button.remove").count() == 0
        assert (
            mo.page.locator(f"#participants li[data-participant-id='{mo.participant_id}'] button.remove").count() == 0
        )

        mo.page.click(f"#participants li[data-participant-id='{bob.participant_id}'] button.remove")
        bob.page.wait_for_selector("#ended:not([hidden])", timeout=20_000)
        assert "removed" in bob.page.inner_text("#ended-text")
        mo.page.wait_for_selector("#chat li.event:has-text('bob left (removed)')", timeout=20_000)
        wait_in_page(mo.page, "document.querySelectorAll('#participants li').length === 1", 20)
    finally:
        for person in (mo, bob):
            person.context.close()
