"""Casting votes."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView

from service import cors, idempotency, integrity, polls, ratelimits, tallies, voting
from service.api.base import Blueprint
from service.api.common import now
from service.errors import ServiceError
from service.extensions import db, limiter, redis_handle
from service.identity import current_voter
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


@blp.route("/<poll_id>/votes")
class Votes(MethodView):
    @limiter.limit(ratelimits.vote_limit, on_breach=ratelimits.count_refusal)
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
        secret = current_app.config["SECRET_KEY"]
        key = idempotency.request_key(request.headers)
        poll = polls.get_poll(session=session, poll_id=poll_id)
        cors.allow(poll)
        claim = None
        try:
            cors.check_vote_origin(poll)
            if key is not None:
                claim = idempotency.begin(redis=redis, poll_id=poll.id, key=key, vote=vote,
                                          secret=secret)
                if claim.answer is not None:
                    answer = idempotency.replay(claim, secret=secret, poll_id=poll.id)
                    return answer, 201, {idempotency.REPLAY_HEADER: "true"}
            cast = voting.cast_vote(
                session=session, redis=redis, poll=poll, vote=vote, voter=current_voter(),
                secret=secret, now=moment, idempotency_key=key,
            )
        except ServiceError as error:
            idempotency.abort(redis=redis, claim=claim)
            integrity.record_refusal(redis=redis, poll_id=poll.id, error=error, at=moment)
            raise
        except BaseException:
            idempotency.abort(redis=redis, claim=claim)
            raise
        answer = {"vote": {"id": cast.ballot_id, "receipt": cast.receipt,
                           "created_at": cast.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
                  "tallies": _shown_tallies(poll, moment)}
        idempotency.finish(redis=redis, claim=claim, answer=answer)
        if cast.replayed:
            return answer, 201, {idempotency.REPLAY_HEADER: "true"}
        integrity.record(redis=redis, poll_id=poll.id, outcome=integrity.ACCEPTED, at=moment)
        return answer, 201


def _shown_tallies(poll, moment) -> dict | None:
    """The tallies the voter may see after voting (None when the results rule hides them)."""
    if not tallies.results_visible(poll, now=moment, is_owner=False, has_voted=lambda: True):
        return None
    counts = tallies.read(session=db.session, redis=redis_handle(), poll=poll)
    return tallies.tallies_view(
        poll, counts, now=moment, suppressed=tallies.is_suppressed(poll, counts, is_owner=False),
    )
