"""`shuffle_options`: the widget's form shows the options in an order of each visitor's
own, the same on every load (cookies kept or not); results, the API, exports and the
owner's views keep the owner's order (three stacks; with JavaScript: Chromium)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.console.console_client import ConsoleClient
from tests.e2e.browser import EXPECT_TIMEOUT_MS, browser  # noqa: F401 (a fixture)
from tests.widgets.helpers import csrf_token

LABELS = [f"Option {n}" for n in range(1, 9)]
CHOICE = re.compile(r'name="choice" value="(\d+)"')


@pytest.fixture
def shuffled(make_poll) -> dict:
    return make_poll(question="Which first?", options=LABELS, shuffle_options=True,
                     duplicate_check="cookie")


def form_order(app, poll: dict, address: str, *, visitor=None) -> list[int]:
    """The option ids of the widget's form, in the order one visitor sees them."""
    visitor = visitor or app.test_client()
    response = visitor.get(f"/polls/{poll['id']}/widget",
                           environ_overrides={"REMOTE_ADDR": address})
    assert response.status_code == 200
    return [int(found) for found in CHOICE.findall(response.get_data(as_text=True))]


def owner_order(poll: dict) -> list[int]:
    return [option["id"] for option in poll["options"]]


def test_shuffle_options_is_off_by_default_and_set_like_any_field(client, auth, make_poll):
    plain = make_poll()
    assert plain["shuffle_options"] is False
    url = f"/api/v1/polls/{plain['id']}"
    changed = client.patch(url, json={"shuffle_options": True}, headers=auth)
    assert changed.status_code == 200 and changed.get_json()["shuffle_options"] is True
    assert client.get(url).get_json()["shuffle_options"] is True  # public: widgets may know
    refused = client.patch(url, json={"shuffle_options": "yes"}, headers=auth)
    assert refused.status_code == 422 and "shuffle_options" in refused.get_json()["errors"]


def test_each_visitor_keeps_an_order_of_their_own(app, shuffled):
    orders = {address: form_order(app, shuffled, address)
              for address in (f"198.51.100.{n}" for n in range(1, 21))}
    assert all(sorted(order) == sorted(owner_order(shuffled)) for order in orders.values())
    assert len({tuple(order) for order in orders.values()}) > 10  # 8! orders to draw from
    for address, order in list(orders.items())[:5]:
        # Another load, a fresh browser (no cookie, as where third-party cookies are
        # blocked), and a browser that keeps its cookie: the same order.
        keeper = app.test_client()
        assert form_order(app, shuffled, address, visitor=keeper) == order
        assert form_order(app, shuffled, address, visitor=keeper) == order
        assert form_order(app, shuffled, address) == order


def test_without_shuffle_every_visitor_sees_the_owners_order(app, make_poll):
    poll = make_poll(options=LABELS)
    for n in range(1, 6):
        assert form_order(app, poll, f"198.51.100.{n}") == owner_order(poll)


def test_results_api_and_exports_keep_the_owners_order(app, client, auth, shuffled, vote):
    vote(shuffled, [shuffled["options"][3]["id"]], ip="198.51.100.7")
    results = client.get(f"/polls/{shuffled['id']}/widget", query_string={"view": "results"},
                         environ_overrides={"REMOTE_ADDR": "198.51.100.7"})
    page = results.get_data(as_text=True)
    assert [page.index(label) for label in LABELS] == sorted(page.index(label)
                                                              for label in LABELS)
    tallies = client.get(f"/api/v1/polls/{shuffled['id']}/tallies").get_json()
    assert [option["label"] for option in tallies["options"]] == LABELS
    exported = client.get(f"/api/v1/polls/{shuffled['id']}/export",
                          query_string={"data": "tallies"}, headers=auth)
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [row["option_label"] for row in rows] == LABELS


def test_a_no_js_vote_counts_the_option_chosen_in_the_shuffled_form(app, client, shuffled):
    visitor = app.test_client()
    address = {"REMOTE_ADDR": "198.51.100.9"}
    page = visitor.get(f"/polls/{shuffled['id']}/widget", environ_overrides=address)
    first_shown = int(CHOICE.findall(page.get_data(as_text=True))[0])
    answer = visitor.post(f"/polls/{shuffled['id']}/widget", environ_overrides=address,
                          data={"choice": str(first_shown),
                                "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert answer.status_code == 303
    tallies = client.get(f"/api/v1/polls/{shuffled['id']}/tallies").get_json()
    assert {o["id"]: o["votes"] for o in tallies["options"]}[first_shown] == 1
    assert tallies["total_votes"] == 1


def test_the_console_sets_and_shows_shuffle_options(client, owner_key, auth):
    console = ConsoleClient(client, owner_key)
    created = console.post("/console/polls/new", {
        "question": "Which first?", "options": "\n".join(LABELS), "kind": "single",
        "duplicate_check": "cookie", "results": "always", "results_min_votes": "0",
        "shuffle_options": "on"})
    assert created.status_code == 302, created.get_data(as_text=True)
    poll_id = created.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    assert client.get(f"/api/v1/polls/{poll_id}").get_json()["shuffle_options"] is True
    form = console.get(f"/console/polls/{poll_id}/edit").get_data(as_text=True)
    assert re.search(r'id="shuffle_options" name="shuffle_options"[^>]* checked', form)
    shown = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert '<dd id="option-order">shuffled for each visitor</dd>' in shown


@pytest.mark.browser
def test_with_javascript_the_shuffled_form_votes_for_the_option_clicked(
        browser, served, app, client, shuffled):  # noqa: F811 (the fixture)
    shown = form_order(app, shuffled, "127.0.0.1")
    page = browser.new_page()
    try:
        page.goto(f"{served}/polls/{shuffled['id']}/widget")
        values = page.eval_on_selector_all('input[name="choice"]', "els => els.map(e => e.value)")
        assert [int(value) for value in values] == shown
        page.locator("label").first.click()
        page.get_by_role("button", name="Vote").click()
        page.wait_for_selector("#pb-total", timeout=EXPECT_TIMEOUT_MS)
    finally:
        page.close()
    tallies = client.get(f"/api/v1/polls/{shuffled['id']}/tallies").get_json()
    assert {o["id"]: o["votes"] for o in tallies["options"]}[shown[0]] == 1
