"""Console: creating and editing rating and NPS polls, the page-feedback preset, and the
statistic on the poll page (the Flask test client, three stacks)."""

from __future__ import annotations

from tests.console.test_console_polls import api_poll, created_id, field_error

RATING_FORM = {"question": "How clear was this article?", "kind": "rating",
               "duplicate_check": "none", "scale_min": "1", "scale_max": "7",
               "scale_min_label": "Confusing", "scale_max_label": "Crystal clear"}


def test_creating_a_rating_poll_with_its_scale(console, client, auth):
    poll_id = created_id(console.post("/console/polls/new", RATING_FORM))

    poll = api_poll(client, auth, poll_id)
    assert poll["kind"] == "rating"
    assert poll["scale"] == {"min": 1, "max": 7, "min_label": "Confusing",
                             "max_label": "Crystal clear"}
    assert [o["value"] for o in poll["options"]] == list(range(1, 8))


def test_creating_an_nps_poll_ignores_the_options_and_scale_fields(console, client, auth):
    poll_id = created_id(console.post("/console/polls/new", {
        "question": "Would you recommend us?", "kind": "nps", "options": "left\nover",
        "scale_min": "1", "scale_max": "5"}))

    poll = api_poll(client, auth, poll_id)
    assert [o["label"] for o in poll["options"]] == [str(n) for n in range(11)]


def test_a_scale_with_its_points_reversed_is_refused_by_the_form(console):
    response = console.post("/console/polls/new", {**RATING_FORM, "scale_min": "5",
                                                   "scale_max": "3"})

    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "scale") == "Must be more than min."


def test_the_page_feedback_preset_fills_in_a_five_point_rating_with_a_comment(console, client,
                                                                              auth):
    form = console.get("/console/polls/new?preset=page-feedback").get_data(as_text=True)
    assert 'value="rating" checked' in form
    assert 'name="allow_comment" checked' in form
    values = {"question": "How useful was this page?", "kind": "rating", "scale_min": "1",
              "scale_max": "5", "scale_min_label": "Not useful",
              "scale_max_label": "Very useful", "allow_comment": "on"}
    for name in ("scale_min_label", "scale_max_label"):
        assert f'value="{values[name]}"' in form

    poll = api_poll(client, auth, created_id(console.post("/console/polls/new", values)))

    assert (poll["kind"], poll["allow_comment"], len(poll["options"])) == ("rating", True, 5)


def test_editing_a_rating_changes_its_end_labels_and_keeps_its_votes(console, client, auth,
                                                                      vote):
    poll_id = created_id(console.post("/console/polls/new", RATING_FORM))
    poll = api_poll(client, auth, poll_id)
    assert vote(poll, [poll["options"][6]["id"]]).status_code == 201
    form = console.get(f"/console/polls/{poll_id}/edit").get_data(as_text=True)
    assert 'value="Crystal clear"' in form

    response = console.post(f"/console/polls/{poll_id}/edit", {
        **RATING_FORM, "scale_max_label": "Perfectly clear", "results": "always",
        "results_min_votes": "0", "locale": "en"})

    assert response.status_code == 302, response.get_data(as_text=True)
    changed = api_poll(client, auth, poll_id)
    assert changed["scale"]["max_label"] == "Perfectly clear"
    assert changed["options"] == poll["options"]


def test_the_poll_page_shows_the_rating_statistics(console, client, auth, vote):
    poll_id = created_id(console.post("/console/polls/new", RATING_FORM))
    poll = api_poll(client, auth, poll_id)
    for ip, index in (("203.0.113.1", 1), ("203.0.113.2", 5)):  # values 2 and 6
        assert vote(poll, [poll["options"][index]["id"]], ip=ip).status_code == 201

    page = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)

    assert '<span id="stat-mean">4.0</span>' in page
    assert '<span id="stat-median">4</span>' in page
    assert "Rating scale: 1 (Confusing) to 7 (Crystal clear)" in page


def test_the_poll_page_shows_the_net_promoter_score(console, client, auth, vote):
    poll_id = created_id(console.post("/console/polls/new", {
        "question": "Would you recommend us?", "kind": "nps", "duplicate_check": "none"}))
    poll = api_poll(client, auth, poll_id)
    for ip, value in (("203.0.113.1", 10), ("203.0.113.2", 10), ("203.0.113.3", 0)):
        assert vote(poll, [poll["options"][value]["id"]], ip=ip).status_code == 201

    page = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)

    assert '<span id="stat-score">33.33</span>' in page
    assert '<span id="stat-promoters">2</span>' in page
    assert '<span id="stat-detractors">1</span>' in page


def test_changing_the_points_of_a_rating_with_votes_is_refused_next_to_the_scale(console,
                                                                                  client, auth,
                                                                                  vote):
    poll_id = created_id(console.post("/console/polls/new", RATING_FORM))
    poll = api_poll(client, auth, poll_id)
    assert vote(poll, [poll["options"][0]["id"]]).status_code == 201

    response = console.post(f"/console/polls/{poll_id}/edit", {
        **RATING_FORM, "scale_max": "10", "results": "always", "results_min_votes": "0",
        "locale": "en"})

    assert response.status_code == 409
    assert "points of a scale cannot change" in field_error(response.get_data(as_text=True),
                                                            "scale")
    assert [o["value"] for o in api_poll(client, auth, poll_id)["options"]] == list(range(1, 8))
