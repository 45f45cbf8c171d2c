"""Console sign-in: the session cookie, CSRF, rate-limited sign-in and security headers.

The owner signs in with an API key, checked exactly as the API's bearer auth checks it
(its SHA-256 against the active keys). The cookie carries only a random session id,
recorded server-side (`sessions`): signing out revokes it, so a copied cookie stops
working at once; every request also re-reads the session's key, so rotating or revoking
it (`flask owners keys rotate`) signs the console out at once.

The session cookie is chosen per request (`ConsoleSessionInterface`): on HTTPS it is
`__Host-pollbox_console` (Secure, Path=/, no Domain, as the `__Host-` prefix demands);
on plain http (local development) it is `pollbox_console` without Secure, since browsers
refuse a `__Host-` cookie that is not Secure. Both are HttpOnly and SameSite=Lax.
Behind a TLS-terminating proxy set TRUSTED_PROXY_COUNT so `request.is_secure` is true.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from flask import (
    Flask,
    Request,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup, escape
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from service import owners
from service.console import bp, sessions
from service.infra import errors
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import InsufficientScope, ServiceError
from service.infra.identity import client_address, keyed_hash
from service.infra.models import ApiKey, Owner
from service.infra.redis import redis_handle
from service.web.limiter import limiter
from service.web.owner import READ_METHODS, note_key_use

log = logging.getLogger(__name__)

SECURE_COOKIE_NAME = "__Host-pollbox_console"
PLAIN_COOKIE_NAME = "pollbox_console"
SESSION_ID_FIELD = "sid"  # the cookie's server-side session id (service.console.sessions)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_TOKEN_BYTES = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    # the live preview is the widget, same origin, in an iframe
    "frame-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ERROR_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Please check the request",
    503: "Unavailable",
    429: "Too many attempts",
}


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its cookie named and flagged per request. Only the
    console has a session: elsewhere (votes, tallies, widgets) the cookie is not even
    read, which spares every other request its signature check."""

    def open_session(self, app: Flask, request: Request):
        if not request.path.startswith(bp.url_prefix):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_name(self, app: Flask) -> str:
        return SECURE_COOKIE_NAME if request.is_secure else PLAIN_COOKIE_NAME

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure

    def get_cookie_domain(self, app: Flask) -> None:
        return None  # `__Host-` forbids Domain; the console lives on one host

    def get_cookie_path(self, app: Flask) -> str:
        return "/"

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True

    def get_cookie_samesite(self, app: Flask) -> str:
        return "Lax"


# --- CSRF -------------------------------------------------------------------------------


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(CSRF_TOKEN_BYTES)
    return token


def csrf_field() -> Markup:
    """The hidden input every console `<form method="post">` carries."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        CSRF_FIELD, escape(csrf_token())
    )


@bp.before_request
def check_csrf() -> None:
    """Refuse any state-changing console request without the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        abort(400, "This form has expired or did not come from the console. "
                   "Go back, reload the page and try again.")


# --- who is signed in -------------------------------------------------------------------


def signed_in_key() -> ApiKey | None:
    """The key of the cookie's session while that session is live and its key active."""
    if "console_key" in g:
        return g.console_key
    key = None
    session_id = session.get(SESSION_ID_FIELD)
    if isinstance(session_id, str):
        key = sessions.key_of(session=db.session, redis=redis_handle(),
                              session_id=session_id, now=now())
        if key is not None:
            note_key_use(key)
    g.console_key = key
    g.console_owner = None if key is None else key.owner
    return key


def signed_in_owner() -> Owner | None:
    """The owner signed in to the console, or None."""
    key = signed_in_key()
    return None if key is None else key.owner


def may(scope: str) -> bool:
    """Whether the signed-in key may act in `scope` (templates hide what it may not do)."""
    key = signed_in_key()
    return key is not None and owners.scope_allows(key.scope, scope)


def owner_required(view: Callable) -> Callable:
    """Console views: send visitors to sign in. A change (any method but GET) needs a
    `write` key: a `read` key signs in to a console that only shows."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if signed_in_owner() is None:
            if session.get(SESSION_ID_FIELD) is not None:
                # Recorded too: a session Redis forgot may still be live in the database.
                _end_session()
                flash("Your session has ended. Please sign in again.", "error")
            return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
        if request.method not in READ_METHODS:
            _require_scope("write")
        return view(*args, **kwargs)

    return wrapped


def _require_scope(scope: str) -> None:
    key = signed_in_key()
    if key is not None and not owners.scope_allows(key.scope, scope):
        raise InsufficientScope(f"You are signed in with a '{key.scope}' key; this page "
                                f"needs a '{scope}' key.")


def scope_required(scope: str) -> Callable[[Callable], Callable]:
    """Console views (under `owner_required`) that need more than `read` even to show:
    the forms of changes need `write`, the keys page `admin`."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            _require_scope(scope)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _safe_next(target: str | None) -> str:
    """Only a plain path inside the console may follow sign-in: no other site, no other
    part of this one, nothing a header could be split with (CR, LF or any other control
    character), no `//`, backslash or dot segment that a browser would resolve elsewhere.
    Anything else goes to the console's home."""
    fallback = url_for("console.polls_index")
    if not target or not target.isprintable() or "\\" in target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(bp.url_prefix + "/"):
        return fallback
    # Browsers read `%2e` as `.` in a path: check the segments as they will resolve.
    segments = unquote(parts.path).split("/")[1:]
    if "" in segments[:-1] or {".", ".."} & set(segments):
        return fallback
    return target


# --- sign in / out ----------------------------------------------------------------------


def signin_limit() -> str:
    """Sign-in attempts allowed per client address (CONSOLE_SIGNIN_LIMIT)."""
    return current_app.config["CONSOLE_SIGNIN_LIMIT"]


def signin_client_key() -> str:
    """Sign-in attempts are counted per client address (IPv6 by /64), hashed."""
    address = client_address(request.remote_addr)
    return keyed_hash(current_app.config["SECRET_KEY"], "console", "signin", address)


@bp.get("/")
def index():
    return redirect(url_for("console.polls_index"))


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(signin_limit, key_func=signin_client_key, methods=["POST"])
def sign_in():
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if signed_in_owner() is not None:
            return redirect(next_url)
        return render_template("console/sign_in.html", next=next_url, error=None)
    key = request.form.get("api_key", "").strip()
    api_key = owners.active_key(session=db.session, key=key) if key else None
    if api_key is None:
        error = ("Enter your API key." if not key
                 else "This API key is not valid (unknown or revoked).")
        return render_template("console/sign_in.html", next=next_url, error=error), 401
    key_id, name = api_key.id, api_key.owner.name
    # A fresh session on sign-in: nothing from before (a planted CSRF token, a session
    # of another key) survives.
    _end_session()
    session[SESSION_ID_FIELD] = sessions.start(session=db.session, redis=redis_handle(),
                                               key_id=key_id, now=now())
    csrf_token()
    flash(f"Signed in as {name}.", "success")
    return redirect(next_url)


def _end_session() -> None:
    """Revoke the cookie's session, if any (recorded before the cookie forgets it), and
    empty the cookie."""
    session_id = session.get(SESSION_ID_FIELD)
    if isinstance(session_id, str):
        sessions.end(session=db.session, redis=redis_handle(), session_id=session_id,
                     now=now())
    session.clear()


@bp.post("/sign-out")
def sign_out():
    _end_session()
    flash("You are signed out.", "success")
    return redirect(url_for("console.sign_in"))


# --- errors and headers -----------------------------------------------------------------


def render_error(status: int, message: str,
                 errors: dict[str, list[str]] | None = None) -> tuple[str, int]:
    """An HTML error page in the console's look (with the fields at fault, if any)."""
    title = ERROR_TITLES.get(status, "Something went wrong")
    return render_template("console/error.html", status=status, title=title,
                           message=message, errors=errors), status


@bp.errorhandler(HTTPException)
def handle_http_error(error: HTTPException):
    status = error.code or 500
    if status >= 500:
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("unhandled console error", exc_info=original)
        return render_error(500, "The console could not complete the request.")
    if status == 429:  # Retry-After is added by service.ratelimits
        return render_error(429, "Too many sign-in attempts from your network. "
                                 "Please wait a minute and try again.")
    return render_error(status, error.description or "")


@bp.errorhandler(ServiceError)
def handle_service_error(error: ServiceError):
    page, status = render_error(error.status, error.detail, getattr(error, "errors", None))
    return page, status, error.headers


@bp.errorhandler(DBAPIError)
def handle_database_error(error: DBAPIError):
    """The API's decision (503 while the database is away, logged), as a page."""
    answer = errors.handle_database_error(error)
    detail = answer.get_json(force=True).get("detail") or ""
    return render_error(answer.status_code, detail)[0], answer.status_code, {
        name: value for name, value in answer.headers.items() if name == "Retry-After"}


def _in_console() -> bool:
    return request.path == bp.url_prefix or request.path.startswith(bp.url_prefix + "/")


def _routing_error(error: HTTPException):
    """Unknown console URLs and methods fail before a blueprint is chosen, so the app's
    problem+json handler would answer them: the console's get its HTML page."""
    if _in_console():
        return handle_http_error(error)
    return errors.handle_http_exception(error)


def _security_headers(response: Response) -> Response:
    if _in_console():
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Console settings, the per-request session cookie, headers and template helpers."""
    app.session_interface = ConsoleSessionInterface()
    app.after_request(_security_headers)
    for routing_error in (NotFound, MethodNotAllowed):
        app.register_error_handler(routing_error, _routing_error)
    app.jinja_env.globals["csrf_field"] = csrf_field
    app.jinja_env.globals["may"] = may
