"""A poll that closed itself at its max_votes, as the widget shows it: closed, "full" in
the visitor's language, with its results, without JavaScript too.
Every test runs on the three stacks of `tests/conftest.py`."""

from __future__ import annotations

from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

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
    browser = app.test_client()
    token = csrf_token(widget(browser, poll, "192.0.2.99").get_data(as_text=True))
    fill(vote, poll, 1)  # the last place went while the form was open

    response = form_vote(browser, poll, token=token, ip="192.0.2.99", query={"lang": "de"})

    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["poll_full"]
    page = unescape(follow(browser, response, "192.0.2.99").get_data(as_text=True))
    assert FULL["de"] in page
    assert not Tags(page).named("form")
