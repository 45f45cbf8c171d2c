"""Work done once instead of on every request, with the same answers: argument schemas
built once, and Flask-Limiter's hooks only where a limit was checked."""

from __future__ import annotations

import pytest


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
