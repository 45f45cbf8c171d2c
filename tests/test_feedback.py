"""Feedback: results per context, comments (newest first, filters, hiding), hidden comments
in the owner's exports, and the one-click page-feedback poll."""

from __future__ import annotations

import csv
import io
import json

import pytest

PAGES = ["/a", "/b", "/c"]


@pytest.fixture
def survey(make_poll):
    return make_poll(allow_comment=True, allow_other=True, kind="multiple",
                     duplicate_check="none")


def ids(poll) -> list[int]:
    return [option["id"] for option in poll["options"]]


def pagination(response) -> dict:
    return json.loads(response.headers["X-Pagination"])


@pytest.fixture
def voted(survey, vote, clock):
    """/b: 3 votes, /a: 2, no context: 1, /c: 1 (other answer only)."""
    a, b, c = ids(survey)
    cast = [
        ([a], {"context": "/a", "comment": "first"}),
        ([a, b], {"context": "/a"}),
        ([b], {"context": "/b", "comment": "second"}),
        ([b], {"context": "/b"}),
        ([c], {"context": "/b", "comment": "third"}),
        ([a], {}),
        ([], {"context": "/c", "other": "Something else", "comment": "fourth"}),
    ]
    answers = []
    for choices, fields in cast:
        clock.advance(seconds=1)
        response = vote(survey, choices, **fields)
        assert response.status_code == 201, response.get_json()
        answers.append(response.get_json()["vote"]["id"])
    return survey, answers


def test_contexts_give_totals_and_option_counts_most_votes_first(client, auth, voted):
    poll, _ = voted
    a, b, c = ids(poll)
    response = client.get(f"/api/v1/polls/{poll['id']}/contexts", headers=auth)
    assert response.status_code == 200
    found = response.get_json()
    assert [(row["context"], row["total_votes"]) for row in found] == [
        ("/b", 3), ("/a", 2), ("/c", 1), (None, 1)
    ]
    by_context = {row["context"]: row for row in found}
    assert {o["id"]: o["votes"] for o in by_context["/a"]["options"]} == {a: 2, b: 1, c: 0}
    assert {o["id"]: o["percent"] for o in by_context["/b"]["options"]} == {
        a: 0.0, b: 66.67, c: 33.33}
    assert by_context["/c"]["other_votes"] == 1
    assert pagination(response)["total"] == 4


def test_contexts_are_paginated_like_the_polls_list(client, auth, voted):
    poll, _ = voted
    url = f"/api/v1/polls/{poll['id']}/contexts"
    first = client.get(url, query_string={"page_size": 2}, headers=auth)
    second = client.get(url, query_string={"page_size": 2, "page": 2}, headers=auth)
    assert [row["context"] for row in first.get_json()] == ["/b", "/a"]
    assert [row["context"] for row in second.get_json()] == ["/c", None]
    assert pagination(first) == {"total": 4, "total_pages": 2, "first_page": 1,
                                 "last_page": 2, "page": 1, "next_page": 2}


def test_comments_come_newest_first_with_choices_context_and_time(client, auth, voted):
    poll, answers = voted
    third = poll["options"][2]
    response = client.get(f"/api/v1/polls/{poll['id']}/comments", headers=auth)
    assert response.status_code == 200
    found = response.get_json()
    assert [row["comment"] for row in found] == ["fourth", "third", "second", "first"]
    assert found[1] == {
        "vote_id": answers[4], "created_at": found[1]["created_at"], "comment": "third",
        "hidden": False, "context": "/b", "choices": [{"id": third["id"], "label": third["label"]}],
        "other": None,
    }
    assert found[0]["other"] == "Something else" and found[0]["choices"] == []
    assert found[0]["created_at"].endswith("Z")
    assert pagination(response)["total"] == 4


def test_comments_filter_by_context_and_paginate(client, auth, voted):
    poll, _ = voted
    url = f"/api/v1/polls/{poll['id']}/comments"
    only_b = client.get(url, query_string={"context": "/b"}, headers=auth).get_json()
    assert [row["comment"] for row in only_b] == ["third", "second"]
    page = client.get(url, query_string={"page_size": 3, "page": 2}, headers=auth)
    assert [row["comment"] for row in page.get_json()] == ["first"]


def test_hiding_a_comment_marks_it_and_filters_find_it(client, auth, voted):
    poll, answers = voted
    url = f"/api/v1/polls/{poll['id']}/comments"
    response = client.patch(f"{url}/{answers[2]}", json={"hidden": True}, headers=auth)
    assert response.status_code == 200
    assert response.get_json()["hidden"] is True
    hidden = client.get(url, query_string={"hidden": "true"}, headers=auth).get_json()
    shown = client.get(url, query_string={"hidden": "false"}, headers=auth).get_json()
    assert [row["comment"] for row in hidden] == ["second"]
    assert [row["comment"] for row in shown] == ["fourth", "third", "first"]
    again = client.patch(f"{url}/{answers[2]}", json={"hidden": False}, headers=auth)
    assert again.get_json()["hidden"] is False


def test_hidden_comment_stays_in_every_export_format_marked(client, auth, voted):
    poll, answers = voted
    client.patch(f"/api/v1/polls/{poll['id']}/comments/{answers[0]}", json={"hidden": True},
                 headers=auth)
    url = f"/api/v1/polls/{poll['id']}/export"
    body = client.get(url, query_string={"data": "votes", "format": "csv"},
                      headers=auth).get_data(as_text=True)
    assert body.startswith("vote_id,created_at,option_ids,other,comment,context,voter,"
                           "comment_hidden,changed_at\r\n")
    rows = {row["vote_id"]: row for row in csv.DictReader(io.StringIO(body, newline=""))}
    assert (rows[answers[0]]["comment"], rows[answers[0]]["comment_hidden"]) == ("first", "true")
    assert rows[answers[2]]["comment_hidden"] == "false"
    document = client.get(url, query_string={"data": "votes", "format": "json"},
                          headers=auth).get_json()
    marked = {row["vote_id"]: row["comment_hidden"] for row in document["rows"]}
    assert marked[answers[0]] is True and marked[answers[2]] is False
    lines = client.get(url, query_string={"data": "votes", "format": "ndjson"},
                       headers=auth).get_data(as_text=True).splitlines()
    assert {json.loads(line)["vote_id"]: json.loads(line)["comment_hidden"]
            for line in lines}[answers[0]] is True


def test_hiding_a_vote_without_comment_or_of_another_poll_is_not_found(client, auth, voted,
                                                                       make_poll):
    poll, answers = voted
    no_comment = client.patch(f"/api/v1/polls/{poll['id']}/comments/{answers[1]}",
                              json={"hidden": True}, headers=auth)
    assert no_comment.status_code == 404
    elsewhere = make_poll()
    moved = client.patch(f"/api/v1/polls/{elsewhere['id']}/comments/{answers[0]}",
                         json={"hidden": True}, headers=auth)
    assert moved.status_code == 404


@pytest.mark.parametrize("body", [{}, {"hidden": "yes"}, {"hidden": True, "extra": 1}])
def test_hide_needs_a_boolean_and_nothing_else(client, auth, voted, body):
    poll, answers = voted
    response = client.patch(f"/api/v1/polls/{poll['id']}/comments/{answers[0]}", json=body,
                            headers=auth)
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"


@pytest.mark.parametrize("method, path, body", [
    ("get", "contexts", None),
    ("get", "comments", None),
    ("patch", "comments/x", {"hidden": True}),
])
def test_feedback_endpoints_are_the_owners_alone(client, auth, other_auth, survey, method,
                                                 path, body):
    url = f"/api/v1/polls/{survey['id']}/{path}"
    send = getattr(client, method)
    assert send(url, json=body).status_code == 401
    assert send(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    forbidden = send(url, json=body, headers=other_auth)
    assert (forbidden.status_code, forbidden.get_json()["code"]) == (403, "forbidden")
    missing = send(f"/api/v1/polls/nosuchpoll/{path}", json=body, headers=auth)
    assert (missing.status_code, missing.get_json()["code"]) == (404, "not_found")


def test_page_feedback_preset_creates_a_yes_no_poll_with_comments(client, auth):
    response = client.post("/api/v1/polls/presets/page-feedback", json={}, headers=auth)
    assert response.status_code == 201
    poll = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/polls/{poll['id']}")
    assert poll["question"] == "Was this page helpful?"
    assert [option["label"] for option in poll["options"]] == ["Yes", "No"]
    assert (poll["allow_comment"], poll["results"], poll["duplicate_check"],
            poll["vote_window_seconds"], poll["kind"]) == (True, "owner_only", "cookie", None,
                                                          "single")
    assert poll["embed"]["iframe"]


def test_page_feedback_preset_takes_question_origins_and_locale(client, auth):
    response = client.post("/api/v1/polls/presets/page-feedback", headers=auth, json={
        "question": "War diese Seite hilfreich?", "allowed_origins": ["https://www.example.de"],
        "locale": "de"})
    assert response.status_code == 201, response.get_json()
    poll = response.get_json()
    assert (poll["question"], poll["allowed_origins"], poll["locale"]) == (
        "War diese Seite hilfreich?", ["https://www.example.de"], "de")


def test_page_feedback_preset_refuses_other_fields_and_needs_a_key(client, auth):
    refused = client.post("/api/v1/polls/presets/page-feedback", json={"options": ["A", "B"]},
                          headers=auth)
    assert refused.status_code == 422
    assert client.post("/api/v1/polls/presets/page-feedback", json={}).status_code == 401


def test_page_feedback_gives_results_per_page(client, auth, vote):
    poll = client.post("/api/v1/polls/presets/page-feedback", json={}, headers=auth).get_json()
    yes, no = ids(poll)
    for page, choice in [("/docs/install", yes), ("/docs/install", yes), ("/docs/faq", no),
                         ("/docs/install", no)]:
        assert vote(poll, [choice], context=page).status_code == 201
    # One browser, one vote per poll: the same browser cannot vote again on another page.
    browser = client.application.test_client()
    assert vote(poll, [yes], browser=browser, context="/docs/faq").status_code == 201
    repeated = vote(poll, [yes], browser=browser, context="/docs/install")
    assert repeated.status_code == 409
    public = client.get(f"/api/v1/polls/{poll['id']}/tallies")
    assert public.get_json()["code"] == "results_hidden"
    found = client.get(f"/api/v1/polls/{poll['id']}/contexts", headers=auth).get_json()
    assert [(row["context"], row["total_votes"], [o["votes"] for o in row["options"]])
            for row in found] == [("/docs/install", 3, [2, 1]), ("/docs/faq", 2, [1, 1])]


def test_feedback_answers_validate_against_the_openapi_spec(client, auth, voted):
    from tests.test_trust_api_spec import openapi_validator

    poll, _ = voted
    contexts = client.get(f"/api/v1/polls/{poll['id']}/contexts", headers=auth).get_json()
    comments = client.get(f"/api/v1/polls/{poll['id']}/comments", headers=auth).get_json()
    for component, answers in (("Context", contexts), ("Comment", comments)):
        validator = openapi_validator(client, component)
        for answer in answers:
            validator.validate(answer)
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"/api/v1/polls/{poll_id}/contexts", "/api/v1/polls/{poll_id}/comments",
            "/api/v1/polls/{poll_id}/comments/{vote_id}",
            "/api/v1/polls/presets/page-feedback"} <= set(paths)
