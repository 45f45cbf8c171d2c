"""Stateless signed tokens for the widget's no-JS path.

Cookies cannot carry CSRF protection inside third-party iframes (Safari and Firefox
block or partition them), so the form's `csrf_token` is an HMAC of the poll id and an
expiry, keyed with the app secret: nothing is stored, a token for one poll is worthless
for another, and a forged or expired one counts nothing. The same construction, with
another purpose, marks the redirect after a successful vote ("you voted": show the
results even when the browser keeps no cookie).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

CSRF_TOKEN_SECONDS = 6 * 3600  # a widget page left open this long must be reloaded
VOTED_TOKEN_SECONDS = 3600
CSRF_PURPOSE = "widget-csrf"
VOTED_PURPOSE = "widget-voted"


def _mac(secret: str, purpose: str, poll_id: str, expires: int) -> str:
    message = f"{purpose}\x00{poll_id}\x00{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def issue(*, secret: str, purpose: str, poll_id: str, now: datetime, lifetime: int) -> str:
    """A token `<expiry>.<hmac>` valid for `lifetime` seconds for this poll and purpose."""
    expires = int(now.timestamp()) + lifetime
    return f"{expires}.{_mac(secret, purpose, poll_id, expires)}"


def is_valid(token: str | None, *, secret: str, purpose: str, poll_id: str,
             now: datetime) -> bool:
    """Whether the token was issued by us, for this poll and purpose, and is unexpired."""
    if not token or token.count(".") != 1:
        return False
    raw_expires, mac = token.split(".")
    if not raw_expires.isdigit() or len(raw_expires) > 12:
        return False
    expires = int(raw_expires)
    if not hmac.compare_digest(mac, _mac(secret, purpose, poll_id, expires)):
        return False
    return now.timestamp() < expires
