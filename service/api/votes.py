"""Casting votes."""

from __future__ import annotations

import functools

from flask import Response, current_app, g, json, request
from flask.views import MethodView

from service import cors, idempotency, integrity, poll_cache, ratelimits, tallies, voting
from service.api.base import Blueprint
from service.api.common import now
from service.errors import ServiceError
from service.extensions import db, redis_handle
from service.identity import client_address, current_voter
from service.schemas import VoteResultSchema, VoteSchema

blp = Blueprint("votes", __name__, url_prefix="/api/v1/polls", description="Vote in a poll.")

IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": idempotency.HEADER,
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.KEY_MAX_LENGTH},
    "description": (
        "A fresh random value (e.g. a UUID) per vote. A retry with the same key and body "
        "within 24 h gets the first answer again (same status and vote id, header "
        "`Idempotent-Replayed: true`) and counts nothing twice; the same key with another "
        "body is a 422. A retry racing the first request waits for its answer, up to 10 s, "
        "then gets `409 idempotency_key_in_use` with `Retry-After`. Treat the key as a "
        "secret: it fetches the first answer, receipt included."
    ),
}


def _counts_every_attempt(view):
    """Every vote attempt counts towards the rate limits and, once its answer is decided,
    in the poll's integrity numbers. The vote pipeline counts both inside its Redis calls
    (voting.cast_vote); an attempt refused before that (an invalid body, an unknown poll,
    another site's origin, a closed poll) is counted here, and answers 429 when over the
    limit, as a limiter in front of the view would."""

    @functools.wraps(view)
    def wrapper(*args, poll_id: str, **kwargs):
        attempt = g.vote_attempt = voting.Attempt()
        try:
            return view(*args, poll_id=poll_id, **kwargs)
        except Exception as error:
            redis, moment = redis_handle(), now()
            if not attempt.limit_counted:
                attempt.limit_counted = True
                try:
                    voting.count_attempt(
                        redis=redis, poll_id=poll_id, address=client_address(request.remote_addr),
                        secret=current_app.config["SECRET_KEY"],
                        limits=ratelimits.vote_limits(), now=moment)
                except ratelimits.RateLimited as limited:
                    raise limited from None
            if isinstance(error, ServiceError) and not attempt.outcome_counted:
                integrity.record_refusal(redis=redis, poll_id=poll_id, error=error, at=moment)
            raise

    return wrapper


@blp.route("/<poll_id>/votes")
class Votes(MethodView):
    @_counts_every_attempt
    @blp.doc(parameters=[IDEMPOTENCY_PARAMETER])
    @blp.arguments(VoteSchema)
    @blp.response(201, VoteResultSchema, headers={idempotency.REPLAY_HEADER: {
        "description": "`true` when this is a retry answered with the first answer.",
        "schema": {"type": "string", "enum": ["true"]},
    }})
    @blp.alt_response(403, description="`origin_not_allowed`")
    @blp.alt_response(404, description="Unknown poll")
    @blp.alt_response(409, description="`duplicate_vote`, `poll_closed` or "
                      "`idempotency_key_in_use`")
    @blp.alt_response(422, description="`validation_error`, also naming `Idempotency-Key`")
    @blp.alt_response(429, description="`rate_limited`, with `Retry-After`")
    def post(self, vote, poll_id):
        """Vote. The answer sets the signed voter cookie when the browser has none."""
        session, redis, moment = db.session, redis_handle(), now()
        key = idempotency.request_key(request.headers)
        poll, verified = _poll_for_vote(session=session, redis=redis, poll_id=poll_id)
        try:
            cast, visible = _cast(poll, vote, key=key, moment=moment, verified=verified)
        except voting.StalePoll:
            poll = poll_cache.get_poll_snapshot(session=session, redis=redis, poll_id=poll_id)
            cast, visible = _cast(poll, vote, key=key, moment=moment, verified=True)
        if cast.answer is not None:  # the key's first answer, kept in Redis
            answer = {"vote": {**cast.answer["vote"], "receipt": cast.receipt},
                      "tallies": cast.answer["tallies"]}
            return _json(answer, {idempotency.REPLAY_HEADER: "true"})
        answer = {"vote": {"id": cast.ballot_id, "receipt": cast.receipt,
                           "created_at": cast.created_at.strftime(voting.ISO_SECONDS)},
                  "tallies": _shown_tallies(poll, moment, cast.counts) if visible else None}
        idempotency.finish(redis=redis, claim=cast.key_claim, answer=answer)
        if cast.replayed:
            return _json(answer, {idempotency.REPLAY_HEADER: "true"})
        return _json(answer)


def _poll_for_vote(*, session, redis, poll_id: str):
    """The poll to vote in, and whether it is verified: this process's cached copy, whose
    version token the vote's first Redis call checks (voting.StalePoll when it changed),
    or the poll loaded and checked now."""
    cached = poll_cache.peek(poll_id)
    if cached is not None and cached.version is not None:
        return cached, False
    return poll_cache.get_poll_snapshot(session=session, redis=redis, poll_id=poll_id), True


def _cast(poll, vote: dict, *, key: str | None, moment, verified: bool):
    """Check the origin and cast the vote; the tallies' visibility with it."""
    cors.allow(poll)
    try:
        cors.check_vote_origin(poll)
    except ServiceError:
        if not verified:
            raise voting.StalePoll() from None  # refuse only by the poll as it is now
        raise
    visible = tallies.results_visible(poll, now=moment, is_owner=False, has_voted=lambda: True)
    cast = voting.cast_vote(
        session=db.session, redis=redis_handle(), poll=poll, vote=vote, voter=current_voter(),
        secret=current_app.config["SECRET_KEY"], now=moment, idempotency_key=key,
        limits=ratelimits.vote_limits(), attempt=g.vote_attempt, read_tally=visible,
        verified=verified,
    )
    return cast, visible


def _json(answer: dict, headers: dict | None = None) -> Response:
    """The 201 answer, serialized directly: it is VoteResultSchema's shape already."""
    return current_app.response_class(json.dumps(answer), status=201, headers=headers,
                                      mimetype="application/json")


def _shown_tallies(poll, moment, counts: tallies.Counts | None) -> dict:
    """The tallies the voter sees after voting: as counted with the vote, or read."""
    if counts is None:
        counts = tallies.read(session=db.session, redis=redis_handle(), poll=poll)
    return tallies.tallies_view(
        poll, counts, now=moment, suppressed=tallies.is_suppressed(poll, counts, is_owner=False),
    )
