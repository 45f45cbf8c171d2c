"""Live tallies."""

from __future__ import annotations

import hashlib

import orjson
from flask import current_app, request
from flask.views import MethodView

from service.api.base import Blueprint
from service.api.common import is_poll_owner, require_results_visible
from service.infra.clock import now
from service.infra.db import db
from service.infra.kept import Kept
from service.infra.models import challenge_on
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.tallies import counts as tallies
from service.tallies import results
from service.tallies.schemas import TalliesQuerySchema, TalliesSchema, load_no_query
from service.web import cors, hot

blp = Blueprint("tallies", __name__, url_prefix="/api/v1/polls", description="Read results.")
blp.ARGUMENTS_PARSER.load_plainly(TalliesQuerySchema, load_no_query)

ETAG_HEX_CHARS = 32
VARY = "Authorization, Cookie"


@blp.route("/<id:poll_id>/tallies")
class Tallies(MethodView):
    @blp.hot(TalliesQuerySchema, location="query")
    @blp.arguments(TalliesQuerySchema, location="query")
    @blp.response(200, TalliesSchema, headers={"ETag": {"schema": {"type": "string"}}})
    @blp.alt_response(304, description="Not modified (If-None-Match)")
    @blp.alt_response(403, description="`results_hidden`")
    @blp.alt_response(404, description="Unknown poll")
    def get(self, args, poll_id):
        """Current results; `context` filters to votes cast with that context. The whole
        poll's results include its baseline (votes from before Pollbox) and say so.

        A process answers a read made within `TALLIES_CACHE_MS` (250 by default) of
        another one from memory while it has heard of no change of the poll since. A vote
        answered before the read began is in it, whichever process took the vote; a
        change message lost on the way shows no later than `TALLIES_CACHE_MS`.
        `Cache-Control: no-cache` reads past it. A public answer to a read without
        credentials is kept whole and given again to the same read while its tally and
        the poll's status stand."""
        session, moment, context = db.session, now(), args.get("context")
        # The poll (cached per process, checked by its version) and the tally: one round trip.
        read = poll_cache.read_poll_and_counts(
            session=session, redis=redis_handle(), poll_id=poll_id, context=context,
            fresh=request.asks_fresh)
        poll, counts, exact = read.poll, read.counts, read.exact
        cors.allow(poll)
        is_owner = is_poll_owner(poll)
        require_results_visible(poll, session=session, moment=moment, is_owner=is_owner)
        suppressed = results.is_suppressed(poll, counts, is_owner=is_owner, context=context)
        status = poll.status_at(moment)
        headers = {
            # Public results may be cached but must be revalidated; personal ones stay private.
            "Cache-Control": "no-cache" if poll.results == "always" and not is_owner
            else "private, no-cache",
            "Vary": VARY,
        }
        body = known = None
        if exact and poll.version is not None:
            # The answer is a function of the poll's version (its baseline included), its
            # status, the suppression and the counts: the ETag is too, so a 304 needs no
            # body, and an answer made moments ago for the same is this one's.
            key = _answer_key(f"{poll.version}|{challenge_on(poll, moment):d}", status,
                              suppressed, counts)
            known = (poll_id, context, key)
            etag, body = _answers.get(known) or (_etag_of(key), None)
        else:
            body = _body(poll, counts, moment, suppressed, context)
            etag = hashlib.sha256(body).hexdigest()[:ETAG_HEX_CHARS]
        headers["ETag"] = f'"{etag}"'
        if read.entry is not None and poll.results == "always" and not is_owner:
            hot.keep_while_unchanged(poll, context, read.entry, moment)
        if request.if_none_match.contains_weak(etag):
            return current_app.response_class(status=304, headers=headers)
        if body is None:
            body = _body(poll, counts, moment, suppressed, context)
            if known is not None:
                _answers.put(known, (etag, body))
        return current_app.response_class(body, mimetype="application/json", headers=headers)


def _body(poll, counts: tallies.Counts, moment, suppressed: bool, context: str | None) -> bytes:
    return orjson.dumps(results.tallies_view(poll, counts, now=moment, suppressed=suppressed,
                                             context=context))


def _answer_key(version: str, status: str, suppressed: bool, counts: tallies.Counts) -> str:
    """What a whole answer is made from, in one text."""
    updated = "" if counts.updated is None else counts.updated.timestamp()
    options = ",".join(f"{option}:{n}" for option, n in sorted(counts.options.items()))
    return f"{version}|{status}|{suppressed:d}|{counts.total}|{counts.other}|{updated}|{options}"


def _etag_of(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=ETAG_HEX_CHARS // 2).hexdigest()


# The process's latest answers (ETag, body) by poll, context and what they are made from:
# a read of a tally that has not moved since another read reuses the answer's bytes.
ANSWERS_KEPT = 512
_answers: Kept[tuple[str, str | None, str], tuple[str, bytes]] = Kept(ANSWERS_KEPT)
