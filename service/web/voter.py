"""The voter a request offers: its signed voter cookie and its client address.

Raw cookie ids and addresses go no further than the vote use-case, which stores and
logs only their per-poll keyed hashes (service/infra/identity.py).
"""

from __future__ import annotations

import functools
import secrets

from flask import Flask, Request, Response, current_app, g, request
from itsdangerous import BadSignature, Signer

from service.infra.identity import Voter, client_address
from service.voting.ballot import VoteFacts
from service.voting.idempotency import HEADER as IDEMPOTENCY_HEADER
from service.web.urls import own_origin

VOTER_COOKIE = "pollbox_voter"
VOTER_COOKIE_SALT = "pollbox-voter"
# Chromium caps cookie lifetimes at 400 days.
VOTER_COOKIE_MAX_AGE_SECONDS = 400 * 24 * 3600
@functools.lru_cache(maxsize=4)
def _signer(secret: str) -> Signer:
    """One signer per secret (it derives its key once): every request reads the cookie."""
    return Signer(secret, salt=VOTER_COOKIE_SALT)


def read_voter(req: Request, secret: str) -> Voter:
    """Identify the voter; a missing, unsigned or tampered cookie gets a new id."""
    raw = req.cookies.get(VOTER_COOKIE)
    cookie_id = None
    if raw:
        try:
            cookie_id = _signer(secret).unsign(raw).decode()
        except BadSignature:
            cookie_id = None
    is_new = cookie_id is None
    if is_new:
        cookie_id = secrets.token_urlsafe(16)
    return Voter(cookie_id=cookie_id, cookie_is_new=is_new, address=client_address(req.remote_addr))


def current_voter() -> Voter:
    """The voter of the current request; a new cookie is set on the answer."""
    if "voter" not in g:
        g.voter = read_voter(request, current_app.config["SECRET_KEY"])
    return g.voter


def vote_facts(*, keyed: bool = True) -> VoteFacts:
    """What the current request says besides its ballot: the voter, the Origin header
    (with the service's own origin, which only a browser's vote needs), and (`keyed`) the
    Idempotency-Key."""
    origin = request.headers.get("Origin")
    return VoteFacts(voter=current_voter(), origin=origin,
                     own_origin=own_origin() if origin is not None else "",
                     idempotency_key=request.headers.get(IDEMPOTENCY_HEADER) if keyed else None)


def set_voter_cookie(response: Response, voter: Voter, *, secure: bool, secret: str) -> None:
    """Set the signed voter cookie: third-party friendly on HTTPS, Lax on plain HTTP."""
    value = _signer(secret).sign(voter.cookie_id).decode()
    where = ({"secure": True, "samesite": "None", "partitioned": True} if secure
             else {"samesite": "Lax"})
    response.set_cookie(VOTER_COOKIE, value, max_age=VOTER_COOKIE_MAX_AGE_SECONDS, path="/",
                        httponly=True, **where)


def _issue_new_cookie(response: Response) -> Response:
    voter = g.get("voter")
    if voter is not None and voter.cookie_is_new:
        set_voter_cookie(
            response, voter, secure=request.is_secure, secret=current_app.config["SECRET_KEY"]
        )
    return response


def init_app(app: Flask) -> None:
    app.after_request(_issue_new_cookie)
