"""Rating and NPS polls in the widget without a script: a radio group of the scale's
points (stars for a 5-point rating, numbers otherwise) whose end points say the end
labels, the vote through the plain form, the statistic in the results and in the SVG.

Every test runs on the three stacks of `tests/conftest.py`.
"""

from __future__ import annotations

import pytest

from tests.widgets.helpers import Tags
from tests.widgets.test_widget import follow, form_vote, widget


@pytest.fixture
def scale_poll(client, auth):
    def make(**fields) -> dict:
        body = {"question": "How useful was this page?", "duplicate_check": "none", **fields}
        response = client.post("/api/v1/polls", json=body, headers=auth)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return make


def radios(html: str) -> list[dict]:
    return [a for a in Tags(html).named("input") if a.get("type") == "radio"]


def test_a_five_point_rating_is_a_row_of_stars_named_by_their_points(client, scale_poll):
    poll = scale_poll(kind="rating", scale={"min": 1, "max": 5, "min_label": "Useless",
                                            "max_label": "Very useful"})

    html = widget(client, poll).get_data(as_text=True)

    points = radios(html)
    assert [int(a["value"]) for a in points] == [o["id"] for o in poll["options"]]
    assert [a["aria-label"] for a in points] == [
        "1 of 5 (Useless)", "2 of 5", "3 of 5", "4 of 5", "5 of 5 (Very useful)"]
    assert {a["name"] for a in points} == {"choice"}
    assert 'class="pb-scale pb-stars"' in html
    assert html.count("★") == 5
    assert "Choose one point of the scale." in html


def test_an_nps_poll_shows_numbered_points_0_to_10_with_its_end_words(client, scale_poll):
    poll = scale_poll(kind="nps")

    html = widget(client, poll).get_data(as_text=True)

    names = [a["aria-label"] for a in radios(html)]
    assert names[0] == "0 of 10 (Not at all likely)"
    assert names[-1] == "10 of 10 (Extremely likely)"
    assert len(names) == 11
    assert 'class="pb-scale"' in html and "★" not in html


@pytest.mark.parametrize(("lang", "first", "hint"), [
    ("de", "1 von 7", "Wählen Sie einen Punkt der Skala."),
    ("es", "1 de 7", "Elija un punto de la escala."),
    ("fr", "1 sur 7", "Choisissez un point de l\u2019échelle."),
])
def test_the_scale_speaks_the_widget_language(client, scale_poll, lang, first, hint):
    poll = scale_poll(kind="rating", scale={"min": 1, "max": 7})

    html = widget(client, poll, lang=lang).get_data(as_text=True)

    assert radios(html)[0]["aria-label"] == first
    assert hint in html


@pytest.mark.parametrize("theme", ["light", "dark", "auto"])
def test_every_theme_draws_the_scale(client, scale_poll, theme):
    poll = scale_poll(kind="rating", scale={"min": 1, "max": 10})

    html = widget(client, poll, theme=theme).get_data(as_text=True)

    assert f'data-theme="{theme}"' in html
    assert len(radios(html)) == 10 and ".pb-point-input:checked + .pb-point" in html


def test_a_no_js_rating_vote_shows_the_mean_and_median(client, app, scale_poll):
    poll = scale_poll(kind="rating")
    four = next(o["id"] for o in poll["options"] if o["value"] == 4)
    two = next(o["id"] for o in poll["options"] if o["value"] == 2)
    form_vote(app.test_client(), poll, [two], ip="198.51.100.1")
    browser = app.test_client()

    page = follow(browser, form_vote(browser, poll, [four])).get_data(as_text=True)

    assert "Average: 3 (median 3)" in page
    assert "Total votes: 2" in page


def test_the_nps_results_show_the_score_in_german(client, app, scale_poll):
    poll = scale_poll(kind="nps")
    ten = next(o["id"] for o in poll["options"] if o["value"] == 10)
    browser = app.test_client()

    response = form_vote(browser, poll, [ten], query={"lang": "de"})

    assert "Net Promoter Score: 100" in follow(browser, response).get_data(as_text=True)


def test_the_results_svg_states_the_statistic(client, app, scale_poll):
    poll = scale_poll(kind="nps")
    for ip, value in (("198.51.100.1", 10), ("198.51.100.2", 3)):
        option = next(o["id"] for o in poll["options"] if o["value"] == value)
        form_vote(app.test_client(), poll, [option], ip=ip)

    svg = client.get(f"/polls/{poll['id']}/results.svg").get_data(as_text=True)

    assert svg.count("Net Promoter Score: 0") == 2  # drawn, and in the description
    assert "Total votes: 2" in svg
