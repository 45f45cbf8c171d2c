"""Casting votes: parse, call the vote use-case, answer."""

from __future__ import annotations

import functools

import orjson
from flask import current_app, json
from flask.views import MethodView
from werkzeug.exceptions import HTTPException

from service.api.base import Blueprint
from service.infra.clock import now
from service.voting import challenge, idempotency
from service.voting.app import voting
from service.voting.ballot import Ballot
from service.voting.cast import Refused
from service.voting.schemas import (
    ChallengeSchema,
    VoteResultSchema,
    VoteSchema,
    load_plain_vote,
)
from service.web import cors
from service.web.voter import vote_facts

blp = Blueprint("votes", __name__, url_prefix="/api/v1/polls", description="Vote in a poll.")
blp.ARGUMENTS_PARSER.load_plainly(VoteSchema, load_plain_vote)

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


def _counts_unparsed_attempts(view):
    """A body that does not parse (bad JSON, another content type, unknown fields) is an
    attempt too: it counts towards the rate limits, and over them answers 429, as a
    limiter in front of the view would."""

    @functools.wraps(view)
    def wrapper(*args, poll_id: str, **kwargs):
        try:
            return view(*args, poll_id=poll_id, **kwargs)
        except HTTPException:
            refused = voting().count_unparsed(poll_id=poll_id, facts=vote_facts())
            if refused is not None:
                raise refused.error from None
            raise

    return wrapper


@blp.route("/<id:poll_id>/votes")
class Votes(MethodView):
    @_counts_unparsed_attempts
    @blp.hot(VoteSchema)
    @blp.doc(parameters=[IDEMPOTENCY_PARAMETER])
    @blp.arguments(VoteSchema)
    @blp.response(201, VoteResultSchema, headers={idempotency.REPLAY_HEADER: {
        "description": "`true` when this is a retry answered with the first answer.",
        "schema": {"type": "string", "enum": ["true"]},
    }})
    @blp.alt_response(403, description=(
        "`origin_not_allowed`, or `challenge_required`: the poll's proof of work is on and "
        "the vote carries no solution, or a wrong, expired or used one"))
    @blp.alt_response(404, description="Unknown poll")
    @blp.alt_response(409, description=(
        "`duplicate_vote` (only when a ballot of this voter exists), `vote_pending` (an "
        "earlier attempt by this voter is still in flight: retry after `Retry-After`, with "
        "the same `Idempotency-Key`), `poll_closed`, `poll_full` (the poll closed itself at "
        "its `max_votes`) or `idempotency_key_in_use`"))
    @blp.alt_response(422, description="`validation_error`, also naming `Idempotency-Key`")
    @blp.alt_response(429, description="`rate_limited`, with `Retry-After`")
    def post(self, fields, poll_id):
        """Vote. The answer sets the signed voter cookie when the browser has none."""
        result = voting().cast(poll_id=poll_id, ballot=Ballot.from_fields(fields),
                               facts=vote_facts())
        if result.poll is not None:
            cors.allow(result.poll)
        if isinstance(result, Refused):
            raise result.error
        headers = {idempotency.REPLAY_HEADER: "true"} if result.replayed else None
        # Serialized directly: the answer is VoteResultSchema's shape already.
        return current_app.response_class(orjson.dumps(result.answer), status=201,
                                          headers=headers, mimetype="application/json")


@blp.route("/<id:poll_id>/challenge")
class Challenge(MethodView):
    @blp.response(200, ChallengeSchema, headers={"Cache-Control": {
        "description": "`no-store`: each vote solves a challenge of its own.",
        "schema": {"type": "string"}}})
    @blp.alt_response(404, description="Unknown poll")
    def get(self, poll_id):
        """A proof-of-work challenge for one vote in the poll (ALTCHA, protocol v1): single
        use, valid for 10 minutes. Needed while the tallies say `"challenge": true`."""
        poll = voting().polls.get(poll_id)
        cors.allow(poll)
        made = challenge.new_challenge(
            secret=current_app.config["SECRET_KEY"], poll_id=poll.id, now=now(),
            max_number=current_app.config["CHALLENGE_MAX_NUMBER"])
        return current_app.response_class(json.dumps(made), mimetype="application/json",
                                          headers={"Cache-Control": "no-store"})
