"""The widget's "Change my vote" without JavaScript: offered to the browser that voted
(never to another visitor, not even one at the same address), a form POST the widget
turns into the change, then 303 back to the results.

Every test runs on the three stacks of `tests/conftest.py`.
"""

from __future__ import annotations

from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.widgets.helpers import csrf_token
from tests.widgets.test_widget import HOME_IP, OTHER_IP, follow, form_vote, tallies, widget


def change_link(page: str) -> str | None:
    marker = 'id="pb-change"'
    if marker not in page:
        return None
    tag = page[page.rindex("<a ", 0, page.index(marker)):page.index(marker)]
    return unescape(tag.split('href="', 1)[1].split('"', 1)[0])


def form_action(page: str) -> str:
    tag = page[page.index('<form method="post"'):]
    return unescape(tag.split('action="', 1)[1].split('"', 1)[0])


def votes_of(counted: dict) -> dict[int, int]:
    return {option["id"]: option["votes"] for option in counted["options"]}


def test_the_browser_that_voted_changes_its_vote_without_javascript(client, make_poll, app):
    poll = make_poll(allow_change=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    browser = app.test_client()
    voted = follow(browser, form_vote(browser, poll, [yes], query={"lang": "fr"}))
    link = change_link(voted.get_data(as_text=True))
    assert link is not None and "change=1" in link

    page = browser.get(link, environ_overrides={"REMOTE_ADDR": HOME_IP}).get_data(as_text=True)
    assert 'data-changing="1"' in page
    assert "Modifier mon vote" in page
    response = browser.post(form_action(page), data={
        "choice": [str(no)], "csrf_token": csrf_token(page)},
        environ_overrides={"REMOTE_ADDR": HOME_IP})

    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["Location"]).query)["changed"] == ["1"]
    shown = follow(browser, response).get_data(as_text=True)
    assert "Votre vote a été modifié." in shown
    assert votes_of(tallies(client, poll))[no] == 1
    assert votes_of(tallies(client, poll))[yes] == 0
    assert tallies(client, poll)["total_votes"] == 1


def test_another_visitor_at_the_same_address_is_not_offered_the_change(client, make_poll, app):
    poll = make_poll(allow_change=True, duplicate_check="cookie_and_ip")
    voter, neighbour = app.test_client(), app.test_client()
    form_vote(voter, poll)
    page = widget(neighbour, poll, HOME_IP).get_data(as_text=True)
    assert "You have already voted" in page  # the address voted: no second vote
    assert change_link(page) is None
    forced = widget(neighbour, poll, HOME_IP, change="1").get_data(as_text=True)
    assert 'id="pb-form"' not in forced

    # Posting the change form anyway changes nothing: this browser has no vote.
    token = csrf_token(widget(app.test_client(), poll, OTHER_IP).get_data(as_text=True))
    response = neighbour.post(f"/polls/{poll['id']}/widget/change", data={
        "choice": [str(poll["options"][2]["id"])], "csrf_token": token},
        environ_overrides={"REMOTE_ADDR": HOME_IP})
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["no_vote"]
    assert votes_of(tallies(client, poll))[poll["options"][0]["id"]] == 1


def test_no_change_is_offered_on_a_poll_without_allow_change(client, make_poll, app):
    poll = make_poll()
    browser = app.test_client()
    page = follow(browser, form_vote(browser, poll)).get_data(as_text=True)
    assert change_link(page) is None


def test_a_closed_polls_vote_is_not_changed_from_the_widget(client, make_poll, auth, app):
    poll = make_poll(allow_change=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    browser = app.test_client()
    form_vote(browser, poll, [yes])
    page = widget(browser, poll, change="1").get_data(as_text=True)
    token = csrf_token(page)
    assert client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"},
                        headers=auth).status_code == 200

    assert change_link(widget(browser, poll).get_data(as_text=True)) is None
    response = browser.post(form_action(page), data={"choice": [str(no)], "csrf_token": token},
                            environ_overrides={"REMOTE_ADDR": HOME_IP})
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["poll_closed"]
    assert votes_of(tallies(client, poll))[yes] == 1


@pytest.mark.parametrize(("choices", "error"), [([], "choose_one"), (["x"], "invalid")])
def test_an_invalid_change_shows_the_form_again_with_the_message(client, make_poll, app,
                                                                  choices, error):
    poll = make_poll(allow_change=True)
    yes = poll["options"][0]["id"]
    browser = app.test_client()
    form_vote(browser, poll, [yes])
    page = widget(browser, poll, change="1").get_data(as_text=True)

    response = browser.post(form_action(page), data={"choice": choices,
                                                     "csrf_token": csrf_token(page)},
                            environ_overrides={"REMOTE_ADDR": HOME_IP})

    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert (query["error"], query["change"]) == ([error], ["1"])
    assert 'data-changing="1"' in follow(browser, response).get_data(as_text=True)
    assert votes_of(tallies(client, poll))[yes] == 1
