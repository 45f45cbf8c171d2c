"""Voter receipts: see or withdraw one's own vote."""

from __future__ import annotations

from flask.views import MethodView

from service.api.base import Blueprint
from service.infra.clock import now
from service.infra.db import db
from service.infra.redis import redis_handle
from service.voting import receipts
from service.voting.schemas import ReceiptVoteSchema

blp = Blueprint(
    "receipts", __name__, url_prefix="/api/v1/receipts",
    description="A voter's receipt (the `receipt` of a vote's 201 answer) shows or withdraws "
                "that vote.",
)


@blp.route("/<id:receipt>")
class Receipt(MethodView):
    @blp.response(200, ReceiptVoteSchema)
    @blp.alt_response(404, description="Unknown or withdrawn receipt")
    def get(self, receipt):
        """Show the vote this receipt belongs to."""
        ballot = receipts.get_ballot(session=db.session, receipt=receipt)
        return receipts.vote_view(session=db.session, ballot=ballot)

    @blp.response(204)
    @blp.alt_response(404, description="Unknown or withdrawn receipt")
    @blp.alt_response(409, description="`poll_closed`: a closed poll's votes are final")
    def delete(self, receipt):
        """Withdraw the vote: it leaves the tallies and the voter may vote again."""
        ballot = receipts.get_ballot(session=db.session, receipt=receipt)
        receipts.withdraw(session=db.session, redis=redis_handle(), ballot=ballot, now=now())
