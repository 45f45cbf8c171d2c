"""Voter receipts: see, change or withdraw one's own vote."""

from __future__ import annotations

from flask.views import MethodView

from service.api.base import Blueprint
from service.infra.clock import now
from service.infra.db import db
from service.infra.redis import redis_handle
from service.voting import receipts
from service.voting.ballot import Ballot
from service.voting.change import change_by_receipt
from service.voting.schemas import ChangeResultSchema, ChangeSchema, ReceiptVoteSchema
from service.webhooks.dispatcher import announce_change

blp = Blueprint(
    "receipts", __name__, url_prefix="/api/v1/receipts",
    description="A voter's receipt (the `receipt` of a vote's 201 answer) shows, changes (on "
                "a poll with `allow_change`) or withdraws that vote.",
)


@blp.route("/<id:receipt>")
class Receipt(MethodView):
    @blp.response(200, ReceiptVoteSchema)
    @blp.alt_response(404, description="Unknown or withdrawn receipt")
    def get(self, receipt):
        """Show the vote this receipt belongs to."""
        ballot = receipts.get_ballot(session=db.session, receipt=receipt)
        return receipts.vote_view(session=db.session, ballot=ballot)

    @blp.arguments(ChangeSchema)
    @blp.response(200, ChangeResultSchema)
    @blp.alt_response(404, description="Unknown or withdrawn receipt")
    @blp.alt_response(409, description=(
        "`change_not_allowed`: the poll does not have `allow_change`; `poll_closed`: a "
        "closed poll's votes are final (nothing changes)"))
    @blp.alt_response(422, description="`validation_error` naming the field, as for a new vote")
    def put(self, fields, receipt):
        """Change the vote (on a poll with `allow_change`, while it is open): its choices,
        other answer and comment become these, checked as a new vote's are. The vote keeps
        its id and receipt; the tallies move it (`vote.changed` webhooks are told)."""
        moment = now()
        answer = change_by_receipt(
            session=db.session, redis=redis_handle(), receipt=receipt,
            ballot=Ballot(choices=tuple(fields["choices"]), other=fields["other"],
                          comment=fields["comment"]), now=moment)
        announce_change(session=db.session, ballot_id=answer["vote"]["id"], now=moment)
        return answer

    @blp.response(204)
    @blp.alt_response(404, description="Unknown or withdrawn receipt")
    @blp.alt_response(409, description="`poll_closed`: a closed poll's votes are final")
    def delete(self, receipt):
        """Withdraw the vote: it leaves the tallies and the voter may vote again."""
        ballot = receipts.get_ballot(session=db.session, receipt=receipt)
        receipts.withdraw(session=db.session, redis=redis_handle(), ballot=ballot, now=now())
