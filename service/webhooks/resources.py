"""An owner's webhooks as resources: create (after the SSRF guard), list, read, delete,
their deliveries, and a test delivery."""

from __future__ import annotations

import secrets
import string
from collections.abc import Collection
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from service.infra.errors import Forbidden, NotFound, ValidationFailed
from service.infra.models import Owner, Poll, Webhook
from service.infra.models import WebhookDelivery as Delivery
from service.infra.redis import RedisHandle
from service.webhooks import dispatcher, sender
from service.webhooks.events import sync_subscribers, test_delivery
from service.webhooks.sender import UnsafeUrl

WEBHOOK_ID_ALPHABET = string.ascii_letters + string.digits
WEBHOOK_ID_LENGTH = 16
URL_MAX = 2000


def create_webhook(*, session: Session, redis: RedisHandle, owner: Owner, url: str,
                   events: list[str], poll: Poll | None, allow_private: bool,
                   allowed_ports: Collection[int], now: datetime) -> Webhook:
    """Create a webhook after the SSRF guard accepted its URL; its secret is on it."""
    try:
        sender.check_url(url, allow_private=allow_private, allowed_ports=allowed_ports)
    except UnsafeUrl as error:
        raise ValidationFailed({"url": [str(error)]}) from None
    webhook = Webhook(
        id="wh_" + "".join(secrets.choice(WEBHOOK_ID_ALPHABET) for _ in range(WEBHOOK_ID_LENGTH)),
        owner_id=owner.id, poll_id=poll.id if poll else None, url=url,
        events=list(dict.fromkeys(events)), secret=sender.new_secret(), created_at=now,
    )
    session.add(webhook)
    session.commit()
    sync_subscribers(session=session, redis=redis)
    dispatcher.start_in_process(current_app)
    return webhook


def list_webhooks(*, session: Session, owner: Owner, offset: int,
                  limit: int) -> tuple[list[Webhook], int]:
    """The owner's webhooks, newest first, and how many there are."""
    condition = Webhook.owner_id == owner.id
    total = session.scalar(select(func.count(Webhook.id)).where(condition)) or 0
    found = session.scalars(
        select(Webhook).where(condition).order_by(Webhook.created_at.desc(), Webhook.id)
        .offset(offset).limit(limit)
    ).all()
    return list(found), total


def get_owned_webhook(*, session: Session, owner: Owner, webhook_id: str) -> Webhook:
    """The owner's webhook; 404 if unknown, 403 if another owner's."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound("No such webhook.")
    if webhook.owner_id != owner.id:
        raise Forbidden("This webhook belongs to another owner.")
    return webhook


def delete_webhook(*, session: Session, redis: RedisHandle, webhook: Webhook) -> None:
    """Delete the webhook with its deliveries; pending retries stop."""
    session.delete(webhook)
    session.commit()
    sync_subscribers(session=session, redis=redis)


def list_deliveries(*, session: Session, webhook: Webhook, offset: int,
                    limit: int) -> tuple[list[Delivery], int]:
    """The webhook's deliveries, newest first, with their attempts."""
    condition = Delivery.webhook_id == webhook.id
    total = session.scalar(select(func.count(Delivery.id)).where(condition)) or 0
    found = session.scalars(
        select(Delivery).where(condition).order_by(Delivery.id.desc())
        .offset(offset).limit(limit).options(selectinload(Delivery.attempts))
    ).all()
    return list(found), total


def send_test(*, session: Session, webhook: Webhook, now: datetime) -> Delivery:
    """Queue a `webhook.test` delivery to the webhook, sent like any other."""
    delivery = test_delivery(session=session, webhook=webhook, now=now)
    dispatcher.hand_out([delivery])
    return delivery
