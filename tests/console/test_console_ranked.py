"""Console: ranked polls are created and edited with their number of ranks, and the poll
page shows the instant runoff round by round (the Flask test client, three stacks)."""

from __future__ import annotations

import re
from html import unescape

from tests.console.test_console_polls import api_poll, create_form, created_id


def test_a_ranked_poll_is_created_with_every_option_as_a_rank(console, client, auth):
    page = console.get("/console/polls/new").get_data(as_text=True)
    assert '<input type="radio" name="kind" value="ranked"' in page
    poll_id = created_id(console.post("/console/polls/new", create_form(kind="ranked")))
    poll = api_poll(client, auth, poll_id)
    assert (poll["kind"], poll["max_choices"]) == ("ranked", 3)
    shown = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert "Ranked choice, up to 3 ranks" in shown


def test_a_ranked_poll_is_created_and_edited_with_fewer_ranks(console, client, auth):
    poll_id = created_id(console.post("/console/polls/new",
                                      create_form(kind="ranked", max_choices="2")))
    assert api_poll(client, auth, poll_id)["max_choices"] == 2
    poll = api_poll(client, auth, poll_id)
    edit = {f"option_{o['id']}": o["label"] for o in poll["options"]}
    response = console.post(f"/console/polls/{poll_id}/edit", {
        "question": poll["question"], **edit, "kind": "ranked", "max_choices": "3",
        "duplicate_check": "none", "results": "always"})
    assert response.status_code == 302
    assert api_poll(client, auth, poll_id)["max_choices"] == 3
    form = console.get(f"/console/polls/{poll_id}/edit").get_data(as_text=True)
    assert re.search(r'value="ranked" checked', form)


def test_the_poll_page_shows_the_runoff_round_by_round(console, make_poll, vote):
    poll = make_poll(kind="ranked", options=["Ada", "Grace", "Edsger"],
                     duplicate_check="none")
    ada, grace, edsger = (option["id"] for option in poll["options"])
    for n, ranking in ((3, [ada]), (2, [grace, edsger]), (2, [edsger, grace])):
        for _ in range(n):
            assert vote(poll, ranking).status_code == 201
    page = unescape(console.get(f"/console/polls/{poll['id']}").get_data(as_text=True))
    assert "Votes count first preferences." in page
    # Round 1: 3, 2, 2 (Grace and Edsger tie: same first preferences, lowest id goes);
    # round 2: Ada 3, Edsger 4 of 7: Edsger wins.
    assert "Winner after the instant runoff: Edsger" in page
    table = page[page.index('<table class="pb-table" id="irv-rounds">'):]
    table = table[:table.index("</table>")]
    cells = re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", table)
    assert cells[cells.index("Ada"):] == [
        "Ada", "3", "3",
        "Grace", "2 (eliminated)", "—",
        "Edsger", "2", "4",
        "Exhausted ballots", "0", "0"]


def test_a_ranked_poll_without_votes_has_no_winner_yet(console, make_poll):
    poll = make_poll(kind="ranked", options=["Ada", "Grace"])
    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert "No winner yet: nobody has voted." in page
    assert 'id="irv-rounds"' not in page
