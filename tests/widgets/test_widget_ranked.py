"""A ranked poll's widget: the form without JavaScript (one rank select per option,
checked by the server with clear errors), its results (first preferences and the
runoff's winner), the results SVG's final round, and in Chromium the tick boxes and
ordering buttons used with the keyboard alone, the no-JS form, axe and screenshots."""

# The fixtures imported from tests/e2e/browser.py are used as parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

from html import unescape

import pytest

from tests.e2e.browser import (
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    axe_source,  # noqa: F401 (a fixture)
    browser,  # noqa: F401 (a fixture)
    run_axe,
)
from tests.widgets.helpers import csrf_token

HOME_IP = "203.0.113.7"
LABELS = ["Memphis", "Nashville", "Chattanooga", "Knoxville"]


@pytest.fixture
def ranked(make_poll):
    return make_poll(question="Capital of Tennessee?", kind="ranked", options=LABELS,
                     duplicate_check="none", max_choices=3)


def ids(poll: dict) -> list[int]:
    return [option["id"] for option in poll["options"]]


def widget(browser, poll: dict, **query):
    return browser.get(f"/polls/{poll['id']}/widget", query_string=query,
                       environ_overrides={"REMOTE_ADDR": HOME_IP})


def rank_vote(browser, poll: dict, ranks: dict[int, str]):
    """Post the no-JS form with `rank-<option id>` selects set as given."""
    token = csrf_token(widget(browser, poll).get_data(as_text=True))
    data = {f"rank-{option_id}": rank for option_id, rank in ranks.items()}
    return browser.post(f"/polls/{poll['id']}/widget", data={**data, "csrf_token": token},
                        environ_overrides={"REMOTE_ADDR": HOME_IP})


def test_form_has_a_rank_select_per_option_with_not_ranked_and_the_ranks(client, ranked):
    page = widget(client, ranked).get_data(as_text=True)
    for option_id in ids(ranked):
        assert f'<select name="rank-{option_id}" id="pb-r-{option_id}"' in page
        assert f'<label for="pb-r-{option_id}"' in page
    assert page.count('<option value="">Not ranked</option>') == 4
    assert page.count('<option value="3">3</option>') == 4
    assert '<option value="4">' not in page  # max_choices is 3
    assert "Rank up to 3 options in order of preference" in page
    assert 'name="choice"' not in page


def test_no_js_ranking_is_recorded_in_the_voters_order(client, auth, ranked):
    memphis, nashville, chattanooga, knoxville = ids(ranked)
    response = rank_vote(client, ranked, {knoxville: "1", memphis: "2", nashville: "",
                                          chattanooga: ""})
    assert response.status_code == 303 and "voted=" in response.headers["Location"]
    rows = client.get(f"/api/v1/polls/{ranked['id']}/export?data=votes&format=json",
                      headers=auth).get_json()["rows"]
    assert [row["option_ids"] for row in rows] == [[knoxville, memphis]]
    page = client.get(response.headers["Location"],
                      environ_overrides={"REMOTE_ADDR": HOME_IP}).get_data(as_text=True)
    assert "Votes count first preferences." in page
    assert "Winner after the instant runoff: Knoxville" in page


@pytest.mark.parametrize(("ranks", "code", "message"), [
    ({0: "1", 1: "1"}, "rank_repeated", "Please give each rank to one option only."),
    ({0: "1", 1: "3"}, "rank_gap", "Please rank from 1 upwards without skipping a number."),
    ({}, "choose_one", "Please choose an option."),
    ({0: "4"}, "invalid", "Your answer could not be accepted."),
    ({0: "first"}, "invalid", "Your answer could not be accepted."),
])
def test_bad_no_js_rankings_count_nothing_and_say_what_is_wrong(client, ranked, ranks, code,
                                                                message):
    option = ids(ranked)
    response = rank_vote(client, ranked, {option[i]: rank for i, rank in ranks.items()})
    assert response.status_code == 303
    assert f"error={code}" in response.headers["Location"]
    page = client.get(response.headers["Location"],
                      environ_overrides={"REMOTE_ADDR": HOME_IP}).get_data(as_text=True)
    assert message in unescape(page)
    assert client.get(f"/api/v1/polls/{ranked['id']}/tallies").get_json()["total_votes"] == 0


@pytest.mark.parametrize(("lang", "text"), [
    ("de", "Kein Rang"), ("es", "Sin puesto"), ("fr", "Non classé")])
def test_ranking_form_speaks_german_spanish_and_french(client, ranked, lang, text):
    page = unescape(widget(client, ranked, lang=lang).get_data(as_text=True))
    assert text in page


def test_results_svg_shows_the_final_round_and_the_winner(client, ranked, vote):
    memphis, nashville, chattanooga, knoxville = ids(ranked)
    for n, ranking in ((8, [memphis, nashville]), (5, [nashville, knoxville]),
                       (3, [chattanooga, knoxville]), (4, [knoxville, chattanooga])):
        for _ in range(n):
            assert vote(ranked, ranking).status_code == 201
    svg = unescape(client.get(f"/polls/{ranked['id']}/results.svg").get_data(as_text=True))
    assert "Winner after the instant runoff: Knoxville" in svg
    # The final round: Memphis 8 and Knoxville 12 of 20; the others are out.
    assert "Memphis: 40% (8 votes)" in svg and "Knoxville: 60% (12 votes)" in svg
    assert "Nashville" not in svg and "Chattanooga" not in svg


# --- Chromium ------------------------------------------------------------------------




def order_shown(page) -> list[str]:
    return page.eval_on_selector_all("#pb-ranking .pb-rank-label",
                                     "labels => labels.map(l => l.textContent)")


@pytest.mark.browser
def test_keyboard_alone_ranks_the_options_and_votes(browser, served, client, ranked,
                                                    axe_source):
    memphis, nashville, chattanooga, knoxville = ids(ranked)
    # axe is injected as a script: only a context bypassing the page's policy lets it in.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{served}/polls/{ranked['id']}/widget")
        page.wait_for_selector("#pb-ranking .pb-up")
        assert order_shown(page) == LABELS
        assert page.locator("#pb-ranking select").count() == 0
        assert run_axe(page, axe_source) == []
        # Tab to Knoxville's tick box (its label names it), tick it with Space, tab to
        # "Move up: Knoxville" and press it three times: focus follows Knoxville.
        page.keyboard.press("Tab")
        for _ in range(40):
            if page.evaluate("document.activeElement.id") == f"pb-i-{knoxville}":
                break
            page.keyboard.press("Tab")
        assert page.get_by_role("checkbox", name="Knoxville").evaluate(
            "b => b === document.activeElement")
        page.keyboard.press("Space")
        assert page.is_checked(f"#pb-i-{knoxville}")
        page.keyboard.press("Tab")
        up = page.get_by_role("button", name="Move up: Knoxville")
        assert up.evaluate("b => b === document.activeElement")
        page.keyboard.press("Enter")
        assert page.text_content("#pb-rank-live") == "Knoxville, position 3 of 4"
        page.keyboard.press("Space")
        page.keyboard.press("Enter")
        assert order_shown(page) == ["Knoxville", "Memphis", "Nashville", "Chattanooga"]
        assert page.text_content("#pb-rank-live") == "Knoxville, position 1 of 4"
        # At the top its "up" button is off, so focus moved to its "down" button.
        assert page.evaluate("document.activeElement.getAttribute('aria-label')") == \
            "Move down: Knoxville"
        # Move Chattanooga above Nashville, tick Memphis and Chattanooga, leave Nashville
        # out (a partial ranking), then vote: the ticked ones in order are the ranking.
        page.get_by_role("button", name="Move up: Chattanooga").focus()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.getAttribute('aria-label')") == \
            "Move up: Chattanooga"
        for option_id in (memphis, chattanooga):
            page.focus(f"#pb-i-{option_id}")
            page.keyboard.press("Space")
        marks = page.eval_on_selector_all(".pb-rank-pos", "m => m.map(x => x.textContent)")
        assert marks == ["1", "2", "3", "\u2013"]  # an en dash: not ranked
        page.screenshot(path=str(SCREENSHOTS / "ranked-widget-ordered.png"), full_page=True)
        page.get_by_role("button", name="Vote").focus()
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('pb-status').textContent"
                               " === 'Thank you for voting.'", timeout=EXPECT_TIMEOUT_MS)
        page.wait_for_selector("#pb-winner:not([hidden])", timeout=EXPECT_TIMEOUT_MS)
        assert page.text_content("#pb-winner") == "Winner after the instant runoff: Knoxville"
        assert run_axe(page, axe_source) == []
        page.screenshot(path=str(SCREENSHOTS / "ranked-widget-results.png"), full_page=True)
    finally:
        context.close()
    rows = client.get(f"/api/v1/polls/{ranked['id']}/tallies").get_json()
    assert rows["irv"]["winner"] == knoxville
    assert rows["irv"]["rounds"][0]["counts"][str(nashville)] == 0
    assert {o["id"]: o["votes"] for o in rows["options"]} == {
        memphis: 0, nashville: 0, chattanooga: 0, knoxville: 1}


@pytest.mark.browser
def test_no_js_ranking_form_votes_in_chromium(browser, served, client, auth, ranked,
                                              axe_source):
    memphis, nashville, _chattanooga, knoxville = ids(ranked)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{served}/polls/{ranked['id']}/widget")
        page.get_by_label("Nashville").select_option("1")
        page.get_by_label("Memphis").select_option("2")
        page.screenshot(path=str(SCREENSHOTS / "ranked-widget-nojs-form.png"), full_page=True)
        page.get_by_role("button", name="Vote").click()
        page.locator("#pb-total").wait_for(timeout=EXPECT_TIMEOUT_MS)
        assert page.inner_text("#pb-status") == "Thank you for voting."
        assert page.inner_text("#pb-winner") == "Winner after the instant runoff: Nashville"
        page.screenshot(path=str(SCREENSHOTS / "ranked-widget-nojs-results.png"),
                        full_page=True)
    finally:
        context.close()
    rows = client.get(f"/api/v1/polls/{ranked['id']}/export?data=votes&format=json",
                      headers=auth).get_json()["rows"]
    assert [row["option_ids"] for row in rows] == [[nashville, memphis]]
    assert knoxville not in rows[0]["option_ids"]
    # axe on the no-JS form, in a context that may inject it.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{served}/polls/{ranked['id']}/widget")
        page.evaluate("document.querySelectorAll('#pb-ranking select')"
                      ".forEach(s => { s.hidden = false; s.disabled = false; })")
        assert run_axe(page, axe_source) == []
    finally:
        context.close()
