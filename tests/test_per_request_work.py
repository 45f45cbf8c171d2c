"""Work done once instead of on every request, with the same answers: argument schemas
built once, Flask-Limiter's hooks only where a limit was checked, and each hook asked
once whether it is a coroutine function."""

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


def test_each_function_is_asked_once_whether_it_is_a_coroutine_function(monkeypatch):
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

    class Slotted:  # a callable that cannot be weakly referenced: asked each time
        __slots__ = ()

        def __call__(self):
            return "slotted"

    slotted = Slotted()
    for _ in range(3):
        assert app.ensure_sync(plain) is plain
        assert app.ensure_sync(slotted) is slotted
        # An async function is still handed to async_to_sync every time; without the
        # `async` extra, Flask refuses it.
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(coroutine)
    assert asked == [plain] + [slotted, coroutine] * 3


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_the_app_remembers_its_plain_hooks_after_a_request(app, client):
    assert client.get("/embed.js").status_code == 200
    hooks = [*app.before_request_funcs[None], *app.after_request_funcs[None]]
    assert hooks and all(hook in app._plain_functions for hook in hooks)
