"""One exception hierarchy, rendered as RFC 9457 problem details in one place."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response, json
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, SecurityError

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"
UNAVAILABLE_RETRY_AFTER_SECONDS = 5

# Codes for HTTP errors raised by Flask/werkzeug/webargs rather than by the service.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ServiceError(Exception):
    """A failure a client can act on; subclasses fix the status and the code."""

    status = 500
    code = "internal_error"
    detail = "The server could not complete the request."

    def __init__(self, detail: str | None = None, *, headers: dict | None = None):
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        self.headers = headers or {}


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"
    detail = "A valid API key is required: send 'Authorization: Bearer <key>'."

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="pollbox"'})


class UntrustedHost(ServiceError):
    status, code = 400, "untrusted_host"
    detail = ("This Host is not one the service answers for: set PUBLIC_BASE_URL (or "
              "TRUSTED_HOSTS) to the address the service is reached at.")


class Forbidden(ServiceError):
    status, code = 403, "forbidden"
    detail = "This poll belongs to another owner."


class InsufficientScope(ServiceError):
    status, code = 403, "insufficient_scope"
    detail = "This API key's scope does not allow this call."


class LastAdminKey(ServiceError):
    status, code = 409, "last_admin_key"
    detail = "An owner keeps at least one admin key."


class OriginNotAllowed(ServiceError):
    status, code = 403, "origin_not_allowed"
    detail = "This site is not allowed to submit votes to this poll."


class ChallengeRequired(ServiceError):
    status, code = 403, "challenge_required"
    detail = ("This poll asks each vote to solve a proof of work first: vote from its "
              "widget with JavaScript on, or send a fresh solution as `altcha`.")


class ResultsHidden(ServiceError):
    status, code = 403, "results_hidden"
    detail = "The results of this poll are not shown yet."


class NotFound(ServiceError):
    status, code = 404, "not_found"
    detail = "No such poll."


class DuplicateVote(ServiceError):
    status, code = 409, "duplicate_vote"
    detail = "You have already voted in this poll."

    def __init__(self, detail: str | None = None, *, identity: str | None = None):
        super().__init__(detail)
        self.identity = identity


VOTE_PENDING_RETRY_AFTER_SECONDS = 1


class VotePending(ServiceError):
    """An earlier attempt by this voter claimed them and is still in flight: it may yet
    be committed, or fail. Never `duplicate_vote`, which is only said of a ballot."""

    status, code = 409, "vote_pending"
    detail = ("An earlier attempt of this vote is still being recorded; retry in a moment "
              "to learn whether it was counted.")

    def __init__(self, detail: str | None = None, *, identity: str | None = None):
        super().__init__(
            detail, headers={"Retry-After": str(VOTE_PENDING_RETRY_AFTER_SECONDS)}
        )
        self.identity = identity


class PollClosed(ServiceError):
    status, code = 409, "poll_closed"
    detail = "This poll is not open for voting."


class PollFull(ServiceError):
    status, code = 409, "poll_full"
    detail = "This poll reached its max_votes and is closed."


class ChangeNotAllowed(ServiceError):
    status, code = 409, "change_not_allowed"
    detail = "This poll does not let voters change their vote."


IDEMPOTENCY_RETRY_AFTER_SECONDS = 1


class IdempotencyKeyInUse(ServiceError):
    status, code = 409, "idempotency_key_in_use"
    detail = "A request with this Idempotency-Key is still being answered; retry shortly."

    def __init__(self, detail: str | None = None):
        super().__init__(
            detail, headers={"Retry-After": str(IDEMPOTENCY_RETRY_AFTER_SECONDS)}
        )


class PollHasVotes(ServiceError):
    status, code = 409, "poll_has_votes"
    detail = "This change would corrupt votes already cast."


class ValidationFailed(ServiceError):
    status, code = 422, "validation_error"
    detail = "The request has invalid fields."

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None):
        super().__init__(detail)
        self.errors = errors


class Unavailable(ServiceError):
    status, code = 503, "unavailable"
    detail = "The service cannot reach its database right now. Please retry shortly."

    def __init__(self, detail: str | None = None):
        super().__init__(
            detail, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
        )


def problem(
    status: int,
    code: str,
    detail: str | None = None,
    *,
    errors: dict | None = None,
    headers: dict | None = None,
) -> Response:
    """Build an application/problem+json response."""
    body: dict = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers.update(headers or {})
    return response


def flatten_messages(messages: object, prefix: str = "") -> dict[str, list[str]]:
    """Flatten marshmallow's nested messages into `field.path -> [messages]`."""
    if isinstance(messages, dict):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_messages(value, name))
        return flat
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "_request": list(messages)}
    if isinstance(messages, list):
        flat = {}
        for index, value in enumerate(messages):
            flat.update(flatten_messages(value, f"{prefix}.{index}"))
        return flat
    return {prefix or "_request": [str(messages)]}


def webargs_errors(error: HTTPException) -> dict[str, list[str]]:
    """Turn webargs' `{location: {field: [...]}}` into `{field: [...]}`."""
    messages = (getattr(error, "data", None) or {}).get("messages") or {}
    flat: dict[str, list[str]] = {}
    for location_messages in messages.values():
        flat.update(flatten_messages(location_messages))
    return flat


def handle_http_exception(error: HTTPException) -> Response:
    """Render werkzeug/webargs HTTP errors, including unhandled exceptions as 500."""
    if isinstance(error, SecurityError):  # Flask's TRUSTED_HOSTS refused the Host header
        return handle_service_error(UntrustedHost())
    status = error.code or 500
    code = HTTP_CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
    headers = dict((getattr(error, "data", None) or {}).get("headers") or {})
    if status == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    if status >= 500:
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("unhandled error", exc_info=original)
        return problem(status, code, ServiceError.detail, headers=headers)
    if status == 422:
        return problem(
            status, code, ValidationFailed.detail, errors=webargs_errors(error), headers=headers
        )
    if status == 400 and (getattr(error, "data", None) or {}).get("messages"):
        reasons = [m for ms in webargs_errors(error).values() for m in ms]
        detail = reasons[0] if reasons else "The request body is not valid JSON."
        return problem(status, code, detail, headers=headers)
    return problem(status, code, error.description, headers=headers)


def handle_service_error(error: ServiceError) -> Response:
    return problem(
        error.status,
        error.code,
        error.detail,
        errors=getattr(error, "errors", None),
        headers=error.headers,
    )


def handle_database_error(error: DBAPIError) -> Response:
    """A database that cannot be reached is a 503, never a leaked driver message."""
    if isinstance(error, OperationalError) or error.connection_invalidated:
        log.warning("database unavailable: %s", type(error.orig).__name__)
        return handle_service_error(Unavailable())
    if isinstance(error, DataError):
        # A request value the database cannot hold or compare (a NUL character, a number
        # out of range) is the client's to fix, not a server error (found by schemathesis).
        log.info("database refused a request value: %s", type(error.orig).__name__)
        return problem(422, "validation_error", ValidationFailed.detail,
                       errors={"_request": ["A value is out of range or holds a NUL character."]})
    log.error("database error", exc_info=error)
    return problem(500, "internal_error", ServiceError.detail)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(DBAPIError, handle_database_error)
