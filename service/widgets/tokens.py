"""Stateless signed tokens for the widget's no-JS path.

Cookies cannot carry CSRF protection inside third-party iframes (Safari and Firefox
block or partition them), so the form's `csrf_token` is an HMAC of the poll id and an
expiry, keyed with the app secret: nothing is stored, a token for one poll is worthless
for another, and a forged or expired one counts nothing. The same construction, with
another purpose, marks the redirect after a successful vote ("you voted": show the
results even when the browser keeps no cookie). That mark is bound to the visitor who
voted: to their voter cookie when the vote came with one, otherwise to their address
(a browser that keeps no third-party cookie). Whoever else holds the URL sees nothing
the API would not show them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from service.infra.identity import Voter

CSRF_TOKEN_SECONDS = 6 * 3600  # a widget page left open this long must be reloaded
VOTED_TOKEN_SECONDS = 3600
CSRF_PURPOSE = "widget-csrf"
VOTED_PURPOSE = "widget-voted"


MAX_EXPIRY_DIGITS = 12
# How a voted mark names its visitor: by voter cookie, or by address when the vote came
# without a cookie (the redirect will come without one too).
BY_COOKIE, BY_ADDRESS = "c", "a"


def _mac(secret: str, purpose: str, poll_id: str, expires: int, subject: str) -> str:
    message = f"{purpose}\x00{poll_id}\x00{expires}\x00{subject}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def issue(*, secret: str, purpose: str, poll_id: str, now: datetime, lifetime: int,
          subject: str = "") -> str:
    """A token `<expiry>.<hmac>` valid for `lifetime` seconds for this poll, purpose and
    subject."""
    expires = int(now.timestamp()) + lifetime
    return f"{expires}.{_mac(secret, purpose, poll_id, expires, subject)}"


def is_valid(token: str | None, *, secret: str, purpose: str, poll_id: str,
             now: datetime, subject: str = "") -> bool:
    """Whether the token was issued by us, for this poll, purpose and subject, and is
    unexpired."""
    if not token or token.count(".") != 1:
        return False
    raw_expires, mac = token.split(".")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (raw_expires.isascii() and raw_expires.isdigit()) \
            or len(raw_expires) > MAX_EXPIRY_DIGITS:
        return False
    expires = int(raw_expires)
    if not hmac.compare_digest(mac, _mac(secret, purpose, poll_id, expires, subject)):
        return False
    return now.timestamp() < expires


def _voter_subject(how: str, voter: Voter) -> str:
    return f"{how}:{voter.cookie_id if how == BY_COOKIE else voter.address}"


def issue_voted(*, secret: str, poll_id: str, voter: Voter, now: datetime) -> str:
    """The "you voted" mark for the redirect after a no-JS vote, bound to this voter."""
    how = BY_ADDRESS if voter.cookie_is_new else BY_COOKIE
    token = issue(secret=secret, purpose=VOTED_PURPOSE, poll_id=poll_id, now=now,
                  lifetime=VOTED_TOKEN_SECONDS, subject=_voter_subject(how, voter))
    return how + token


def is_voted(mark: str | None, *, secret: str, poll_id: str, voter: Voter,
             now: datetime) -> bool:
    """Whether the mark was issued to this voter (same cookie, or same address when the
    vote came without a cookie) for this poll, and is unexpired."""
    if not mark or mark[0] not in (BY_COOKIE, BY_ADDRESS):
        return False
    how = mark[0]
    if how == BY_COOKIE and voter.cookie_is_new:
        return False
    return is_valid(mark[1:], secret=secret, purpose=VOTED_PURPOSE, poll_id=poll_id, now=now,
                    subject=_voter_subject(how, voter))
