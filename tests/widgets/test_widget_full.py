"""A poll that closed itself at its max_votes, as the widget shows it: closed, "full" in
the visitor's language, with its results, without JavaScript too.
Every test runs on the three stacks of `tests/conftest.py`."""

from __future__ import annotations

from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.browser import (
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    axe_source,  # noqa: F401 (a fixture)
    browser,  # noqa: F401 (a fixture)
    run_axe,
)
from tests.widgets.helpers import Tags, csrf_token
from tests.widgets.test_widget import follow, form_vote, widget

FULL = {
    "en": "This poll is full: it has reached its number of votes.",
    "de": "Diese Umfrage ist voll: Sie hat ihre Anzahl an Stimmen erreicht.",
    "es": "Esta encuesta está completa: ha alcanzado su número de votos.",
    "fr": "Ce sondage est complet : il a atteint son nombre de votes.",
}


def fill(vote, poll: dict, count: int) -> None:
    for number in range(count):
        assert vote(poll, ip=f"198.51.100.{number + 1}").status_code == 201


@pytest.mark.parametrize("lang", sorted(FULL))
def test_a_full_poll_shows_closed_and_full_with_its_results(client, make_poll, vote, lang):
    poll = make_poll(max_votes=2)
    fill(vote, poll, 2)

    page = unescape(widget(client, poll, "192.0.2.99", lang=lang).get_data(as_text=True))

    assert FULL[lang] in page
    assert not Tags(page).named("form")
    assert 'id="pb-bars"' in page  # the results, not the form
    assert f'<html lang="{lang}"' in page


def test_a_full_poll_shows_its_total(client, make_poll, vote):
    poll = make_poll(max_votes=2)
    fill(vote, poll, 2)
    page = widget(client, poll, "192.0.2.99").get_data(as_text=True)
    assert "Total votes: 2" in page


def test_a_no_js_vote_after_the_poll_filled_up_is_told_it_is_full(app, make_poll, vote):
    poll = make_poll(max_votes=1)
    visitor = app.test_client()
    token = csrf_token(widget(visitor, poll, "192.0.2.99").get_data(as_text=True))
    fill(vote, poll, 1)  # the last place went while the form was open

    response = form_vote(visitor, poll, token=token, ip="192.0.2.99", query={"lang": "de"})

    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["poll_full"]
    page = unescape(follow(visitor, response, "192.0.2.99").get_data(as_text=True))
    assert FULL["de"] in page
    assert not Tags(page).named("form")


@pytest.mark.browser
def test_with_javascript_a_vote_told_poll_full_shows_the_poll_closed_and_full(
        browser, served, app, client, make_poll, axe_source):  # noqa: F811 (the fixtures)
    # The visitor and the voter who takes the last place are told apart by cookies.
    poll = make_poll(max_votes=1, duplicate_check="cookie")
    page = browser.new_page()  # the widget's own CSP: no bypass
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{served}/polls/{poll['id']}/widget?lang=fr")
        assert app.test_client().post(f"/api/v1/polls/{poll['id']}/votes", json={
            "choices": [poll["options"][1]["id"]]}).status_code == 201
        page.get_by_label(poll["options"][0]["label"]).click()
        page.locator("#pb-submit").click()

        page.wait_for_selector("#pb-total", timeout=EXPECT_TIMEOUT_MS)
        assert FULL["fr"] in page.text_content("#pb-status")
        assert page.locator("form#pb-form").count() == 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "widget-full-fr.png"), full_page=True)
    finally:
        page.close()
    assert errors == []
    # axe-core is injected, which the widget's Trusted Types forbid: a context without CSP.
    checking = browser.new_context(bypass_csp=True)
    try:
        checked = checking.new_page()
        checked.goto(f"{served}/polls/{poll['id']}/widget?lang=fr")
        assert run_axe(checked, axe_source) == []
    finally:
        checking.close()
    assert client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()["total_votes"] == 1
