"""Work done once instead of on every request, with the same answers: argument schemas
built once, the hot routes' commonest input loaded without marshmallow (as it would
load it), Flask-Limiter's hooks only where a limit was checked, and each hook asked
once whether it is a coroutine function."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from service.tallies.schemas import TalliesQuerySchema, load_no_query
from service.voting.schemas import VoteSchema, load_plain_vote

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=12)
# Near the commonest vote: choices of every kind, alone or beside another field.
VOTE_BODIES = JSON | st.fixed_dictionaries(
    {"choices": st.lists(st.integers() | st.booleans() | st.floats(allow_nan=False),
                         max_size=52) | JSON},
    optional={"other": JSON, "context": JSON, "choice": JSON})


@given(VOTE_BODIES)
def test_a_plain_vote_loads_as_its_schema_loads_it(body):
    plain = load_plain_vote(body)
    if plain is None:
        return
    assert plain == VoteSchema().load(body)


def test_a_plain_vote_is_the_commonest_vote():
    assert load_plain_vote({"choices": [3]}) == VoteSchema().load({"choices": [3]})
    for declined in ({"choices": [True]}, {"choices": [1.0]}, {"choices": "1"},
                     {"choices": [1], "other": "x"}, {"choices": list(range(51))}, [1]):
        assert load_plain_vote(declined) is None


def test_tallies_without_a_query_load_as_their_schema_loads_them():
    assert load_no_query(MultiDict()) == TalliesQuerySchema().load(MultiDict()) == {}
    assert load_no_query(MultiDict([("context", "x")])) is None  # the schema loads it


def test_a_schema_class_is_built_once_for_every_parse():
    import marshmallow as ma

    from service.api.base import JsonBodyParser

    class Query(ma.Schema):
        n = ma.fields.Integer()

    parser = JsonBodyParser()
    first = parser._get_schema(Query, None)
    assert isinstance(first, Query)
    assert parser._get_schema(Query, None) is first
    instance = Query()
    assert parser._get_schema(instance, None) is instance


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_invalid_arguments_still_name_the_field_with_the_shared_schemas(client, make_poll):
    poll = make_poll()
    for _ in range(2):  # the second request parses with the schemas built by the first
        tallies = client.get(f"/api/v1/polls/{poll['id']}/tallies", query_string={"context": ""})
        assert tallies.status_code == 422
        assert "context" in str(tallies.get_json()["errors"])
        vote = client.post(f"/api/v1/polls/{poll['id']}/votes", json={"choices": "x"})
        assert vote.status_code == 422
        assert "choices" in str(vote.get_json()["errors"])
        assert client.get(f"/api/v1/polls/{poll['id']}/tallies").status_code == 200


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_limiter_hooks_leave_requests_without_a_limit_alone(app):
    from flask.globals import request_ctx

    hooks = [hook for hook in app.after_request_funcs[None] if hasattr(hook, "limiter_hook")]
    teardowns = [hook for hook in app.teardown_request_funcs[None]
                 if hasattr(hook, "limiter_hook")]
    assert len(hooks) == 1 and len(teardowns) == 1
    with app.test_request_context("/embed.js"):
        response = app.response_class("x")
        assert hooks[0](response) is response
        teardowns[0](None)
        # Flask-Limiter's own hooks would have built an (empty) state for the request.
        assert not hasattr(request_ctx._get_current_object(), "_limiter_request_context")
        hooks[0].limiter_hook(response)
        assert hasattr(request_ctx._get_current_object(), "_limiter_request_context")


def test_a_plain_function_is_told_by_its_code_without_asking_flask(monkeypatch):
    from flask import app as flask_app

    from service.web.app import Pollbox

    app = Pollbox(__name__)
    asked = []
    ask = flask_app.iscoroutinefunction
    monkeypatch.setattr(flask_app, "iscoroutinefunction", lambda f: asked.append(f) or ask(f))

    def plain():
        return "plain"

    async def coroutine():
        return "coroutine"

    class Callable:  # no code of its own: Flask decides
        def __call__(self):
            return "callable"

        def method(self):
            return "method"

    callable_object = Callable()
    for _ in range(3):
        assert app.ensure_sync(plain) is plain
        assert app.ensure_sync(callable_object.method) == callable_object.method
        assert app.ensure_sync(callable_object) is callable_object
        # An async function is still handed to async_to_sync every time; without the
        # `async` extra, Flask refuses it.
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(coroutine)
    assert asked == [callable_object, coroutine] * 3


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_the_app_s_hooks_are_passed_through_as_plain_functions(app, client, monkeypatch):
    from flask import app as flask_app

    asked = []
    monkeypatch.setattr(flask_app, "iscoroutinefunction", lambda f: asked.append(f) or False)
    assert client.get("/embed.js").status_code == 200
    assert client.get("/api/v1/polls/none/tallies").status_code == 404
    assert asked == []  # every hook and view was told by its code


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_the_hot_routes_commonest_input_passes_no_wrapper(client, make_poll, monkeypatch):
    """A plain vote and a tallies read without a query reach their views without
    webargs parsing them; any other input is still loaded, or refused naming the field,
    by the schema."""
    from webargs.core import Parser

    poll = make_poll()
    option = poll["options"][0]["id"]
    parsed = []
    parse = Parser.parse
    monkeypatch.setattr(Parser, "parse", lambda self, *a, **k: parsed.append(a) or parse(
        self, *a, **k))
    votes, tallies = f"/api/v1/polls/{poll['id']}/votes", f"/api/v1/polls/{poll['id']}/tallies"
    assert client.post(votes, json={"choices": [option]}).status_code == 201
    assert client.get(tallies).json["total_votes"] == 1
    assert parsed == []
    assert client.get(f"{tallies}?context=x").json["total_votes"] == 0
    refused = client.post(votes, json={"choices": [option], "colour": "red"})
    assert refused.status_code == 422 and "colour" in refused.json["errors"]
    assert len(parsed) == 2
    # A body that is not JSON is refused by the read both ways share.
    assert client.post(votes, data="{", content_type="application/json").status_code == 400


def test_the_voter_cookie_is_written_as_werkzeug_writes_it():
    """Its Set-Cookie header, built from a text kept for the second, is the one
    `Response.set_cookie` writes, on HTTPS (third-party friendly) and plain HTTP; and
    its signature is itsdangerous' plain Signer's, so cookies already given stay good."""
    import time

    from flask import Flask, Response
    from itsdangerous import Signer

    from service.infra.identity import Voter
    from service.web import voter

    value = Signer("s" * 32, salt=voter.VOTER_COOKIE_SALT).sign("the-voter").decode()

    def both(secure: bool, where: dict) -> tuple[list[str], list[str]]:
        ours, werkzeugs = Response(), Response()
        voter.set_voter_cookie(ours, Voter("the-voter", True, "192.0.2.1"), secure=secure,
                               secret="s" * 32)
        werkzeugs.set_cookie(voter.VOTER_COOKIE, value, path="/", httponly=True,
                             max_age=voter.VOTER_COOKIE_MAX_AGE_SECONDS, **where)
        return ours.headers.getlist("Set-Cookie"), werkzeugs.headers.getlist("Set-Cookie")

    with Flask(__name__).app_context():
        for secure, where in ((True, {"secure": True, "samesite": "None", "partitioned": True}),
                              (False, {"samesite": "Lax"})):
            for _ in range(3):  # both written within one second (Expires counts from it)
                second = int(time.time())
                ours, werkzeugs = both(secure, where)
                if int(time.time()) == second:
                    break
            assert ours == werkzeugs
            assert ours[0].startswith(f"{voter.VOTER_COOKIE}={value}; Expires=")
    assert voter._signer("s" * 32).unsign(value) == b"the-voter"


@given(st.floats(min_value=0, max_value=2**33, allow_nan=False))
def test_a_log_line_s_time_is_datetime_s_iso_text(created):
    import logging
    from datetime import UTC, datetime

    import orjson

    from service.infra.logs import JsonFormatter

    record = logging.LogRecord("x", logging.INFO, __file__, 0, "m", (), None)
    record.created = created
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert orjson.loads(JsonFormatter().format(record))["time"] == expected.replace(
        "+00:00", "Z")


def test_a_request_s_log_record_is_the_one_logging_would_make():
    import logging

    from service.infra import logs

    fields = {"request_id": "r", "method": "GET", "path": "/p", "status": 200,
              "duration_ms": 1.5}
    ours = logs._RequestRecord(("GET", "/p", 200), fields)
    theirs = logging.getLogger(logs.REQUEST_LOGGER).makeRecord(
        logs.REQUEST_LOGGER, logging.INFO, logs.__file__, 0, "%s %s %s", ("GET", "/p", 200),
        None, func="_finish", extra=fields)
    moments = {"created", "msecs", "relativeCreated"}
    assert {k: v for k, v in vars(ours).items() if k not in moments} == \
        {k: v for k, v in vars(theirs).items() if k not in moments}
    assert abs(ours.created - theirs.created) < 1
    assert ours.getMessage() == "GET /p 200"


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_a_tally_read_again_unmoved_reuses_the_answer(client, make_poll, vote, monkeypatch):
    """The answer is made once per poll version, status, suppression and counts (and
    context): read again, the same bytes; after a vote, a new answer."""
    from service.tallies import results

    made = []
    view = results.tallies_view
    monkeypatch.setattr(results, "tallies_view",
                        lambda *a, **k: made.append(k.get("context")) or view(*a, **k))
    poll = make_poll()
    url = f"/api/v1/polls/{poll['id']}/tallies"
    first, again = client.get(url), client.get(url)
    assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    assert made == [None]
    assert client.get(f"{url}?context=news").json["total_votes"] == 0  # its own answer
    assert made == [None, "news"]
    assert vote(poll).status_code == 201
    after = client.get(url)
    assert after.json["total_votes"] == 1 and after.headers["ETag"] != first.headers["ETag"]
    assert made == [None, "news", None]


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_absent_parameters_are_looked_up_not_raised_and_caught(client, make_poll,
                                                               monkeypatch):
    """The widget asks for a dozen display and state parameters, and the voter cookie, that
    a plain read lacks: the app makes no BadRequestKeyError for them (the test client's own
    lookups aside); present ones are read as werkzeug reads them."""
    import traceback

    from werkzeug.exceptions import BadRequestKeyError

    made = []
    init = BadRequestKeyError.__init__

    def record(self, *args, **kwargs):
        if not any(frame.filename.endswith("werkzeug/test.py")
                   for frame in traceback.extract_stack(limit=4)):
            made.append(args)
        init(self, *args, **kwargs)

    monkeypatch.setattr(BadRequestKeyError, "__init__", record)
    poll = make_poll()
    assert client.get(f"/polls/{poll['id']}/widget").status_code == 200
    assert made == []
    dark = client.get(f"/polls/{poll['id']}/widget?theme=dark&lang=de")
    assert 'lang="de"' in dark.get_data(as_text=True)
    assert made == []
