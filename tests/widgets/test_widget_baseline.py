"""The widget, its results SVG and the share page show a carried-over poll's total with
its baseline, and say so: "Total votes: N" and "includes N votes before <date>" (three
stacks; with JavaScript: test_baseline_browser.py)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from tests.widgets.helpers import Tags, csrf_token

SVG = "{http://www.w3.org/2000/svg}"
NOTE = re.compile(r'<p class="pb-note" id="pb-baseline"( hidden)?>([^<]*)</p>')


@pytest.fixture
def carried(make_poll, client, auth, clock) -> dict:
    """The seed poll carried over with its 3,978 PsyWeb votes."""
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    poll = make_poll(duplicate_check="none")
    counts = dict(zip((str(o["id"]) for o in poll["options"]), (1203, 1012, 1763),
                      strict=True))
    response = client.put(f"/api/v1/polls/{poll['id']}/baseline", headers=auth, json={
        "total_votes": 3978, "options": counts, "source": "PsyWeb poll, 2009-2026",
        "as_of": "2026-11-30T00:00:00Z"})
    assert response.status_code == 200, response.get_json()
    return poll


def results_page(client, poll: dict, **query) -> str:
    response = client.get(f"/polls/{poll['id']}/widget",
                          query_string={"view": "results", **query})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def note_of(page: str) -> str | None:
    found = NOTE.search(page)
    assert found, "the widget has a place for the baseline's note"
    return None if found.group(1) else found.group(2)


def svg_texts(client, poll: dict, **query) -> list[str]:
    response = client.get(f"/polls/{poll['id']}/results.svg", query_string=query)
    assert response.status_code == 200
    return [text.text for text in ET.fromstring(response.data).iter(f"{SVG}text")]


def test_the_widget_shows_the_total_with_the_baseline_and_says_so(client, carried):
    page = results_page(client, carried)
    assert "Total votes: 3,978" in page
    assert note_of(page) == "includes 3,978 votes before Nov 30, 2026"
    assert "30.24% (1,203 votes)" in page


def test_a_no_js_vote_adds_to_the_total_that_includes_the_baseline(app, carried):
    browser = app.test_client()
    page = browser.get(f"/polls/{carried['id']}/widget").get_data(as_text=True)
    voted = browser.post(f"/polls/{carried['id']}/widget", data={
        "choice": [str(carried["options"][2]["id"])], "csrf_token": csrf_token(page)})
    assert voted.status_code == 303

    after = browser.get(voted.headers["Location"]).get_data(as_text=True)

    assert "Total votes: 3,979" in after
    assert note_of(after) == "includes 3,978 votes before Nov 30, 2026"


def test_a_widget_without_a_baseline_has_no_note(client, make_poll, vote):
    poll = make_poll()
    vote(poll)
    page = results_page(client, poll)
    assert "Total votes: 1" in page
    assert note_of(page) is None


@pytest.mark.parametrize(("lang", "number", "note"), [
    ("de", "3.978", "davon 3.978 Stimmen vor dem 30.11.2026"),
    ("fr", "3\u202f978", "dont 3\u202f978 votes avant le 30 nov. 2026"),
    ("es", "3.978", "incluye 3.978 votos anteriores al 30 nov 2026"),
])
def test_the_note_speaks_the_widgets_language(client, carried, lang, number, note):
    page = results_page(client, carried, lang=lang)
    assert note_of(page) == note
    assert re.search(f'id="pb-total">[^<]*{number}</p>', page)


def test_the_widget_script_gets_the_notes_words(client, carried):
    page = Tags(client.get(f"/polls/{carried['id']}/widget").get_data(as_text=True))
    config = json.loads(next(text for text in page.script_texts if '"texts"' in text))
    assert config["texts"]["baseline"] == {"one": "includes {n} vote before {date}",
                                           "other": "includes {n} votes before {date}"}


def test_a_changed_baseline_shows_in_the_next_widget_page(client, auth, carried):
    assert "Total votes: 3,978" in results_page(client, carried)
    first = str(carried["options"][0]["id"])
    assert client.put(f"/api/v1/polls/{carried['id']}/baseline", headers=auth, json={
        "total_votes": 10, "options": {first: 10}, "source": "Old survey",
        "as_of": "2025-06-01T00:00:00Z"}).status_code == 200

    page = results_page(client, carried)
    assert "Total votes: 10" in page
    assert note_of(page) == "includes 10 votes before Jun 1, 2025"

    assert client.delete(f"/api/v1/polls/{carried['id']}/baseline",
                         headers=auth).status_code == 204
    page = results_page(client, carried)
    assert "Total votes: 0" in page
    assert note_of(page) is None


def test_the_results_svg_shows_the_total_with_the_baseline_and_says_so(client, carried):
    response = client.get(f"/polls/{carried['id']}/results.svg")
    root = ET.fromstring(response.data)
    texts = [text.text for text in root.iter(f"{SVG}text")]

    assert "Total votes: 3,978" in texts
    assert "includes 3,978 votes before Nov 30, 2026" in texts
    assert "includes 3,978 votes before Nov 30, 2026" in root.find(f"{SVG}desc").text
    # The note has a line of its own below the total, inside the picture.
    ys = {text.text: float(text.get("y")) for text in root.iter(f"{SVG}text")}
    assert ys["Total votes: 3,978"] < ys["includes 3,978 votes before Nov 30, 2026"]
    assert ys["includes 3,978 votes before Nov 30, 2026"] < float(root.get("height"))


def test_the_results_svg_note_speaks_the_requested_language(client, carried):
    assert "davon 3.978 Stimmen vor dem 30.11.2026" in svg_texts(client, carried, lang="de")


def test_the_results_svg_of_a_poll_without_a_baseline_has_no_note(client, make_poll):
    poll = make_poll()
    assert not any("before" in (text or "") for text in svg_texts(client, poll))


def test_below_min_votes_the_svg_counts_the_baseline_toward_the_threshold(client, auth,
                                                                          carried):
    assert client.patch(f"/api/v1/polls/{carried['id']}", json={"results_min_votes": 5000},
                        headers=auth).status_code == 200
    texts = svg_texts(client, carried)
    assert "Total votes: 3,978" in texts
    assert not any("%" in (text or "") for text in texts)


def test_the_share_page_counts_the_baseline(client, carried):
    page = client.get(f"/p/{carried['id']}").get_data(as_text=True)
    assert "3,978 votes so far" in page


def test_percentages_show_as_rounded_not_as_binary_fractions(client, carried, vote):
    # 1,204 of 3,979 is 30.26 %, whose float / 100 is 0.30260000000000004.
    assert vote(carried).status_code == 201
    page = results_page(client, carried)
    assert "30.26% (1,204 votes)" in page
    assert "25.43% (1,012 votes)" in page  # 0.25429999999999997 as a float
    assert not re.search(r"\d\.\d{3,}%", page)
