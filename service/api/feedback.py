"""Feedback for owners: results per context, comments and hiding them, the page-feedback
preset."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from service import feedback
from service.api.base import Blueprint
from service.api.common import OWNER_SECURITY, key_errors, owner_errors, owner_only
from service.infra.clock import now
from service.infra.db import db
from service.infra.fields import Origin, StrictBoolean, Text, Trimmed, UTCDateTime
from service.infra.redis import redis_handle
from service.polls import manage as polls
from service.polls.schemas import LOCALE_FIELD, QUESTION_MAX, PollSchema
from service.tallies.schemas import CONTEXT_MAX
from service.web.owner import require_owner
from service.web.urls import base_url

blp = Blueprint(
    "feedback", __name__, url_prefix="/api/v1/polls",
    description="Page feedback: results per context, comments, the one-click preset.",
)

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100


class ContextOptionSchema(Schema):
    id = fields.Integer()
    label = fields.String()
    votes = fields.Integer()
    percent = fields.Float()


class ContextSchema(Schema):
    context = fields.String(allow_none=True,
                            metadata={"description": "null: votes cast without a context."})
    total_votes = fields.Integer()
    options = fields.List(fields.Nested(ContextOptionSchema))
    other_votes = fields.Integer()


class CommentChoiceSchema(Schema):
    id = fields.Integer()
    label = fields.String()


class CommentSchema(Schema):
    vote_id = fields.String()
    created_at = UTCDateTime()
    comment = fields.String()
    hidden = fields.Boolean()
    context = fields.String(allow_none=True)
    choices = fields.List(fields.Nested(CommentChoiceSchema))
    other = fields.String(allow_none=True)


class CommentsQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # ?page= and ?page_size= are the paginator's

    context = Text(validate=validate.Length(1, CONTEXT_MAX))
    hidden = fields.Boolean(metadata={"description": "Only hidden (true) or shown (false)."})


class CommentUpdateSchema(Schema):
    hidden = StrictBoolean(required=True)


class PageFeedbackSchema(Schema):
    question = Trimmed(load_default=feedback.PAGE_FEEDBACK_QUESTION,
                       validate=validate.Length(1, QUESTION_MAX))
    allowed_origins = fields.List(Origin())
    locale = fields.String(**LOCALE_FIELD)


def _owned_poll(poll_id: str):
    return polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=require_owner())


@blp.route("/<id:poll_id>/contexts")
class Contexts(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, ContextSchema(many=True))
    @blp.paginate(page_size=PAGE_SIZE_DEFAULT, max_page_size=PAGE_SIZE_MAX)
    @owner_errors(blp, "poll")
    def get(self, pagination_parameters, poll_id):
        """Results per context (page): totals and option counts, most votes first."""
        poll = _owned_poll(poll_id)
        found, total = feedback.contexts(
            session=db.session, poll=poll, offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return found


@blp.route("/<id:poll_id>/comments")
class Comments(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(CommentsQuerySchema, location="query")
    @blp.response(200, CommentSchema(many=True))
    @blp.paginate(page_size=PAGE_SIZE_DEFAULT, max_page_size=PAGE_SIZE_MAX)
    @owner_errors(blp, "poll")
    def get(self, query, pagination_parameters, poll_id):
        """Comments, newest first, with their vote's choices, context and time."""
        poll = _owned_poll(poll_id)
        found, total = feedback.comments(
            session=db.session, poll=poll, context=query.get("context"),
            hidden=query.get("hidden"), offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return found


@blp.route("/<id:poll_id>/comments/<id:vote_id>")
class CommentById(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(CommentUpdateSchema)
    @blp.response(200, CommentSchema)
    @owner_errors(blp, "poll", not_found="Unknown poll, or a vote without a comment")
    def patch(self, data, poll_id, vote_id):
        """Hide a comment from every public surface (`{"hidden": true}`), or show it again.
        It stays in the owner's exports, marked in the `comment_hidden` column."""
        poll = _owned_poll(poll_id)
        return feedback.set_comment_hidden(session=db.session, poll=poll, vote_id=vote_id,
                                           hidden=data["hidden"])


@blp.route("/presets/page-feedback")
class PageFeedbackPreset(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(PageFeedbackSchema)
    @blp.response(201, PollSchema, headers={"Location": {"schema": {"type": "string"}}})
    @key_errors(blp)
    def post(self, data):
        """Create a "Was this page helpful?" poll: Yes / No with an optional comment,
        results for the owner only, one vote per browser. Embed it on every page with
        the page's path as the vote's `context`; read results per page at `/contexts`."""
        poll = feedback.create_page_feedback_poll(
            session=db.session, redis=redis_handle(), owner=require_owner(), data=data,
            now=now(),
        )
        location = url_for("polls.PollById", poll_id=poll.id, _external=True)
        view = polls.poll_view(poll, now=now(), base_url=base_url(), for_owner=True)
        return view, 201, {"Location": location}
