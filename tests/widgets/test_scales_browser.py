"""A rating voted with the keyboard alone in Debian's Chromium (Playwright): Tab into the
scale, arrow keys to choose, Tab to Vote and Enter; axe finds nothing serious before or
after, and the results show the mean and median. Screenshots go to POLLBOX_SCREENSHOTS."""

from __future__ import annotations

import pytest

from tests.e2e.browser import (
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    axe_source,  # noqa: F401 (a fixture)
    browser,  # noqa: F401 (a fixture)
    run_axe,
)

pytestmark = pytest.mark.browser


def focused(page) -> dict:
    return page.evaluate("({id: document.activeElement.id,"
                         " label: document.activeElement.getAttribute('aria-label'),"
                         " checked: document.activeElement.checked})")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_rating_is_voted_with_the_keyboard_alone(browser, served, client, auth,  # noqa: F811
                                                   axe_source, theme):  # noqa: F811
    poll = client.post("/api/v1/polls", headers=auth, json={
        "question": "How useful was this page?", "kind": "rating", "allow_comment": True,
        "scale": {"min": 1, "max": 5, "min_label": "Not useful", "max_label": "Very useful"},
    }).get_json()
    context = browser.new_context(viewport={"width": 480, "height": 700}, bypass_csp=True,
                                  color_scheme=theme)
    page = context.new_page()
    try:
        page.goto(f"{served}/polls/{poll['id']}/widget?theme={theme}")
        assert run_axe(page, axe_source) == []

        page.keyboard.press("Tab")
        assert focused(page)["label"] == "1 of 5 (Not useful)"
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        assert focused(page) == {"id": f"pb-o-{poll['options'][3]['id']}",
                                 "label": "4 of 5", "checked": True}
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"rating-{theme}-form.png"), full_page=True)
        assert run_axe(page, axe_source) == []

        page.keyboard.press("Tab")  # the radio group is one stop: on to the comment
        page.keyboard.type("Clear enough")
        page.keyboard.press("Tab")
        assert focused(page)["id"] == "pb-submit"
        page.keyboard.press("Enter")

        page.wait_for_function("!document.getElementById('pb-stat').hidden",
                               timeout=EXPECT_TIMEOUT_MS)
        assert page.text_content("#pb-stat") == "Average: 4 (median 4)"
        assert page.text_content("#pb-total") == "Total votes: 1"
        assert run_axe(page, axe_source) == []
        page.screenshot(path=str(SCREENSHOTS / f"rating-{theme}-results.png"), full_page=True)
    finally:
        context.close()
    votes = client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()
    assert votes["rating"]["mean"] == 4.0
