"""Who is voting: the signed voter cookie, the client address, per-poll keyed hashes.

Raw addresses and raw cookie ids never leave this module: everything stored or logged
is an HMAC keyed with the app secret and the poll id, so two polls' voters cannot be
joined and a leaked table does not reveal who voted.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from flask import Flask, Request, Response, current_app, g, request
from itsdangerous import BadSignature, Signer

VOTER_COOKIE = "pollbox_voter"
VOTER_COOKIE_SALT = "pollbox-voter"
# Chromium caps cookie lifetimes at 400 days.
VOTER_COOKIE_MAX_AGE_SECONDS = 400 * 24 * 3600
IPV6_GROUP_PREFIX = 64
HASH_HEX_CHARS = 32


@dataclass(frozen=True)
class Voter:
    """The identities a request offers for duplicate checks (raw; hash before use)."""

    cookie_id: str
    cookie_is_new: bool
    address: str


def _host_only(value: str) -> str:
    """`[v6]:port`, `[v6]` and `v4:port`, as some proxies write X-Forwarded-For -> host."""
    value = value.strip()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def client_address(remote_addr: str | None) -> str:
    """Return the client's address, IPv6 grouped to its /64 network."""
    if not remote_addr:
        return "unknown"
    try:
        # Proxies may add brackets or a port; unparsable addresses share one "unknown".
        address = ipaddress.ip_address(_host_only(remote_addr))
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network(f"{address}/{IPV6_GROUP_PREFIX}", strict=False)
        return str(network)
    return str(address)


def keyed_hash(secret: str, poll_id: str, kind: str, value: str) -> str:
    """Return the per-poll keyed hash of one voter identity."""
    message = f"{poll_id}\x00{kind}\x00{value}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return digest[:HASH_HEX_CHARS]


def _signer(secret: str) -> Signer:
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


def set_voter_cookie(response: Response, voter: Voter, *, secure: bool, secret: str) -> None:
    """Set the signed voter cookie: third-party friendly on HTTPS, Lax on plain HTTP."""
    value = _signer(secret).sign(voter.cookie_id).decode()
    if secure:
        response.set_cookie(
            VOTER_COOKIE,
            value,
            max_age=VOTER_COOKIE_MAX_AGE_SECONDS,
            path="/",
            httponly=True,
            secure=True,
            samesite="None",
            partitioned=True,
        )
    else:
        response.set_cookie(
            VOTER_COOKIE,
            value,
            max_age=VOTER_COOKIE_MAX_AGE_SECONDS,
            path="/",
            httponly=True,
            samesite="Lax",
        )


def _issue_new_cookie(response: Response) -> Response:
    voter = g.get("voter")
    if voter is not None and voter.cookie_is_new:
        set_voter_cookie(
            response, voter, secure=request.is_secure, secret=current_app.config["SECRET_KEY"]
        )
    return response


def init_app(app: Flask) -> None:
    app.after_request(_issue_new_cookie)
