"""Webhook resources: create (secret shown once), list, read, delete, deliveries, test."""

from __future__ import annotations

from flask import current_app, url_for
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from service.api.base import Blueprint
from service.api.common import OWNER_SECURITY, SCOPE_REFUSAL, key_errors, owner_errors, owner_only
from service.infra.clock import now
from service.infra.db import db
from service.infra.fields import Text, UTCDateTime
from service.infra.redis import redis_handle
from service.polls import manage as polls
from service.web.owner import require_owner
from service.webhooks import resources as webhooks
from service.webhooks.events import EVENTS

blp = Blueprint(
    "webhooks", __name__, url_prefix="/api/v1/webhooks",
    description="Signed deliveries of `vote.created`, `vote.changed` (a voter changed their "
                "vote: its `votes` hold it as it is now, with `changed_at`) and `poll.closed` "
                "to owners' endpoints.",
)

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100


class WebhookCreateSchema(Schema):
    url = Text(required=True, validate=validate.Length(1, webhooks.URL_MAX), metadata={
        "description": "https only, on port 443 or 8443 (WEBHOOK_ALLOWED_PORTS); hosts "
                       "resolving to loopback, private, link-local, multicast or reserved "
                       "addresses, however embedded in IPv6 (IPv4-mapped, 6to4, Teredo, "
                       "NAT64), are refused (SSRF guard)."})
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)),
                         required=True, validate=validate.Length(1, len(EVENTS)))
    poll_id = Text(load_default=None, allow_none=True, metadata={
        "description": "One poll of the owner's, or null for all of them."})


class WebhookSchema(Schema):
    id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    poll_id = fields.String(allow_none=True)
    created_at = UTCDateTime()
    secret = fields.String(metadata={
        "description": "Only in the 201 answer: `whsec_` + base64, per Standard Webhooks."})


class AttemptSchema(Schema):
    number = fields.Integer()
    attempted_at = UTCDateTime()
    response_status = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer()


class DeliverySchema(Schema):
    id = fields.Integer()
    message_id = fields.String(metadata={"description": "The `webhook-id` header."})
    event = fields.String()
    status = fields.String(metadata={"enum": ["pending", "succeeded", "failed"]})
    created_at = UTCDateTime()
    next_attempt_at = UTCDateTime(allow_none=True)
    attempts = fields.List(fields.Nested(AttemptSchema))


def _view(webhook, *, with_secret: bool = False) -> dict:
    view = {name: getattr(webhook, name) for name in ("id", "url", "events", "poll_id",
                                                       "created_at")}
    if with_secret:
        view["secret"] = webhook.secret
    return view


def _owned(webhook_id: str):
    return webhooks.get_owned_webhook(session=db.session, owner=require_owner(),
                                      webhook_id=webhook_id)


@blp.route("")
class Webhooks(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookSchema, headers={"Location": {"schema": {"type": "string"}}})
    @blp.alt_response(401, description="Missing or invalid API key")
    @blp.alt_response(403, description="`forbidden`: `poll_id` is another owner's poll; "
                                       + SCOPE_REFUSAL)
    @blp.alt_response(404, description="Unknown `poll_id`")
    def post(self, data):
        """Create a webhook; its signing secret is shown in this answer only."""
        owner = require_owner()
        poll = None
        if data["poll_id"] is not None:
            poll = polls.get_owned_poll(session=db.session, poll_id=data["poll_id"], owner=owner)
        webhook = webhooks.create_webhook(
            session=db.session, redis=redis_handle(), owner=owner, url=data["url"],
            events=data["events"], poll=poll, now=now(),
            allow_private=current_app.config["WEBHOOKS_ALLOW_PRIVATE"],
            allowed_ports=current_app.config["WEBHOOK_ALLOWED_PORTS"],
        )
        location = url_for("webhooks.WebhookById", webhook_id=webhook.id, _external=True)
        return _view(webhook, with_secret=True), 201, {"Location": location}

    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, WebhookSchema(many=True))
    @blp.paginate(page_size=PAGE_SIZE_DEFAULT, max_page_size=PAGE_SIZE_MAX)
    @key_errors(blp)
    def get(self, pagination_parameters):
        """List the owner's webhooks, newest first."""
        found, total = webhooks.list_webhooks(
            session=db.session, owner=require_owner(),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return [_view(webhook) for webhook in found]


@blp.route("/<id:webhook_id>")
class WebhookById(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, WebhookSchema)
    @owner_errors(blp, "webhook")
    def get(self, webhook_id):
        """Read a webhook (without its secret)."""
        return _view(_owned(webhook_id))

    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(204)
    @owner_errors(blp, "webhook")
    def delete(self, webhook_id):
        """Delete a webhook and its deliveries; pending retries stop."""
        webhooks.delete_webhook(session=db.session, redis=redis_handle(),
                                webhook=_owned(webhook_id))


@blp.route("/<id:webhook_id>/deliveries")
class Deliveries(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(200, DeliverySchema(many=True))
    @blp.paginate(page_size=PAGE_SIZE_DEFAULT, max_page_size=PAGE_SIZE_MAX)
    @owner_errors(blp, "webhook")
    def get(self, pagination_parameters, webhook_id):
        """The webhook's deliveries, newest first, each with its attempts (time, response
        status or error)."""
        found, total = webhooks.list_deliveries(
            session=db.session, webhook=_owned(webhook_id),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return found


@blp.route("/<id:webhook_id>/test")
class TestSend(MethodView):
    @owner_only
    @blp.doc(security=OWNER_SECURITY)
    @blp.response(202, DeliverySchema)
    @owner_errors(blp, "webhook")
    def post(self, webhook_id):
        """Queue a signed `webhook.test` delivery; follow it in the deliveries."""
        return webhooks.send_test(session=db.session, webhook=_owned(webhook_id), now=now()), 202
