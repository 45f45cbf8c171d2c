"""The console's baseline form: enter, replace and remove the votes a poll had before it
moved to Pollbox, with errors named next to each field (three stacks)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

import pytest

SEED_COUNTS = ("1203", "1012", "1763")


def field_error(page: str, name: str) -> str | None:
    found = re.search(rf'<p class="pb-field-error" id="{name}-error">([^<]*)</p>', page)
    return unescape(found.group(1)) if found else None


def baseline_form(poll: dict, counts=SEED_COUNTS, **fields) -> dict:
    form = {"total_votes": "3978", "source": "PsyWeb poll, 2009-2026",
            "as_of": "2026-11-30T00:00"}
    form.update({f"option_{option['id']}": n for option, n in zip(poll["options"], counts,
                                                                  strict=True)})
    return {**form, **fields}


def tallies_of(client, poll: dict) -> dict:
    return client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()


@pytest.fixture(autouse=True)
def december(clock):
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_the_poll_page_offers_to_enter_earlier_votes(console, make_poll):
    poll = make_poll()
    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert 'id="baseline-card"' in page
    assert f'href="/console/polls/{poll["id"]}/baseline"' in page
    assert 'id="remove-baseline"' not in page


def test_the_form_has_a_field_per_option(console, make_poll):
    poll = make_poll()
    page = console.get(f"/console/polls/{poll['id']}/baseline").get_data(as_text=True)
    for option in poll["options"]:
        assert f'name="option_{option["id"]}"' in page
        assert f'<label for="option_{option["id"]}">{option["label"]}</label>' in page
    for name in ("total_votes", "source", "as_of", "csrf_token"):
        assert f'name="{name}"' in page


def test_entering_a_baseline_adds_it_to_the_results(console, client, make_poll, vote):
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = console.post(f"/console/polls/{poll['id']}/baseline", baseline_form(poll))

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/console/polls/{poll['id']}#baseline-card")
    shown = tallies_of(client, poll)
    assert shown["total_votes"] == 3979
    assert shown["baseline"] == {"total_votes": 3978, "source": "PsyWeb poll, 2009-2026",
                                 "as_of": "2026-11-30T00:00:00Z"}
    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert "Baseline saved" in page
    assert '<span id="total-votes">3979</span>' in page
    assert '<span id="baseline-total">3978</span>' in page
    assert 'id="remove-baseline"' in page


def test_the_form_shows_the_current_baseline_and_replaces_it(console, client, make_poll):
    poll = make_poll()
    console.post(f"/console/polls/{poll['id']}/baseline", baseline_form(poll))

    page = console.get(f"/console/polls/{poll['id']}/baseline").get_data(as_text=True)
    assert 'name="total_votes" min="1" inputmode="numeric" value="3978"' in page
    assert 'value="2026-11-30T00:00"' in page
    assert f'name="option_{poll["options"][2]["id"]}" min="0" inputmode="numeric" ' \
           f'value="1763"' in page

    replaced = console.post(f"/console/polls/{poll['id']}/baseline",
                            baseline_form(poll, ("10", "", "5"), total_votes="15",
                                          source="Survey"))
    assert replaced.status_code == 302
    shown = tallies_of(client, poll)
    assert [option["votes"] for option in shown["options"]] == [10, 0, 5]
    assert shown["baseline"]["source"] == "Survey"


def test_removing_the_baseline(console, client, make_poll):
    poll = make_poll()
    console.post(f"/console/polls/{poll['id']}/baseline", baseline_form(poll))

    response = console.post(f"/console/polls/{poll['id']}/baseline/delete")

    assert response.status_code == 302
    assert tallies_of(client, poll)["baseline"] is None
    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert "Baseline removed" in page and 'id="remove-baseline"' not in page


@pytest.mark.parametrize(("fields", "name", "words"), [
    ({"total_votes": "3979"}, "options", "add up to 3978"),
    ({"total_votes": ""}, "total_votes", "Missing data"),
    ({"total_votes": "many"}, "total_votes", "Not a valid integer"),
    ({"source": ""}, "source", "Length"),
    ({"as_of": "2027-01-01T00:00"}, "as_of", "future"),
    ({"as_of": ""}, "as_of", "Missing data"),
])
def test_errors_are_named_next_to_their_field_keeping_the_input(console, client, make_poll,
                                                                fields, name, words):
    poll = make_poll()
    response = console.post(f"/console/polls/{poll['id']}/baseline",
                            baseline_form(poll, **fields))

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert words in field_error(page, name)
    assert 'value="PsyWeb poll, 2009-2026"' in page or name == "source"
    assert tallies_of(client, poll)["baseline"] is None


def test_an_option_with_a_wrong_count_is_named_at_its_own_field(console, make_poll):
    poll = make_poll(kind="multiple")
    first = poll["options"][0]["id"]
    page = console.post(f"/console/polls/{poll['id']}/baseline",
                        baseline_form(poll, ("-1", "1", "1"))).get_data(as_text=True)
    assert "greater than or equal to 0" in field_error(page, f"option_{first}")


def test_an_option_with_more_votes_than_the_total_is_explained(console, make_poll):
    poll = make_poll(kind="multiple")
    page = console.post(f"/console/polls/{poll['id']}/baseline",
                        baseline_form(poll, ("4000", "1", "1"))).get_data(as_text=True)
    assert "more than total_votes (3978)" in field_error(page, "options")


def test_the_edit_form_keeps_options_with_earlier_votes(console, make_poll):
    poll = make_poll()
    console.post(f"/console/polls/{poll['id']}/baseline", baseline_form(poll))
    page = console.get(f"/console/polls/{poll['id']}/edit").get_data(as_text=True)
    assert "This poll has 3978 votes" in page
    assert f'name="remove_{poll["options"][0]["id"]}" disabled' in page


@pytest.mark.parametrize("action", ["baseline", "baseline/delete"])
def test_baseline_changes_need_the_csrf_token(console, client, make_poll, action):
    poll = make_poll()
    response = console.post(f"/console/polls/{poll['id']}/{action}", baseline_form(poll),
                            token=False)
    assert response.status_code == 400
    assert tallies_of(client, poll)["baseline"] is None


def test_another_owners_baseline_is_forbidden(other_console, client, make_poll):
    poll = make_poll()
    assert other_console.get(f"/console/polls/{poll['id']}/baseline").status_code == 403
    assert other_console.post(f"/console/polls/{poll['id']}/baseline",
                              baseline_form(poll)).status_code == 403
    assert tallies_of(client, poll)["baseline"] is None
