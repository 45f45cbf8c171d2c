"""Console webhook pages: the list with each webhook's last delivery, the create form
(its secret shown once), a webhook's deliveries log with every attempt, a test send, and
delete after confirmation.

The views only translate HTTP: creating (with the SSRF guard), test sends and deleting
are service/webhooks/'s, as for the API.
"""

from __future__ import annotations

from flask import current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from service.console import bp
from service.console.auth import owner_required, scope_required
from service.console.feedback import requested_page
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import Forbidden, NotFound, ValidationFailed
from service.infra.models import Poll, Webhook
from service.infra.models import WebhookDelivery as Delivery
from service.infra.redis import redis_handle
from service.polls import manage as polls
from service.webhooks import resources as webhooks
from service.webhooks.events import EVENTS
from service.webhooks.resources import URL_MAX

EVENT_LABELS = {
    "vote.created": "vote.created: votes cast (the votes of one second come together)",
    "poll.closed": "poll.closed: a poll closes, by hand or at its closing time",
}
# The poll select of the create form lists this many of the owner's newest polls.
POLL_CHOICES_MAX = 500


def owned_webhook(webhook_id: str) -> Webhook:
    """The signed-in owner's webhook; another owner's is as unknown as a missing one."""
    try:
        return webhooks.get_owned_webhook(session=db.session, owner=g.console_owner,
                                          webhook_id=webhook_id)
    except Forbidden:
        raise NotFound("No such webhook.") from None


def _last_deliveries(webhook_ids: list[str]) -> dict[str, Delivery]:
    """Each webhook's newest delivery, with its attempts (one query for the page)."""
    if not webhook_ids:
        return {}
    newest = (select(func.max(Delivery.id)).where(Delivery.webhook_id.in_(webhook_ids))
              .group_by(Delivery.webhook_id))
    found = db.session.scalars(
        select(Delivery).where(Delivery.id.in_(newest)).options(selectinload(Delivery.attempts))
    )
    return {delivery.webhook_id: delivery for delivery in found}


def _poll_questions(poll_ids: set[str]) -> dict[str, str]:
    if not poll_ids:
        return {}
    return dict(db.session.execute(
        select(Poll.id, Poll.question).where(Poll.id.in_(poll_ids),
                                             Poll.owner_id == g.console_owner.id)
    ).all())


@bp.get("/webhooks")
@owner_required
def webhooks_index():
    """The owner's webhooks, newest first, each with its last delivery's outcome."""
    page = requested_page()
    found, total = webhooks.list_webhooks(session=db.session, owner=g.console_owner,
                                          offset=page.offset, limit=page.size)
    return render_template(
        "console/webhooks.html", webhooks=found, page=page.counted(total),
        last=_last_deliveries([webhook.id for webhook in found]),
        questions=_poll_questions({webhook.poll_id for webhook in found if webhook.poll_id}),
    )


def _checked_form(form: dict) -> tuple[dict[str, list[str]], Poll | None]:
    """Field errors of the create form, and the poll it names (None: all polls)."""
    errors: dict[str, list[str]] = {}
    if not form["url"]:
        errors["url"] = ["Enter the https URL that should receive the webhooks."]
    elif len(form["url"]) > URL_MAX:
        errors["url"] = [f"The URL may be at most {URL_MAX} characters long."]
    if not form["events"]:
        errors["events"] = ["Choose at least one event."]
    elif not set(form["events"]) <= set(EVENTS):
        errors["events"] = ["Choose among the events listed."]
    poll = None
    if form["poll_id"]:
        try:
            poll = polls.get_owned_poll(session=db.session, poll_id=form["poll_id"],
                                        owner=g.console_owner)
        except (NotFound, Forbidden):
            errors["poll_id"] = ["Choose one of your polls, or all polls."]
    return errors, poll


@bp.route("/webhooks/new", methods=["GET", "POST"])
@owner_required
@scope_required("write")
def webhook_new():
    """The create form; on success, the page that shows the signing secret once."""
    form = {"url": "", "events": list(EVENTS), "poll_id": request.args.get("poll", "")}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = {"url": request.form.get("url", "").strip(),
                "events": request.form.getlist("events"),
                "poll_id": request.form.get("poll_id", "")}
        errors, poll = _checked_form(form)
        if not errors:
            try:
                webhook = webhooks.create_webhook(
                    session=db.session, redis=redis_handle(), owner=g.console_owner,
                    url=form["url"], events=form["events"], poll=poll, now=now(),
                    allow_private=current_app.config["WEBHOOKS_ALLOW_PRIVATE"],
                    allowed_ports=current_app.config["WEBHOOK_ALLOWED_PORTS"],
                )
            except ValidationFailed as error:  # the SSRF guard refused the URL
                errors = error.errors
            else:
                # Rendered, not redirected: the secret is never kept to be shown again.
                page = render_template("console/webhook_created.html", webhook=webhook,
                                       question=poll.question if poll else None)
                location = url_for("console.webhook_show", webhook_id=webhook.id)
                return page, 201, {"Location": location}
    choices, _ = polls.list_polls(session=db.session, owner=g.console_owner, offset=0,
                                  limit=POLL_CHOICES_MAX)
    page = render_template(
        "console/webhook_new.html", form=form, errors=errors, polls=choices,
        events=EVENT_LABELS, allow_private=current_app.config["WEBHOOKS_ALLOW_PRIVATE"],
    )
    return page, 422 if errors else 200


@bp.get("/webhooks/<id:webhook_id>")
@owner_required
def webhook_show(webhook_id: str):
    """A webhook and its deliveries log: newest first, every attempt, the next retry."""
    webhook = owned_webhook(webhook_id)
    page = requested_page()
    deliveries, total = webhooks.list_deliveries(session=db.session, webhook=webhook,
                                                 offset=page.offset, limit=page.size)
    return render_template(
        "console/webhook_show.html", webhook=webhook, deliveries=deliveries,
        page=page.counted(total),
        question=_poll_questions({webhook.poll_id}).get(webhook.poll_id)
        if webhook.poll_id else None,
    )


@bp.post("/webhooks/<id:webhook_id>/test")
@owner_required
def webhook_test(webhook_id: str):
    """Queue a signed `webhook.test` delivery, then show it in the log."""
    delivery = webhooks.send_test(session=db.session, webhook=owned_webhook(webhook_id),
                                  now=now())
    flash(f"Test delivery {delivery.id} is queued; reload this page to see its attempts.",
          "success")
    return redirect(url_for("console.webhook_show", webhook_id=webhook_id))


@bp.route("/webhooks/<id:webhook_id>/delete", methods=["GET", "POST"])
@owner_required
@scope_required("write")
def webhook_delete(webhook_id: str):
    """Ask first (GET); delete the webhook with its deliveries (POST)."""
    webhook = owned_webhook(webhook_id)
    if request.method == "GET":
        deliveries = db.session.scalar(
            select(func.count(Delivery.id)).where(Delivery.webhook_id == webhook.id))
        return render_template("console/webhook_delete.html", webhook=webhook,
                               deliveries=deliveries or 0)
    url = webhook.url
    webhooks.delete_webhook(session=db.session, redis=redis_handle(), webhook=webhook)
    flash(f"Deleted the webhook to {url}; its pending retries stop.", "success")
    return redirect(url_for("console.webhooks_index"))
