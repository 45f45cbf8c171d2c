"""Rating and NPS polls through the API: the service makes the scale's options, votes
pick one point, the tallies add the statistic's block (checked against values computed
by hand), and the exports carry the values and the statistics."""

from __future__ import annotations

import csv
import io
import json

import pytest

POLLS = "/api/v1/polls"
RATING_VOTES = [5, 4, 4, 3, 5]  # mean 4.2, median 4, s^2 = 2.8 / 4 = 0.7
# t(0.975, 4) = 2.776445; 4.2 -+ 2.776445 * sqrt(0.7 / 5) = 4.2 -+ 1.0388
RATING_BLOCK = {"mean": 4.2, "median": 4, "ci95": [3.16, 5.0]}  # 5.24 clipped to the scale
NPS_VOTES = [10, 9, 9, 8, 7, 6, 0, 10, 3, 10]  # 5 promoters, 2 passives, 3 detractors
# 50 % - 30 % = 20; SE = 100 * sqrt((0.5 + 0.3 - 0.2^2) / 10) = 27.568; 1.96 SE = 54.03
NPS_BLOCK = {"score": 20.0, "promoters": 5, "passives": 2, "detractors": 3,
             "ci95": [-34.03, 74.03]}


def assert_invalid(response, field: str) -> None:
    body = response.get_json()
    assert response.status_code == 422, body
    assert body["code"] == "validation_error"
    names = list(body["errors"])
    assert any(name == field or name.startswith(f"{field}.") for name in names), names


@pytest.fixture
def create(client, auth):
    def send(**fields):
        body = {"question": "How useful was this page?", "duplicate_check": "none", **fields}
        return client.post(POLLS, json=body, headers=auth)

    return send


@pytest.fixture
def scale_poll(create):
    def make(**fields) -> dict:
        response = create(**fields)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return make


def point(poll: dict, value: int) -> int:
    return next(option["id"] for option in poll["options"] if option["value"] == value)


def cast_all(vote, poll: dict, values: list[int]) -> None:
    for index, value in enumerate(values):
        response = vote(poll, [point(poll, value)], ip=f"203.0.113.{index + 1}")
        assert response.status_code == 201, response.get_json()


def tallies_of(client, poll: dict, headers=None) -> dict:
    response = client.get(f"{POLLS}/{poll['id']}/tallies", headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def export(client, auth, poll: dict, fmt: str) -> str:
    response = client.get(f"{POLLS}/{poll['id']}/export",
                          query_string={"data": "tallies", "format": fmt}, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_a_rating_poll_gets_one_option_per_point_of_its_default_scale(scale_poll):
    poll = scale_poll(kind="rating")

    assert [(o["label"], o["value"]) for o in poll["options"]] == [
        ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 5)]
    assert poll["scale"] == {"min": 1, "max": 5, "min_label": None, "max_label": None}
    assert poll["max_choices"] == 1


def test_a_rating_poll_keeps_its_own_scale_and_end_labels(client, scale_poll):
    scale = {"min": 1, "max": 10, "min_label": "Useless", "max_label": "Excellent"}
    poll = scale_poll(kind="rating", scale=scale)

    public = client.get(f"{POLLS}/{poll['id']}").get_json()
    assert public["scale"] == scale
    assert [o["value"] for o in public["options"]] == list(range(1, 11))


def test_an_nps_poll_gets_the_points_0_to_10(scale_poll):
    poll = scale_poll(kind="nps")

    assert [(o["label"], o["value"]) for o in poll["options"]] == [
        (str(n), n) for n in range(11)]
    assert poll["scale"]["min"] == 0 and poll["scale"]["max"] == 10


def test_options_of_other_kinds_have_no_value(scale_poll):
    poll = scale_poll(options=["Yes", "No"])

    assert [o["value"] for o in poll["options"]] == [None, None]
    assert poll["scale"] is None


@pytest.mark.parametrize(("fields", "named"), [
    pytest.param({"kind": "rating", "options": ["a", "b"]}, "options", id="rating-options"),
    pytest.param({"kind": "nps", "options": ["a", "b"]}, "options", id="nps-options"),
    pytest.param({"kind": "nps", "scale": {"min": 1, "max": 5}}, "scale", id="nps-scale"),
    pytest.param({"options": ["a", "b"], "scale": {"min": 1, "max": 5}}, "scale",
                 id="single-scale"),
    pytest.param({"kind": "single"}, "options", id="single-without-options"),
    pytest.param({"kind": "rating", "scale": {"min": 0, "max": 5}}, "scale", id="min-below-1"),
    pytest.param({"kind": "rating", "scale": {"min": 5, "max": 5}}, "scale", id="max-not-above"),
    pytest.param({"kind": "rating", "scale": {"min": 1, "max": 11}}, "scale", id="max-above-10"),
    pytest.param({"kind": "rating", "scale": {"max": 5}}, "scale", id="min-missing"),
    pytest.param({"kind": "rating", "scale": {"min": 1, "max": 5, "min_label": ""}}, "scale",
                 id="empty-label"),
    pytest.param({"kind": "rating", "max_choices": 2}, "max_choices", id="two-choices"),
    pytest.param({"kind": "nps", "allow_other": True}, "allow_other", id="other-answer"),
])
def test_invalid_scale_polls_are_refused_naming_the_field(create, fields, named):
    assert_invalid(create(**fields), named)


def test_a_rating_vote_is_exactly_one_point(scale_poll, vote):
    poll = scale_poll(kind="rating")

    assert_invalid(vote(poll, [point(poll, 1), point(poll, 2)]), "choices")
    assert vote(poll, [point(poll, 4)]).status_code == 201


def test_rating_tallies_give_mean_median_and_t_interval(client, scale_poll, vote):
    poll = scale_poll(kind="rating")
    cast_all(vote, poll, RATING_VOTES)

    tallies = tallies_of(client, poll)

    assert tallies["rating"] == RATING_BLOCK
    assert tallies["total_votes"] == 5
    assert "nps" not in tallies


def test_a_single_rating_has_a_mean_but_no_interval(client, scale_poll, vote):
    poll = scale_poll(kind="rating", scale={"min": 1, "max": 7})
    cast_all(vote, poll, [6])

    assert tallies_of(client, poll)["rating"] == {"mean": 6.0, "median": 6, "ci95": None}


def test_nps_tallies_give_score_groups_and_interval(client, scale_poll, vote):
    poll = scale_poll(kind="nps")
    cast_all(vote, poll, NPS_VOTES)

    tallies = tallies_of(client, poll)

    assert tallies["nps"] == NPS_BLOCK
    assert "rating" not in tallies


def test_an_nps_poll_without_votes_has_no_score(client, scale_poll):
    poll = scale_poll(kind="nps")

    assert tallies_of(client, poll)["nps"] == {
        "score": None, "promoters": 0, "passives": 0, "detractors": 0, "ci95": None}


def test_the_block_is_null_while_the_tallies_are_suppressed(client, auth, scale_poll, vote):
    poll = scale_poll(kind="rating", results_min_votes=10)
    cast_all(vote, poll, RATING_VOTES)

    assert tallies_of(client, poll)["rating"] is None
    assert tallies_of(client, poll, headers=auth)["rating"] == RATING_BLOCK


def test_the_vote_answer_carries_the_block(scale_poll, vote):
    poll = scale_poll(kind="nps")
    cast_all(vote, poll, NPS_VOTES[:-1])

    answer = vote(poll, [point(poll, NPS_VOTES[-1])], ip="198.51.100.9").get_json()

    assert answer["tallies"]["nps"] == NPS_BLOCK


def test_the_csv_export_has_values_and_statistic_rows(client, auth, scale_poll, vote):
    poll = scale_poll(kind="rating")
    cast_all(vote, poll, RATING_VOTES)

    rows = list(csv.DictReader(io.StringIO(export(client, auth, poll, "csv"), newline="")))

    assert list(rows[0])[-1] == "value"
    assert [(r["option_label"], r["votes"], r["value"]) for r in rows[:5]] == [
        ("1", "0", "1"), ("2", "0", "2"), ("3", "1", "3"), ("4", "2", "4"), ("5", "2", "5")]
    stats = {r["option_label"]: r for r in rows[5:]}
    assert list(stats) == ["mean", "median"]
    assert all(r["option_id"] == "" for r in stats.values())
    assert (stats["mean"]["value"], stats["mean"]["ci95_low"], stats["mean"]["ci95_high"]) == (
        "4.2", "3.16", "5")
    assert stats["median"]["value"] == "4"


def test_the_json_export_has_the_block_as_a_field(client, auth, scale_poll, vote):
    poll = scale_poll(kind="nps")
    cast_all(vote, poll, NPS_VOTES)

    document = json.loads(export(client, auth, poll, "json"))

    assert document["nps"] == NPS_BLOCK
    assert [row["value"] for row in document["rows"]] == list(range(11))
    assert all(row["option_id"] is not None for row in document["rows"])


def test_the_ndjson_export_has_statistic_rows(client, auth, scale_poll, vote):
    poll = scale_poll(kind="nps")
    cast_all(vote, poll, NPS_VOTES)

    rows = [json.loads(line) for line in export(client, auth, poll, "ndjson").splitlines()]

    stats = {row["option_label"]: row for row in rows if row["option_id"] is None}
    assert (stats["nps"]["value"], [stats["nps"]["ci95_low"], stats["nps"]["ci95_high"]]) == (
        NPS_BLOCK["score"], NPS_BLOCK["ci95"])
    assert [stats[name]["votes"] for name in ("promoters", "passives", "detractors")] == [
        5, 2, 3]
    assert stats["promoters"]["percent"] == 50.0


def test_changing_the_scale_before_any_vote_remakes_the_options(client, auth, scale_poll):
    poll = scale_poll(kind="rating")

    response = client.patch(f"{POLLS}/{poll['id']}", headers=auth,
                            json={"scale": {"min": 0 + 1, "max": 3, "max_label": "Great"}})

    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    assert [o["value"] for o in changed["options"]] == [1, 2, 3]
    assert changed["scale"]["max_label"] == "Great"


def test_the_points_cannot_change_after_a_vote_but_the_labels_can(client, auth, scale_poll,
                                                                   vote):
    poll = scale_poll(kind="rating")
    cast_all(vote, poll, [4])
    url = f"{POLLS}/{poll['id']}"

    refused = client.patch(url, headers=auth, json={"scale": {"min": 1, "max": 7}})
    relabelled = client.patch(url, headers=auth, json={
        "scale": {"min": 1, "max": 5, "min_label": "Bad", "max_label": "Good"}})

    assert refused.status_code == 409 and refused.get_json()["code"] == "poll_has_votes"
    assert relabelled.status_code == 200
    assert relabelled.get_json()["options"] == poll["options"]
    assert relabelled.get_json()["scale"]["min_label"] == "Bad"


@pytest.mark.parametrize(("body", "named"), [
    pytest.param({"options": [{"label": "a"}, {"label": "b"}]}, "options", id="options"),
    pytest.param({"kind": "single"}, "options", id="single-without-options"),
    pytest.param({"kind": "nps", "scale": {"min": 1, "max": 5}}, "scale", id="nps-scale"),
])
def test_a_scale_poll_refuses_changes_that_break_its_kind(client, auth, scale_poll, body,
                                                          named):
    poll = scale_poll(kind="rating")

    assert_invalid(client.patch(f"{POLLS}/{poll['id']}", headers=auth, json=body), named)


def test_a_single_poll_becomes_an_nps_poll_before_its_first_vote(client, auth, scale_poll):
    poll = scale_poll(options=["Yes", "No"])

    response = client.patch(f"{POLLS}/{poll['id']}", headers=auth, json={"kind": "nps"})

    assert response.status_code == 200, response.get_json()
    assert [o["value"] for o in response.get_json()["options"]] == list(range(11))


def test_a_retried_vote_replays_the_block_of_its_first_answer(app, scale_poll, vote):
    poll = scale_poll(kind="rating")
    cast_all(vote, poll, [2])
    body = {"choices": [point(poll, 5)]}
    headers = {"Idempotency-Key": "6f1c0b9e-8a57-4b53-9a4c-2d1f1f6a1e01"}

    def send():
        return app.test_client().post(f"{POLLS}/{poll['id']}/votes", json=body,
                                      headers=headers,
                                      environ_overrides={"REMOTE_ADDR": "198.51.100.7"})

    first, retry = send(), send()

    assert first.status_code == 201 and retry.status_code == 201
    # 2 and 5: mean 3.5, s^2 = 4.5, t(1) = 12.7062: 3.5 -+ 12.7062 * 1.5 = 3.5 -+ 19.06,
    # clipped to the scale's 1..5
    expected = {"mean": 3.5, "median": 3.5, "ci95": [1.0, 5.0]}
    assert first.get_json()["tallies"]["rating"] == expected
    assert retry.get_json()["tallies"]["rating"] == expected


def test_the_readme_page_feedback_recipe_makes_a_commented_five_star_rating(scale_poll):
    poll = scale_poll(**{
        "question": "How useful was this page?", "kind": "rating", "allow_comment": True,
        "scale": {"min": 1, "max": 5, "min_label": "Not useful", "max_label": "Very useful"},
        "results": "owner_only", "duplicate_check": "cookie"})

    assert (poll["allow_comment"], poll["results"], len(poll["options"])) == (
        True, "owner_only", 5)


def test_the_timeseries_export_carries_each_points_value(client, auth, scale_poll, vote):
    poll = scale_poll(kind="nps")
    cast_all(vote, poll, [9])

    response = client.get(f"{POLLS}/{poll['id']}/export", headers=auth,
                          query_string={"data": "timeseries", "format": "ndjson"})

    rows = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [(row["value"], row["votes"]) for row in rows] == [
        (n, 1 if n == 9 else 0) for n in range(11)]
