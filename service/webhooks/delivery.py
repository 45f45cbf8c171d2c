"""One delivery attempt: sign, send through the SSRF guard, record the attempt, and
schedule the retry or give up."""

from __future__ import annotations

import http.client
import time
from datetime import timedelta

from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from service.infra.clock import now
from service.infra.db import db
from service.infra.models import Webhook, WebhookAttempt
from service.infra.models import WebhookDelivery as Delivery
from service.webhooks import sender
from service.webhooks.sender import UnsafeUrl

SEND_TIMEOUT_SECONDS = 10
ERROR_MAX = 500


def attempt(*, session: Session, delivery_id: int) -> None:
    """Send one pending delivery once, log the attempt, and schedule a retry or stop."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.status != "pending":
        return
    webhook = session.get(Webhook, delivery.webhook_id)
    if webhook is None:  # deleted meanwhile (its deliveries go with it)
        return
    config = current_app.config
    timestamp = int(time.time())
    body = delivery.payload.encode()
    headers = {
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sender.sign(webhook.secret, delivery.message_id,
                                                 timestamp, body),
    }
    started = time.monotonic()
    status, error = None, None
    try:
        status = sender.post(webhook.url, body, headers, timeout=SEND_TIMEOUT_SECONDS,
                             allow_private=config["WEBHOOKS_ALLOW_PRIVATE"],
                             allowed_ports=config["WEBHOOK_ALLOWED_PORTS"])
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except UnsafeUrl as refused:
        error = f"refused: {refused}"
    except (OSError, http.client.HTTPException) as failure:
        error = f"{type(failure).__name__}: {failure}"
    moment = now()
    delivery.attempt_count += 1
    session.add(WebhookAttempt(
        delivery_id=delivery.id, number=delivery.attempt_count, attempted_at=moment,
        response_status=status, error=error[:ERROR_MAX] if error else None,
        duration_ms=int((time.monotonic() - started) * 1000),
    ))
    delays = config["WEBHOOK_RETRY_DELAYS"]
    if error is None:
        delivery.status, delivery.next_attempt_at = "succeeded", None
    elif delivery.attempt_count <= len(delays):
        delay = delays[delivery.attempt_count - 1]
        delivery.next_attempt_at = moment + timedelta(seconds=delay)
    else:
        delivery.status, delivery.next_attempt_at = "failed", None
    session.commit()


def deliver_job(delivery_id: int) -> None:
    """The RQ job: send one delivery, in the app of the worker that runs it
    (`flask --app wsgi webhooks worker`)."""
    if not has_app_context():
        raise RuntimeError("webhook jobs run in `flask --app wsgi webhooks worker`")
    attempt(session=db.session, delivery_id=delivery_id)
