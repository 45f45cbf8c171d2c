"""flask-smorest's Api, documenting and rendering errors as problem details."""

from __future__ import annotations

import functools
import http
import inspect
from collections.abc import Callable

import flask
import marshmallow as ma
import orjson
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest import abort
from flask_smorest.utils import prepare_response
from marshmallow import missing
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import UnsupportedMediaType

from service.infra.errors import PROBLEM_MIMETYPE, ValidationFailed


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every 4xx/5xx of the API is rendered."""

    type = ma.fields.String(metadata={"example": "about:blank"})
    title = ma.fields.String(metadata={"example": "Conflict"})
    status = ma.fields.Integer(metadata={"example": 409})
    code = ma.fields.String(
        metadata={"description": "Stable, machine-readable code.", "example": "duplicate_vote"}
    )
    detail = ma.fields.String()
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "On 422: field name -> messages."},
    )


class Api(SmorestApi):
    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self):
        """Errors are rendered by `service.errors`, registered by the app factory."""

    def _register_responses(self):
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Problem details", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


class JsonBodyParser(FlaskParser):
    """A JSON body must come as JSON: any other content type is a 415, not a 422.

    A schema given as a class is built once, not per request (webargs builds one on every
    parse: ~10 µs for the tallies query). Marshmallow 4 schemas keep no state between
    loads, so one instance serves every request; the OpenAPI document still gets the class.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._schemas: dict[type[ma.Schema], ma.Schema] = {}
        self._plain: dict[type[ma.Schema], Callable[[object], dict | None]] = {}

    def load_plainly(self, schema: type[ma.Schema], load: Callable[[object], dict | None]):
        """A hot route's commonest input (a vote of choices only, tallies without a
        query), loaded by `load` as `schema` would load it, without marshmallow's generic
        path; any input `load` declines (None) goes through the schema, which says what is
        wrong, naming the field (tests/test_per_request_work.py holds the two equal)."""
        self._plain[schema] = load

    def _process_location_data(self, location_data, schema, req, location, unknown,
                               validators):
        load = self._plain.get(type(schema))
        if load is not None and not validators:
            loaded = load(location_data)
            if loaded is not None:
                return loaded
        return super()._process_location_data(location_data, schema, req, location,
                                              unknown, validators)

    def _get_schema(self, argmap, req: flask.Request) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas[argmap] = argmap()
            return schema
        return super()._get_schema(argmap, req)

    def _raw_load_json(self, req: flask.Request):
        """Parse the body with orjson: strict UTF-8 (no lone surrogates), at most 1,024
        levels deep, numbers within a double. Hostile bodies are a 400 naming the
        reason, never a RecursionError or a digit-limit ValueError deeper down."""
        if not req.is_json:
            raise UnsupportedMediaType(
                "Send the body as JSON with 'Content-Type: application/json'."
            )
        data = req.get_data(cache=True)
        if not data:
            return missing
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:  # webargs would take some for "no body"
            self._handle_invalid_json_error(error, req)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        reason = getattr(error, "msg", None) or str(error)
        abort(400, exc=error, messages={"json": [f"The request body is not valid JSON: {reason}."]})


# Beyond any list an owner has; bounded so the offset fits a 64-bit integer in SQL.
MAX_PAGE = 1_000_000


class Blueprint(SmorestBlueprint):
    """flask-smorest's Blueprint with the JSON-only body parser. Arguments are parsed
    inside the view's decorators, so an owner endpoint checks the key (401) first."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def hot(self, schema: type[ma.Schema], *, location: str = "json"):
        """A hot route's way past the wrappers that document it (flask-smorest's and
        webargs', a few per cent of a read's time): the commonest input, the one the
        parser loads plainly (`JsonBodyParser.load_plainly`), goes straight to the view
        function; any other input goes through the wrappers as before, which load it or
        say what is wrong with it. The view answers a Response, which flask-smorest's
        response wrapper hands on untouched. Written above the decorators that document
        the view: they still make its OpenAPI entry."""
        parser = self.ARGUMENTS_PARSER
        load = parser._plain[schema]
        read = {"json": lambda: parser._raw_load_json(flask.request),
                "query": lambda: flask.request.args}[location]

        def decorator(view):
            func = inspect.unwrap(view)

            @functools.wraps(view)
            def plain(*args, **kwargs):
                # What reading the input raises (not JSON, too long) is what the
                # wrappers' reading would raise.
                loaded = load(read())
                if loaded is None:
                    return view(*args, **kwargs)
                answer = func(*args, loaded, **kwargs)
                if not isinstance(answer, flask.Response):
                    raise TypeError(f"{func.__qualname__} must answer a Response")
                return answer

            return plain

        return decorator

    def alt_response(self, status_code, *args, **kwargs):
        """flask-smorest's documentation of another answer, carried by the view itself:
        its wrapper adds a call layer per documented answer that only asks `ensure_sync`
        again (four layers on the tallies read, a few per cent of its time)."""
        document = super().alt_response(status_code, *args, **kwargs)

        def decorator(func):
            func._apidoc = document(func)._apidoc
            return func

        return decorator

    def paginate(self, *args, **kwargs):
        """flask-smorest's pagination, with `page` at most MAX_PAGE (a 422 naming it)."""
        paginated = super().paginate(*args, **kwargs)

        def decorator(func):
            view = paginated(func)

            @functools.wraps(view)
            def bounded(*view_args, **view_kwargs):
                raw = flask.request.args.get("page", "")
                if len(raw) > len(str(MAX_PAGE)) or (raw.isdecimal() and int(raw) > MAX_PAGE):
                    raise ValidationFailed({"page": [f"Must be at most {MAX_PAGE}."]})
                return view(*view_args, **view_kwargs)

            return bounded

        return decorator


api = Api()
