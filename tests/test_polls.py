"""Polls: create, list, read, change and delete (API.md, sections Polls and Errors)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import redis

from service.infra.redis import redis_handle
from tests.conftest import SEED_POLL

POLLS = "/api/v1/polls"
POLL_ID = re.compile(r"^[A-Za-z0-9]{12}$")
OWNER_ONLY_FIELDS = {
    "duplicate_check", "vote_window_seconds", "allowed_origins", "signing_secret", "embed",
}
PUBLIC_FIELDS = {
    "id", "question", "options", "kind", "max_choices", "allow_other", "allow_comment",
    "shuffle_options", "allow_change", "challenge", "max_votes", "full", "scale",
    "results", "results_min_votes", "opens_at", "closes_at", "locale", "status",
    "created_at", "updated_at",
}
EMBED_FIELDS = {"widget_url", "iframe", "script", "oembed_url", "svg_url"}


# --- helpers ---------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_hours(hours: float, *, since: datetime | None = None) -> str:
    return iso((since or datetime.now(UTC)) + timedelta(hours=hours))


def assert_problem(response, status: int, code: str) -> dict:
    """Assert an RFC 9457 answer with the given status and code; return its body."""
    body = response.get_json()
    assert response.status_code == status, body
    assert response.mimetype == "application/problem+json"
    assert body["status"] == status
    assert body["code"] == code
    return body


def assert_invalid(response, field: str) -> dict:
    """Assert a 422 whose `errors` name `field` (or a path inside it)."""
    body = assert_problem(response, 422, "validation_error")
    names = list(body["errors"])
    assert any(name == field or name.startswith(f"{field}.") for name in names), names
    return body


def option_ids(poll: dict) -> list[int]:
    return [option["id"] for option in poll["options"]]


def relabel(poll: dict, **labels_by_position) -> list[dict]:
    """The poll's options as a PATCH list, with some labels changed (`p0="New"`)."""
    return [
        {"id": option["id"], "label": labels_by_position.get(f"p{index}", option["label"])}
        for index, option in enumerate(poll["options"])
    ]


def tallies_of(client, poll: dict, headers=None) -> dict:
    response = client.get(f"{POLLS}/{poll['id']}/tallies", headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def votes_by_label(tallies: dict) -> dict[str, int]:
    return {option["label"]: option["votes"] for option in tallies["options"]}


def poll_redis_keys(app, poll_id: str) -> list[bytes]:
    """Every Redis key of the poll, read through a client of its own where Redis is real."""
    pattern = f"pollbox:{{{poll_id}}}:*"
    if app.config["REDIS_URL"]:
        client = redis.Redis.from_url(app.config["REDIS_URL"])
        try:
            return list(client.scan_iter(match=pattern))
        finally:
            client.close()
    with app.app_context():
        return list(redis_handle().client.scan_iter(match=pattern))


@pytest.fixture
def patch(client, auth):
    """PATCH a poll with the owner's key."""

    def send(poll: dict, body: dict, headers=None):
        return client.patch(f"{POLLS}/{poll['id']}", json=body, headers=headers or auth)

    return send


@pytest.fixture
def open_poll(make_poll):
    """A poll anyone may vote in any number of times (so tests can cast several votes)."""
    return make_poll(duplicate_check="none")


# --- create ----------------------------------------------------------------------------


def test_create_answers_201_with_location_of_the_new_poll(client, auth):
    response = client.post(POLLS, json=SEED_POLL, headers=auth)

    assert response.status_code == 201
    poll = response.get_json()
    location = response.headers["Location"]
    assert location.endswith(f"{POLLS}/{poll['id']}")
    assert client.get(location).get_json()["id"] == poll["id"]


def test_create_answers_the_owner_view_with_the_contract_defaults(make_poll):
    poll = make_poll()

    assert POLL_ID.match(poll["id"])
    assert poll["question"] == SEED_POLL["question"]
    assert [(o["label"], o["position"]) for o in poll["options"]] == [
        (label, position) for position, label in enumerate(SEED_POLL["options"])
    ]
    assert all(isinstance(option_id, int) for option_id in option_ids(poll))
    assert len(set(option_ids(poll))) == len(SEED_POLL["options"])
    assert {name: poll[name] for name in (
        "kind", "max_choices", "allow_other", "allow_comment", "duplicate_check",
        "vote_window_seconds", "results", "results_min_votes", "opens_at", "closes_at",
        "allowed_origins", "locale", "status",
    )} == {
        "kind": "single", "max_choices": 1, "allow_other": False, "allow_comment": False,
        "duplicate_check": "cookie_and_ip", "vote_window_seconds": None, "results": "always",
        "results_min_votes": 0, "opens_at": None, "closes_at": None, "allowed_origins": [],
        "locale": "en", "status": "open",
    }
    for stamp in (poll["created_at"], poll["updated_at"]):
        assert stamp.endswith("Z")
        datetime.fromisoformat(stamp)
    assert isinstance(poll["signing_secret"], str) and len(poll["signing_secret"]) >= 32


def test_multiple_choice_poll_defaults_max_choices_to_the_number_of_options(make_poll):
    poll = make_poll(kind="multiple", options=["a", "b", "c", "d"])

    assert poll["max_choices"] == 4


def test_poll_ids_are_short_url_safe_and_distinct(make_poll):
    ids = [make_poll()["id"] for _ in range(5)]

    assert all(POLL_ID.match(poll_id) for poll_id in ids)
    assert len(set(ids)) == len(ids)


def test_embed_holds_ready_to_paste_snippets_for_the_poll(make_poll):
    poll = make_poll()
    embed = poll["embed"]

    assert set(embed) == EMBED_FIELDS
    assert embed["widget_url"].endswith(f"/polls/{poll['id']}/widget")
    assert embed["iframe"].startswith("<iframe ")
    assert f'src="{embed["widget_url"]}"' in embed["iframe"]
    assert f'data-poll="{poll["id"]}"' in embed["script"]
    assert "/embed.js" in embed["script"]
    assert "/oembed?url=" in embed["oembed_url"] and poll["id"] in embed["oembed_url"]
    assert embed["svg_url"].endswith(f"/polls/{poll['id']}/results.svg")


def test_embed_iframe_title_escapes_the_question(make_poll):
    question = "<b>\"Tom\" & 'Jerry'</b>?"
    poll = make_poll(question=question)

    iframe = poll["embed"]["iframe"]
    assert 'title="Poll: &lt;b&gt;&quot;Tom&quot; &amp; &#x27;Jerry&#x27;&lt;/b&gt;?"' in iframe
    assert "<b>" not in iframe
    assert poll["question"] == question


def test_question_and_labels_are_stored_trimmed(make_poll):
    poll = make_poll(question="  Coffee or tea?\n", options=[" Coffee ", "\tTea"])

    assert poll["question"] == "Coffee or tea?"
    assert [o["label"] for o in poll["options"]] == ["Coffee", "Tea"]


def test_times_without_offset_are_utc_and_answered_with_z(make_poll):
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    naive = make_poll(opens_at=opens.strftime("%Y-%m-%dT%H:%M:%S"))
    with_offset = make_poll(
        opens_at=(opens + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    )

    assert naive["opens_at"] == iso(opens)
    assert with_offset["opens_at"] == iso(opens)


@pytest.mark.parametrize(
    ("fields", "name", "expected"),
    [
        pytest.param({"question": "x" * 500}, "question", "x" * 500, id="question-500-chars"),
        pytest.param({"question": "?"}, "question", "?", id="question-1-char"),
        pytest.param({"options": ["a", "b"]}, "options", ["a", "b"], id="two-options"),
        pytest.param({"options": [f"o{i}" for i in range(50)]}, "options",
                     [f"o{i}" for i in range(50)], id="fifty-options"),
        pytest.param({"options": ["x" * 200, "y"]}, "options", ["x" * 200, "y"],
                     id="label-200-chars"),
        pytest.param({"kind": "multiple"}, "kind", "multiple", id="kind-multiple"),
        pytest.param({"kind": "single", "max_choices": 1}, "max_choices", 1,
                     id="single-max-1"),
        pytest.param({"kind": "multiple", "max_choices": 1}, "max_choices", 1,
                     id="multiple-max-1"),
        pytest.param({"kind": "multiple", "max_choices": 3}, "max_choices", 3,
                     id="multiple-max-all"),
        pytest.param({"allow_other": True}, "allow_other", True, id="allow-other"),
        pytest.param({"allow_comment": True}, "allow_comment", True, id="allow-comment"),
        *[
            pytest.param({"duplicate_check": check}, "duplicate_check", check,
                         id=f"duplicate-check-{check}")
            for check in ("none", "cookie", "ip", "cookie_and_ip", "user")
        ],
        pytest.param({"vote_window_seconds": 60}, "vote_window_seconds", 60, id="window-60"),
        pytest.param({"vote_window_seconds": 31_536_000}, "vote_window_seconds", 31_536_000,
                     id="window-one-year"),
        pytest.param({"vote_window_seconds": None}, "vote_window_seconds", None,
                     id="window-null"),
        *[
            pytest.param({"results": rule}, "results", rule, id=f"results-{rule}")
            for rule in ("always", "after_vote", "after_close", "owner_only")
        ],
        pytest.param({"results_min_votes": 0}, "results_min_votes", 0, id="min-votes-0"),
        pytest.param({"results_min_votes": 100_000}, "results_min_votes", 100_000,
                     id="min-votes-100000"),
        pytest.param({"allowed_origins": ["HTTPS://WWW.Example.COM:443"]}, "allowed_origins",
                     ["https://www.example.com"], id="origin-lowercased-default-port-dropped"),
        pytest.param({"allowed_origins": ["http://example.com:80/"]}, "allowed_origins",
                     ["http://example.com"], id="origin-http-default-port-and-slash-dropped"),
        pytest.param({"allowed_origins": ["http://localhost:8080", "https://a.example"]},
                     "allowed_origins", ["http://localhost:8080", "https://a.example"],
                     id="origin-other-port-kept"),
        pytest.param({"allowed_origins": ["https://[::1]:8443"]}, "allowed_origins",
                     ["https://[::1]:8443"], id="origin-ipv6"),
        *[
            pytest.param({"locale": tag}, "locale", tag, id=f"locale-{tag}")
            for tag in ("en", "de", "pt-BR", "es-419", "zh-Hant-TW")
        ],
    ],
)
def test_create_accepts_valid_field_values(client, auth, fields, name, expected):
    response = client.post(POLLS, json={**SEED_POLL, **fields}, headers=auth)

    assert response.status_code == 201, response.get_json()
    poll = response.get_json()
    if name == "options":
        assert [option["label"] for option in poll["options"]] == expected
    else:
        assert poll[name] == expected


def test_poll_is_scheduled_until_opens_at(make_poll, vote, clock):
    opens, closes = in_hours(1), in_hours(2)
    poll = make_poll(opens_at=opens, closes_at=closes)

    assert (poll["opens_at"], poll["closes_at"]) == (opens, closes)
    assert poll["status"] == "scheduled"
    assert_problem(vote(poll), 409, "poll_closed")
    clock.advance(minutes=90)
    assert vote(poll).status_code == 201


INVALID_CREATE = [
    pytest.param({"question": ""}, "question", id="question-empty"),
    pytest.param({"question": "   \n\t"}, "question", id="question-whitespace-only"),
    pytest.param({"question": "x" * 501}, "question", id="question-501-chars"),
    pytest.param({"question": None}, "question", id="question-null"),
    pytest.param({"question": 42}, "question", id="question-number"),
    pytest.param({"options": ["only"]}, "options", id="one-option"),
    pytest.param({"options": []}, "options", id="no-options"),
    pytest.param({"options": [f"o{i}" for i in range(51)]}, "options", id="51-options"),
    pytest.param({"options": ["a", ""]}, "options", id="label-empty"),
    pytest.param({"options": ["a", "   "]}, "options", id="label-whitespace-only"),
    pytest.param({"options": ["a", "x" * 201]}, "options", id="label-201-chars"),
    pytest.param({"options": ["Yes", "No", "Yes"]}, "options", id="labels-repeated"),
    pytest.param({"options": ["Yes", "No", "YES"]}, "options", id="labels-repeated-any-case"),
    pytest.param({"options": ["Yes", " Yes "]}, "options", id="labels-repeated-after-trim"),
    pytest.param({"options": "Yes,No"}, "options", id="options-not-a-list"),
    pytest.param({"options": ["Yes", 2]}, "options", id="label-not-a-string"),
    pytest.param({"kind": "borda"}, "kind", id="kind-unknown"),
    pytest.param({"kind": None}, "kind", id="kind-null"),
    pytest.param({"kind": "single", "max_choices": 2}, "max_choices", id="single-max-2"),
    pytest.param({"max_choices": 2}, "max_choices", id="default-single-max-2"),
    pytest.param({"kind": "multiple", "max_choices": 0}, "max_choices", id="max-0"),
    pytest.param({"kind": "multiple", "max_choices": 4}, "max_choices",
                 id="max-over-option-count"),
    pytest.param({"kind": "multiple", "max_choices": "2"}, "max_choices", id="max-string"),
    pytest.param({"kind": "multiple", "max_choices": 2.5}, "max_choices", id="max-float"),
    *[
        pytest.param({name: value}, name, id=f"{name}-{value!r}")
        for name in ("allow_other", "allow_comment")
        for value in ("true", "false", 1, 0, None)
    ],
    pytest.param({"duplicate_check": "browser"}, "duplicate_check", id="duplicate-check-unknown"),
    pytest.param({"duplicate_check": ""}, "duplicate_check", id="duplicate-check-empty"),
    pytest.param({"vote_window_seconds": 59}, "vote_window_seconds", id="window-59"),
    pytest.param({"vote_window_seconds": 31_536_001}, "vote_window_seconds",
                 id="window-over-one-year"),
    pytest.param({"vote_window_seconds": 0}, "vote_window_seconds", id="window-0"),
    pytest.param({"vote_window_seconds": "3600"}, "vote_window_seconds", id="window-string"),
    pytest.param({"vote_window_seconds": 3600.5}, "vote_window_seconds", id="window-float"),
    pytest.param({"vote_window_seconds": True}, "vote_window_seconds", id="window-boolean"),
    pytest.param({"results": "never"}, "results", id="results-unknown"),
    pytest.param({"results_min_votes": -1}, "results_min_votes", id="min-votes-negative"),
    pytest.param({"results_min_votes": 100_001}, "results_min_votes", id="min-votes-100001"),
    pytest.param({"results_min_votes": "5"}, "results_min_votes", id="min-votes-string"),
    pytest.param({"results_min_votes": 1.5}, "results_min_votes", id="min-votes-float"),
    pytest.param({"opens_at": "tomorrow"}, "opens_at", id="opens-not-a-time"),
    pytest.param({"closes_at": "2030-13-01T00:00:00Z"}, "closes_at", id="closes-bad-month"),
    pytest.param({"closes_at": "2001-01-01T00:00:00Z"}, "closes_at", id="closes-in-the-past"),
    *[
        pytest.param({"allowed_origins": [origin]}, "allowed_origins", id=f"origin-{label}")
        for label, origin in [
            ("with-path", "https://example.com/embed"),
            ("with-query", "https://example.com?x=1"),
            ("with-empty-query", "https://example.com?"),
            ("with-fragment", "https://example.com#top"),
            ("ftp", "ftp://example.com"),
            ("javascript", "javascript:alert(1)"),
            ("user", "https://user@example.com"),
            ("user-password", "https://user:secret@example.com"),
            ("no-scheme", "example.com"),
            ("no-host", "https://"),
            ("bad-port", "https://example.com:99999"),
            ("not-a-string", 443),
        ]
    ],
    pytest.param({"allowed_origins": "https://example.com"}, "allowed_origins",
                 id="origins-not-a-list"),
    *[
        pytest.param({"locale": tag}, "locale", id=f"locale-{tag or 'empty'}")
        for tag in ("english", "en_US", "e", "", "en-")
    ],
    pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
    pytest.param({"id": "MyOwnPollId1"}, "id", id="read-only-field"),
]


@pytest.mark.parametrize(("fields", "field"), INVALID_CREATE)
def test_create_rejects_invalid_field_with_422_naming_it(client, auth, fields, field):
    response = client.post(POLLS, json={**SEED_POLL, **fields}, headers=auth)

    assert_invalid(response, field)


@pytest.mark.parametrize("hours_apart", [0, -1], ids=["equal", "before"])
def test_create_rejects_closes_at_not_after_opens_at(client, auth, hours_apart):
    body = {**SEED_POLL, "opens_at": in_hours(5), "closes_at": in_hours(5 + hours_apart)}

    assert_invalid(client.post(POLLS, json=body, headers=auth), "closes_at")


@pytest.mark.parametrize("missing", ["question", "options"])
def test_create_requires_question_and_options(client, auth, missing):
    body = {name: value for name, value in SEED_POLL.items() if name != missing}

    assert_invalid(client.post(POLLS, json=body, headers=auth), missing)


def test_rejected_create_stores_nothing(client, auth):
    client.post(POLLS, json={**SEED_POLL, "kind": "borda"}, headers=auth)

    assert json.loads(client.get(POLLS, headers=auth).headers["X-Pagination"])["total"] == 0


# --- authentication, ownership, unknown polls ------------------------------------------


OWNER_ENDPOINTS = [
    pytest.param("post", "", SEED_POLL, id="create"),
    pytest.param("get", "", None, id="list"),
    pytest.param("patch", "/{id}", {"question": "Changed?"}, id="patch"),
    pytest.param("delete", "/{id}", None, id="delete"),
]
BAD_CREDENTIALS = [
    pytest.param({}, id="no-key"),
    pytest.param({"Authorization": "Bearer pbk_not-a-real-key"}, id="unknown-key"),
    pytest.param({"Authorization": "Bearer "}, id="empty-key"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="wrong-scheme"),
]


@pytest.mark.parametrize(("method", "path", "body"), OWNER_ENDPOINTS)
@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
def test_owner_endpoints_answer_401_without_a_valid_key(
    client, make_poll, method, path, body, headers
):
    poll = make_poll()
    url = POLLS + path.format(id=poll["id"])

    response = getattr(client, method)(url, json=body, headers=headers)

    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(f"{POLLS}/{poll['id']}").get_json()["question"] == poll["question"]


@pytest.mark.parametrize(("method", "path", "body"), OWNER_ENDPOINTS)
def test_rotated_key_is_refused_and_the_new_one_works(app, client, owner_key, make_poll,
                                                     method, path, body):
    from service import owners
    from service.infra.db import db

    poll = make_poll()
    with app.app_context():
        new_key = owners.rotate_key(session=db.session, name="PsyWeb")
    url = POLLS + path.format(id=poll["id"])

    old = getattr(client, method)(url, json=body, headers={"Authorization": f"Bearer {owner_key}"})
    new = getattr(client, method)(url, json=body, headers={"Authorization": f"Bearer {new_key}"})

    assert_problem(old, 401, "unauthorized")
    assert "WWW-Authenticate" in old.headers
    assert new.status_code < 300, new.get_json()


@pytest.mark.parametrize(("method", "body"), [("patch", {"question": "Mine now?"}),
                                              ("delete", None)])
def test_another_owners_poll_cannot_be_changed_or_deleted(client, make_poll, other_auth,
                                                          method, body):
    poll = make_poll()

    response = getattr(client, method)(f"{POLLS}/{poll['id']}", json=body, headers=other_auth)

    assert_problem(response, 403, "forbidden")
    assert client.get(f"{POLLS}/{poll['id']}").get_json()["question"] == poll["question"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("patch", "", {"question": "Anyone?"}),
        ("delete", "", None),
        ("post", "/votes", {"choices": [1]}),
        ("get", "/tallies", None),
    ],
    ids=["get", "patch", "delete", "vote", "tallies"],
)
def test_unknown_poll_id_answers_404(client, auth, method, suffix, body):
    response = getattr(client, method)(f"{POLLS}/NoSuchPoll00{suffix}", json=body, headers=auth)

    assert_problem(response, 404, "not_found")


# --- list ------------------------------------------------------------------------------


def create_as(client, headers, question: str) -> dict:
    response = client.post(POLLS, json={**SEED_POLL, "question": question}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_list_shows_only_the_owners_polls(client, auth, other_auth):
    mine = {create_as(client, auth, f"Mine {i}?")["id"] for i in range(2)}
    theirs = {create_as(client, other_auth, "Theirs?")["id"]}

    assert {poll["id"] for poll in client.get(POLLS, headers=auth).get_json()} == mine
    assert {poll["id"] for poll in client.get(POLLS, headers=other_auth).get_json()} == theirs


def test_list_shows_newest_first_with_owner_fields(client, auth, clock):
    created = []
    for i in range(3):
        created.append(create_as(client, auth, f"Poll {i}?")["id"])
        clock.advance(minutes=1)

    listed = client.get(POLLS, headers=auth).get_json()

    assert [poll["id"] for poll in listed] == created[::-1]
    assert all(set(poll) >= OWNER_ONLY_FIELDS for poll in listed)


def test_list_is_paginated_with_x_pagination_header(client, auth, clock):
    created = []
    for i in range(5):
        created.append(create_as(client, auth, f"Poll {i}?")["id"])
        clock.advance(minutes=1)
    newest_first = created[::-1]

    pages = [client.get(f"{POLLS}?page={page}&page_size=2", headers=auth) for page in (1, 2, 3)]

    assert [[p["id"] for p in page.get_json()] for page in pages] == [
        newest_first[0:2], newest_first[2:4], newest_first[4:5],
    ]
    first = json.loads(pages[0].headers["X-Pagination"])
    assert first == {"total": 5, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 1,
                     "next_page": 2}
    assert json.loads(pages[2].headers["X-Pagination"])["previous_page"] == 2


def test_list_accepts_page_size_100(client, auth, make_poll):
    make_poll()

    response = client.get(f"{POLLS}?page_size=100", headers=auth)

    assert response.status_code == 200
    assert len(response.get_json()) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [("page_size=101", "page_size"), ("page_size=0", "page_size"), ("page=0", "page"),
     ("page=first", "page")],
)
def test_list_rejects_bad_pagination_with_422(client, auth, query, field):
    assert_invalid(client.get(f"{POLLS}?{query}", headers=auth), field)


# --- get -------------------------------------------------------------------------------


def test_get_without_key_answers_the_public_view(client, make_poll):
    poll = make_poll(allowed_origins=["https://www.psyweb.example"], vote_window_seconds=3600)

    public = client.get(f"{POLLS}/{poll['id']}").get_json()

    assert set(public) == PUBLIC_FIELDS
    assert not OWNER_ONLY_FIELDS & set(public)
    assert {name: poll[name] for name in PUBLIC_FIELDS} == public


def test_get_with_the_owners_key_answers_the_owner_view(client, auth, make_poll):
    poll = make_poll(allowed_origins=["https://www.psyweb.example"])

    view = client.get(f"{POLLS}/{poll['id']}", headers=auth).get_json()

    assert set(view) >= OWNER_ONLY_FIELDS
    assert view == poll


def test_get_with_another_owners_key_answers_the_public_view(client, make_poll, other_auth):
    poll = make_poll()

    view = client.get(f"{POLLS}/{poll['id']}", headers=other_auth).get_json()

    assert set(view) == PUBLIC_FIELDS


# --- patch: status ---------------------------------------------------------------------


def test_closing_a_poll_stops_voting(client, make_poll, patch, vote):
    poll = make_poll()

    response = patch(poll, {"status": "closed"})

    assert response.status_code == 200
    assert response.get_json()["status"] == "closed"
    assert client.get(f"{POLLS}/{poll['id']}").get_json()["status"] == "closed"
    assert_problem(vote(poll), 409, "poll_closed")


def test_reopening_a_closed_poll_allows_voting_again(make_poll, patch, vote):
    poll = make_poll()
    patch(poll, {"status": "closed"})

    response = patch(poll, {"status": "open"})

    assert response.status_code == 200
    assert response.get_json()["status"] == "open"
    assert vote(poll).status_code == 201


def test_reopening_after_closes_at_passed_needs_a_later_closes_at(
    client, make_poll, patch, vote, clock
):
    poll = make_poll(closes_at=in_hours(1))
    clock.advance(hours=2)
    assert client.get(f"{POLLS}/{poll['id']}").get_json()["status"] == "closed"

    refused = patch(poll, {"status": "open"})
    assert_invalid(refused, "status")
    assert client.get(f"{POLLS}/{poll['id']}").get_json()["status"] == "closed"

    later = in_hours(24, since=clock())
    reopened = patch(poll, {"status": "open", "closes_at": later})
    assert reopened.status_code == 200, reopened.get_json()
    assert (reopened.get_json()["status"], reopened.get_json()["closes_at"]) == ("open", later)
    assert vote(poll).status_code == 201


@pytest.mark.parametrize("status", ["scheduled", "paused", None])
def test_patch_rejects_unknown_status(make_poll, patch, status):
    assert_invalid(patch(make_poll(), {"status": status}), "status")


# --- patch: options --------------------------------------------------------------------


def test_option_labels_can_be_corrected_after_votes(client, make_poll, patch, vote):
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = patch(poll, {"options": relabel(poll, p0="Yes, at the moment")})

    assert response.status_code == 200, response.get_json()
    assert option_ids(response.get_json()) == option_ids(poll)
    assert votes_by_label(tallies_of(client, poll)) == {
        "Yes, at the moment": 1, "Yes, in the past": 0, "No, never": 0,
    }


def test_options_can_be_added_after_votes(client, make_poll, patch, vote):
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = patch(poll, {"options": [*relabel(poll), {"label": "Prefer not to say"}]})

    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    added = changed["options"][-1]
    assert (added["label"], added["position"]) == ("Prefer not to say", 3)
    assert option_ids(changed)[:3] == option_ids(poll)
    assert vote(changed, [added["id"]], ip="198.51.100.9").status_code == 201
    assert votes_by_label(tallies_of(client, poll)) == {
        "Yes, currently": 1, "Yes, in the past": 0, "No, never": 0, "Prefer not to say": 1,
    }


def test_removing_an_option_with_votes_answers_409(client, make_poll, patch, vote):
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = patch(poll, {"options": relabel(poll)[1:]})

    assert_problem(response, 409, "poll_has_votes")
    assert option_ids(client.get(f"{POLLS}/{poll['id']}").get_json()) == option_ids(poll)


def test_removing_an_option_without_votes_works(client, make_poll, patch, vote):
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = patch(poll, {"options": relabel(poll)[:2]})

    assert response.status_code == 200, response.get_json()
    assert option_ids(response.get_json()) == option_ids(poll)[:2]
    assert votes_by_label(tallies_of(client, poll)) == {"Yes, currently": 1,
                                                        "Yes, in the past": 0}


def test_reordering_options_with_votes_answers_409(client, open_poll, patch, vote):
    first, second, _ = option_ids(open_poll)
    assert vote(open_poll, [first]).status_code == 201
    assert vote(open_poll, [second]).status_code == 201
    swapped = relabel(open_poll)
    swapped[0], swapped[1] = swapped[1], swapped[0]

    response = patch(open_poll, {"options": swapped})

    assert_problem(response, 409, "poll_has_votes")
    assert option_ids(client.get(f"{POLLS}/{open_poll['id']}").get_json()) == option_ids(open_poll)


def test_reordering_options_without_votes_works(make_poll, patch):
    poll = make_poll()

    response = patch(poll, {"options": relabel(poll)[::-1]})

    assert response.status_code == 200, response.get_json()
    options = response.get_json()["options"]
    assert [o["id"] for o in options] == option_ids(poll)[::-1]
    assert [o["position"] for o in options] == [0, 1, 2]


def test_unknown_option_id_in_patch_answers_422(make_poll, patch):
    poll = make_poll()
    options = [*relabel(poll), {"id": max(option_ids(poll)) + 1000, "label": "Ghost"}]

    assert_invalid(patch(poll, {"options": options}), "options")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param(lambda p: relabel(p)[:1], "options", id="one-option-left"),
        pytest.param(lambda p: relabel(p, p1="yes, CURRENTLY"), "options", id="labels-repeated"),
        pytest.param(lambda p: relabel(p, p1=""), "options", id="label-empty"),
        pytest.param(lambda p: [*relabel(p), relabel(p)[0]], "options", id="id-repeated"),
        pytest.param(lambda p: [{"id": "one", "label": "x"}, *relabel(p)], "options",
                     id="id-not-an-integer"),
        pytest.param(lambda p: [{"label": "x", "colour": "red"}, *relabel(p)], "options",
                     id="unknown-option-field"),
    ],
)
def test_patch_rejects_invalid_options(make_poll, patch, options, field):
    poll = make_poll()

    assert_invalid(patch(poll, {"options": options(poll)}), field)


# --- patch: kind and max_choices -------------------------------------------------------


def test_kind_can_change_before_the_first_vote(make_poll, patch):
    poll = make_poll()

    response = patch(poll, {"kind": "multiple", "max_choices": 3})

    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["kind"], response.get_json()["max_choices"]) == ("multiple", 3)


def test_kind_cannot_change_after_the_first_vote(client, make_poll, patch, vote):
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = patch(poll, {"kind": "multiple"})

    assert_problem(response, 409, "poll_has_votes")
    assert client.get(f"{POLLS}/{poll['id']}").get_json()["kind"] == "single"


def test_switching_to_single_resets_max_choices_to_1(make_poll, patch):
    poll = make_poll(kind="multiple")

    response = patch(poll, {"kind": "single"})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["max_choices"] == 1


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        pytest.param("single", {"max_choices": 2}, id="single-max-2"),
        pytest.param("multiple", {"max_choices": 4}, id="max-over-option-count"),
        pytest.param("multiple", {"max_choices": 0}, id="max-0"),
        pytest.param("multiple", {"max_choices": "2"}, id="max-string"),
        pytest.param("multiple", {"options": [{"label": "a"}, {"label": "b"}]},
                     id="fewer-options-than-max"),
        pytest.param("single", {"kind": "multiple", "max_choices": 5}, id="kind-and-max-over"),
    ],
)
def test_patch_checks_max_choices_against_the_resulting_options(client, make_poll, patch,
                                                                kind, body):
    poll = make_poll(kind=kind)

    assert_invalid(patch(poll, body), "max_choices")
    unchanged = client.get(f"{POLLS}/{poll['id']}").get_json()
    assert (unchanged["max_choices"], len(unchanged["options"])) == (poll["max_choices"], 3)


def test_max_choices_may_grow_with_added_options(make_poll, patch):
    poll = make_poll(kind="multiple")

    response = patch(poll, {"options": [*relabel(poll), {"label": "Other"}], "max_choices": 4})

    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["max_choices"], len(response.get_json()["options"])) == (4, 4)


# --- patch: other fields ---------------------------------------------------------------


def test_empty_patch_answers_200_and_changes_nothing(client, auth, make_poll, patch, clock):
    poll = make_poll()
    clock.advance(minutes=5)

    response = patch(poll, {})

    assert response.status_code == 200
    assert response.get_json() == poll
    assert client.get(f"{POLLS}/{poll['id']}", headers=auth).get_json() == poll


def test_patch_changes_the_given_fields_only(make_poll, patch, clock):
    poll = make_poll()
    clock.advance(minutes=5)

    response = patch(poll, {"question": "  Still taking them?  ", "results": "after_vote",
                            "allowed_origins": ["HTTPS://Shop.Example:443"]})

    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    assert changed["question"] == "Still taking them?"
    assert changed["results"] == "after_vote"
    assert changed["allowed_origins"] == ["https://shop.example"]
    assert changed["updated_at"] == iso(clock())
    unchanged = {name for name in poll if name not in
                 {"question", "results", "allowed_origins", "updated_at", "embed"}}
    assert {name: changed[name] for name in unchanged} == {name: poll[name] for name in unchanged}


def test_patch_checks_closes_at_against_the_stored_opens_at(make_poll, patch):
    poll = make_poll(opens_at=in_hours(48))

    assert_invalid(patch(poll, {"closes_at": in_hours(24)}), "closes_at")
    assert patch(poll, {"closes_at": in_hours(72)}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"question": "   "}, "question", id="question-whitespace-only"),
        pytest.param({"question": "x" * 501}, "question", id="question-501-chars"),
        pytest.param({"allow_other": "true"}, "allow_other", id="boolean-string"),
        pytest.param({"duplicate_check": "browser"}, "duplicate_check", id="duplicate-check"),
        pytest.param({"vote_window_seconds": 59}, "vote_window_seconds", id="window-59"),
        pytest.param({"results": "never"}, "results", id="results"),
        pytest.param({"results_min_votes": 100_001}, "results_min_votes", id="min-votes"),
        pytest.param({"allowed_origins": ["https://example.com/path"]}, "allowed_origins",
                     id="origin-with-path"),
        pytest.param({"locale": "en_US"}, "locale", id="locale"),
        pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
        pytest.param({"opens_at": in_hours(48), "closes_at": in_hours(24)}, "closes_at",
                     id="closes-before-opens"),
    ],
)
def test_patch_rejects_invalid_fields_with_422(client, make_poll, patch, body, field):
    poll = make_poll()

    assert_invalid(patch(poll, body), field)
    assert client.get(f"{POLLS}/{poll['id']}").get_json()["question"] == poll["question"]


# --- delete ----------------------------------------------------------------------------


def test_deleted_poll_answers_404_everywhere(client, auth, make_poll, vote):
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = client.delete(f"{POLLS}/{poll['id']}", headers=auth)

    assert response.status_code == 204
    assert response.data == b""
    url = f"{POLLS}/{poll['id']}"
    for after in (
        client.get(url),
        client.get(url, headers=auth),
        client.patch(url, json={"question": "Back?"}, headers=auth),
        client.delete(url, headers=auth),
        vote(poll),
        client.get(f"{url}/tallies"),
        client.get(f"{url}/tallies", headers=auth),
    ):
        assert_problem(after, 404, "not_found")
    assert poll["id"] not in {p["id"] for p in client.get(POLLS, headers=auth).get_json()}


def test_deleting_a_poll_removes_all_its_redis_keys(app, client, auth, make_poll, vote):
    poll, kept = make_poll(), make_poll()
    assert vote(poll, context="/articles/healing-power").status_code == 201
    assert vote(kept).status_code == 201
    client.get(f"{POLLS}/{poll['id']}/tallies?context=/articles/healing-power")
    assert len(poll_redis_keys(app, poll["id"])) >= 3, "claims, tally and context tally"

    assert client.delete(f"{POLLS}/{poll['id']}", headers=auth).status_code == 204
    client.get(f"{POLLS}/{poll['id']}/tallies")

    assert poll_redis_keys(app, poll["id"]) == []
    assert poll_redis_keys(app, kept["id"]), "other polls keep their keys"
