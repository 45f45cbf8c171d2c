"""The visitor-facing pages: the widget (HTML, no-JS form vote), embed.js, the share page,
oEmbed and the results SVG."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from babel.numbers import format_percent
from flask import (
    Blueprint,
    current_app,
    g,
    json,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_datetime, format_decimal, get_locale, gettext
from markupsafe import Markup
from marshmallow import ValidationError
from werkzeug.http import http_date

from service import cors, integrity, poll_cache, ratelimits, tallies, voting
from service.api.common import base_url, now
from service.errors import (
    NotFound,
    ServiceError,
    ValidationFailed,
    handle_service_error,
    problem,
)
from service.extensions import db, limiter, redis_handle
from service.identity import Voter, current_voter, keyed_hash
from service.models import Poll
from service.schemas import VoteSchema
from service.widgets import display, i18n, pages, tokens

blp = Blueprint(
    "widgets", __name__, template_folder="templates", static_folder="static",
    static_url_path="/widgets/static",
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
OEMBED_WIDTH = 480
OEMBED_HEIGHT = 400
OEMBED_CACHE_SECONDS = 3600
EMBED_JS_CACHE_SECONDS = 300
SVG_CACHE_SECONDS = 60
SVG_WIDTH = 600
SVG_ROW = 48
SVG_TOP = 64
SVG_BOTTOM = 40
SVG_BAR_LEFT = 16
SVG_BAR_WIDTH = SVG_WIDTH - 2 * SVG_BAR_LEFT
SVG_TITLE_CHARS = 80
SVG_LABEL_CHARS = 70
ETAG_HEX_CHARS = 32
POLL_PATHS = (re.compile(r"^/p/([A-Za-z0-9_-]{1,32})/?$"),
              re.compile(r"^/polls/([A-Za-z0-9_-]{1,32})/widget/?$"))
# Characters XML 1.0 forbids even escaped: they are dropped from SVG text.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
HTML_VIEWS = {"widgets.widget", "widgets.widget_vote", "widgets.share"}


PAGES_EXTENSION = "pollbox.widget_pages"
EMBED_JS_EXTENSION = "pollbox.embed_js"
VOTER_STATES_EXTENSION = "pollbox.widget_voter_states"
# The codes `_messages` knows (an `error=` outside them shows no message).
MESSAGE_CODES = frozenset((
    "duplicate_vote", "poll_closed", "choose_one", "too_many", "invalid", "expired_form",
    "origin_not_allowed", "rate_limited", "unavailable", "network", "not_found",
))


def _messages() -> dict[str, str]:
    """Every message the widget may show for a failed vote, by code, translated."""
    return {
        "duplicate_vote": gettext("You have already voted in this poll."),
        "poll_closed": gettext("This poll is not open for voting."),
        "choose_one": gettext("Please choose an option."),
        "too_many": gettext("Please choose fewer options."),
        "invalid": gettext("Your answer could not be accepted. Please check it and try again."),
        "expired_form": gettext("This form has expired. Please try again."),
        "origin_not_allowed": gettext("Votes from this site are not accepted for this poll."),
        "rate_limited": gettext("Too many votes from your network. Please wait a minute."),
        "unavailable": gettext("Voting is not possible right now. Please try again later."),
        "network": gettext("Your vote could not be sent. Please check your connection."),
        "not_found": gettext("This poll does not exist."),
    }


def _script_texts() -> dict:
    return {
        "errors": _messages(),
        "thanks": gettext("Thank you for voting."),
        "sending": gettext("Sending your vote…"),
        "votes": i18n.plural_forms("%(num)s vote", "%(num)s votes"),
        "total": i18n.plural_forms("Total votes: %(num)s", "Total votes: %(num)s"),
        "other": gettext("Other answers"),
    }


def _result_rows(view: dict) -> list[dict]:
    rows = []
    for option in view["options"]:
        votes, percent = option["votes"], option["percent"]
        rows.append({
            "id": option["id"],
            "label": option["label"],
            "votes": votes,
            "percent": percent,
            "width": 0 if percent is None else min(100.0, percent),
            "text": None if votes is None else gettext(
                "%(percent)s (%(votes)s)",
                percent=format_percent(percent / 100, locale=get_locale(),
                                       decimal_quantization=False),
                votes=i18n.counted("%(num)s vote", "%(num)s votes", votes),
            ),
        })
    return rows


def _results(poll: Poll, counts: tallies.Counts, *, moment: datetime) -> dict:
    view = tallies.tallies_view(
        poll, counts, now=moment, suppressed=tallies.is_suppressed(poll, counts, is_owner=False)
    )
    return {
        "view": view,
        "rows": _result_rows(view),
        "total": i18n.counted("Total votes: %(num)s", "Total votes: %(num)s",
                              view["total_votes"]),
        "other": None if view["other_votes"] is None or not poll.allow_other else
        format_decimal(view["other_votes"]),
    }


def _later_message(poll: Poll) -> str:
    if poll.results == "after_close":
        return gettext("Thank you. The results will be shown when the poll closes.")
    if poll.results == "owner_only":
        return gettext("Thank you. The results of this poll are not public.")
    return gettext("Thank you. The results will be shown later.")


def _widget_url(poll_id: str, params: dict[str, str]) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"{url_for('widgets.widget', poll_id=poll_id)}{query}"


def _apply_locale(poll: Poll, shown: display.Display) -> str:
    tag = i18n.choose_locale(shown.lang, poll.locale)
    i18n.use_locale(tag)
    return tag


@blp.get("/polls/<poll_id>/widget")
def widget(poll_id: str):
    """The poll as a small page for an iframe: the form, or the results."""
    session, moment = db.session, now()
    poll, counts, exact = poll_cache.get_poll_and_counts(
        session=session, redis=redis_handle(), poll_id=poll_id
    )
    shown = display.read_display(request.args, poll, cors.own_origin())
    lang = _apply_locale(poll, shown)
    secret = current_app.config["SECRET_KEY"]
    voter = current_voter()
    just_voted = tokens.is_valid(
        request.args.get("voted"), secret=secret, purpose=tokens.VOTED_PURPOSE,
        poll_id=poll.id, now=moment,
    )
    voted = just_voted or _has_voted(poll, voter, secret=secret,
                                     tally=_counts_key(counts) if exact else None)
    visible = tallies.results_visible(poll, now=moment, is_owner=False, has_voted=lambda: voted)
    status = poll.status_at(moment)
    asked_results = request.args.get("view") == "results" and visible
    show_form = status == "open" and not voted and not asked_results
    error = request.args.get("error", "")
    page = pages.Page(
        poll_id=poll.id, version=poll.version, lang=lang, query=tuple(shown.query().items()),
        status=status, voted=voted, thanked=voted and bool(request.args.get("voted")),
        visible=visible, asked_results=asked_results, show_form=show_form,
        error=error if error in MESSAGE_CODES else None,
        counts=_counts_key(counts) if visible and not show_form else None,
        script_root=request.script_root,
    )
    cached = _pages().get(page) or _render_widget(poll, counts, page, shown, moment=moment)
    nonce = display.new_nonce()
    csrf_token = tokens.issue(secret=secret, purpose=tokens.CSRF_PURPOSE, poll_id=poll.id,
                              now=moment, lifetime=tokens.CSRF_TOKEN_SECONDS)
    response = current_app.response_class(cached.body(nonce, csrf_token), mimetype="text/html")
    response.headers["Content-Security-Policy"] = cached.policy(nonce)
    # Personal (voted or not, a fresh form token): never shared by caches.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    return response


def _has_voted(poll: Poll, voter: Voter, *, secret: str, tally: tuple | None) -> bool:
    """`voting.has_voted`, remembered per process while the poll's tally is unchanged."""
    if tally is None or poll.version is None:
        return voting.has_voted(session=db.session, poll=poll, voter=voter, secret=secret)
    cookie = None if voter.cookie_is_new else keyed_hash(secret, poll.id, "cookie",
                                                          voter.cookie_id)
    key = (poll.id, poll.version, cookie, keyed_hash(secret, poll.id, "ip", voter.address),
           tally)
    states = current_app.extensions[VOTER_STATES_EXTENSION]
    voted = states.get(key)
    if voted is None:
        voted = voting.has_voted(session=db.session, poll=poll, voter=voter, secret=secret)
        states.put(key, voted)
    return voted


def _counts_key(counts: tallies.Counts) -> tuple:
    return (counts.total, counts.other, tuple(sorted(counts.options.items())), counts.updated)


def _pages() -> pages.PageCache:
    return current_app.extensions[PAGES_EXTENSION]


def _render_widget(poll: Poll, counts: tallies.Counts, page: pages.Page,
                   shown: display.Display, *, moment: datetime) -> pages.RenderedPage:
    """Render the widget page with markers where the request's nonce and form token go,
    and keep it."""
    cache = _pages()
    results = _results(poll, counts, moment=moment) if page.counts is not None else None
    voted, visible, status = page.voted, page.visible, page.status
    notice = None
    if page.thanked:
        notice = gettext("Thank you for voting.") if visible else _later_message(poll)
    elif voted:
        notice = gettext("You have already voted in this poll.") if visible else \
            _later_message(poll)
    elif status == "scheduled":
        notice = gettext("This poll opens on %(when)s.",
                         when=format_datetime(poll.opens_at, "medium"))
    elif status == "closed":
        notice = gettext("This poll is closed.")
    query = dict(page.query)
    config = {
        "pollId": poll.id,
        "lang": page.lang,
        "origin": shown.origin,
        "context": shown.context,
        "title": gettext("Poll: %(question)s", question=poll.question),
        "voteUrl": url_for("votes.Votes", poll_id=poll.id),
        "talliesUrl": url_for("tallies.Tallies", poll_id=poll.id),
        "streamUrl": url_for("stream.TalliesStream", poll_id=poll.id),
        "live": results is not None and status == "open",
        "hiddenText": _later_message(poll),
        "maxChoices": poll.max_choices,
        "allowOther": poll.allow_other,
        "texts": _script_texts(),
    }
    body = render_template(
        "widgets/widget.html",
        poll=poll, lang=page.lang, direction=i18n.text_direction(page.lang), shown=shown,
        nonce=cache.nonce_mark, show_form=page.show_form, results=results,
        error=_messages()[page.error] if page.error else None, notice=notice,
        can_view_results=page.show_form and visible,
        results_url=_widget_url(poll.id, {**query, "view": "results"}),
        vote_again_url=_widget_url(poll.id, query) if page.asked_results else None,
        action=_widget_url(poll.id, query),
        csrf_token=cache.token_mark,
        config=config,
    )
    return cache.put(page, body, display.widget_policy(poll, cache.nonce_mark))


def _form_vote(poll: Poll, shown: display.Display) -> dict:
    """The form's fields as the JSON API's vote, validated by the same schema."""
    raw_choices = request.form.getlist("choice")
    other = (request.form.get("other") or "").strip() or None
    comment = (request.form.get("comment") or "").strip() or None
    if not raw_choices and not (other and poll.allow_other):
        raise ValidationFailed({"choices": ["Choose at least one option."]}, detail="choose_one")
    if len(raw_choices) > poll.max_choices:
        raise ValidationFailed({"choices": ["Too many options."]}, detail="too_many")
    try:
        choices = [int(choice) for choice in raw_choices]
        return VoteSchema().load({
            "choices": choices, "other": other if poll.allow_other else None,
            "comment": comment if poll.allow_comment else None, "context": shown.context,
        })
    except (ValueError, ValidationError):
        raise ValidationFailed({"_form": ["Invalid vote."]}, detail="invalid") from None


@blp.post("/polls/<poll_id>/widget")
@limiter.limit(ratelimits.vote_limit, on_breach=ratelimits.count_refusal)
def widget_vote(poll_id: str):
    """The no-JS vote: check the form token, vote as the JSON API does, and answer 303
    back to the widget, which then shows the results or the error."""
    session, redis, moment = db.session, redis_handle(), now()
    poll = poll_cache.get_poll_snapshot(session=session, redis=redis, poll_id=poll_id)
    shown = display.read_display(request.args, poll, cors.own_origin())
    query = shown.query()
    secret = current_app.config["SECRET_KEY"]

    def back(**extra: str):
        return redirect(_widget_url(poll.id, {**query, **extra}), code=303)

    if not tokens.is_valid(request.form.get("csrf_token"), secret=secret,
                           purpose=tokens.CSRF_PURPOSE, poll_id=poll.id, now=moment):
        return back(error="expired_form")
    try:
        cors.check_vote_origin(poll)
        vote = _form_vote(poll, shown)
        voting.cast_vote(session=session, redis=redis, poll=poll, vote=vote,
                         voter=current_voter(), secret=secret, now=moment)
    except ServiceError as error:
        integrity.record_refusal(redis=redis, poll_id=poll.id, error=error, at=moment)
        code = error.code
        if isinstance(error, ValidationFailed):
            code = error.detail if error.detail in ("choose_one", "too_many") else "invalid"
        return back(error=code)
    integrity.record(redis=redis, poll_id=poll.id, outcome=integrity.ACCEPTED, at=moment)
    return back(voted=tokens.issue(secret=secret, purpose=tokens.VOTED_PURPOSE,
                                   poll_id=poll.id, now=moment,
                                   lifetime=tokens.VOTED_TOKEN_SECONDS))


@blp.get("/p/<poll_id>")
def share(poll_id: str):
    """A page to link to: Open Graph tags, the oEmbed discovery link, and the widget."""
    session, moment = db.session, now()
    poll, counts, _exact = poll_cache.get_poll_and_counts(
        session=session, redis=redis_handle(), poll_id=poll_id
    )
    lang = _apply_locale(poll, display.read_display(request.args, poll, cors.own_origin()))
    base = base_url()
    share_url = f"{base}/p/{poll.id}"
    total = None
    if tallies.results_visible(poll, now=moment, is_owner=False, has_voted=lambda: False):
        total = counts.total
    description = (
        i18n.counted("%(num)s vote so far. Cast yours.", "%(num)s votes so far. Cast yours.",
                     total)
        if total is not None else gettext("Cast your vote.")
    )
    nonce = display.new_nonce()
    body = render_template(
        "widgets/share.html",
        poll=poll, lang=lang, direction=i18n.text_direction(lang), nonce=nonce,
        share_url=share_url, description=description,
        widget_url=f"{base}/polls/{poll.id}/widget",
        oembed_url=f"{base}/oembed?url={quote(share_url, safe='')}&format=json",
        svg_url=f"{base}/polls/{poll.id}/results.svg",
        embed_js_url=f"{base}/embed.js",
    )
    response = current_app.response_class(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = display.share_policy(nonce)
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


def _poll_id_of_url(url: str | None) -> str | None:
    """The poll id named by one of our widget or share URLs, else None."""
    if not url:
        return None
    try:
        parts, ours = urlsplit(url), urlsplit(base_url())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != ours.netloc.lower():
        return None
    for pattern in POLL_PATHS:
        found = pattern.match(parts.path)
        if found:
            return found.group(1)
    return None


def _positive_int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed({name: ["Must be a positive integer."]})
    return int(raw)


@blp.get("/oembed")
def oembed():
    """oEmbed 1.0 `rich` answer for a widget or share URL."""
    if request.args.get("format", "json") != "json":
        return problem(501, "not_implemented", "Only format=json is served.")
    max_width, max_height = _positive_int("maxwidth"), _positive_int("maxheight")
    poll_id = _poll_id_of_url(request.args.get("url"))
    if poll_id is None:
        raise NotFound("No poll at this URL.")
    poll = poll_cache.get_poll_snapshot(session=db.session, redis=redis_handle(),
                                        poll_id=poll_id)
    width = min(OEMBED_WIDTH, max_width or OEMBED_WIDTH)
    height = min(OEMBED_HEIGHT, max_height or OEMBED_HEIGHT)
    base = base_url()
    title = f"Poll: {poll.question}"
    html = Markup(
        '<iframe src="{src}" title="{title}" width="{width}" height="{height}" '
        'loading="lazy" style="border:0;max-width:100%"></iframe>'
    ).format(src=f"{base}/polls/{poll.id}/widget", title=title, width=width, height=height)
    answer = {
        "version": "1.0",
        "type": "rich",
        "title": poll.question,
        "provider_name": "Pollbox",
        "provider_url": f"{base}/",
        "cache_age": OEMBED_CACHE_SECONDS,
        "html": str(html),
        "width": width,
        "height": height,
    }
    response = current_app.response_class(json.dumps(answer), mimetype="application/json")
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = f"public, max-age={OEMBED_CACHE_SECONDS}"
    return response


def _svg_text(value: str, limit: int) -> str:
    value = NOT_XML.sub("", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


@blp.get("/polls/<poll_id>/results.svg")
def results_svg(poll_id: str):
    """The current results as an SVG bar chart (for emails, READMEs: no script)."""
    session, moment = db.session, now()
    poll, counts, _exact = poll_cache.get_poll_and_counts(
        session=session, redis=redis_handle(), poll_id=poll_id
    )
    lang = _apply_locale(poll, display.read_display(request.args, poll, cors.own_origin()))
    visible = tallies.results_visible(poll, now=moment, is_owner=False,
                                      has_voted=lambda: False)
    results = _results(poll, counts, moment=moment) if visible else None
    rows = results["rows"] if results else []
    shown_rows = rows if results and not results["view"]["suppressed"] else []
    height = SVG_TOP + SVG_ROW * len(shown_rows) + SVG_BOTTOM + (24 if not shown_rows else 0)
    body = render_template(
        "widgets/results.svg",
        lang=lang, width=SVG_WIDTH, height=height, row_height=SVG_ROW, top=SVG_TOP,
        left=SVG_BAR_LEFT, bar_width=SVG_BAR_WIDTH,
        question=_svg_text(poll.question, 10_000),
        heading=_svg_text(poll.question, SVG_TITLE_CHARS),
        rows=[{**row, "label": _svg_text(row["label"], SVG_LABEL_CHARS),
               "full_label": _svg_text(row["label"], 10_000)} for row in shown_rows],
        total=results["total"] if results else None,
        message=None if shown_rows else (
            gettext("Per-option results are shown once enough people have voted.")
            if results else gettext("The results of this poll are not shown yet.")
        ),
    )
    response = current_app.response_class(body, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = display.SVG_POLICY
    response.headers["Cache-Control"] = f"public, max-age={SVG_CACHE_SECONDS}"
    response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:ETAG_HEX_CHARS])
    response.vary.add("Accept-Language")
    return response.make_conditional(request)


@blp.get("/embed.js")
def embed_js():
    """The loader a host page includes: it turns its script tag into a sized iframe."""
    asset: StaticAsset = current_app.extensions[EMBED_JS_EXTENSION]
    response = current_app.response_class(asset.body, mimetype="text/javascript",
                                          headers=asset.headers)
    if "If-None-Match" in request.headers or "If-Modified-Since" in request.headers:
        return response.make_conditional(request)
    return response


@dataclass(frozen=True)
class StaticAsset:
    """A file served as it was when the app started: read, hashed and dated once."""

    body: bytes
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def load(cls, path: Path, *, max_age: int, cross_origin: bool) -> StaticAsset:
        body = path.read_bytes()
        headers = [
            ("Cache-Control", f"public, max-age={max_age}"),
            ("ETag", f'"{hashlib.sha256(body).hexdigest()[:ETAG_HEX_CHARS]}"'),
            ("Last-Modified", http_date(path.stat().st_mtime)),
        ]
        if cross_origin:
            headers += [("Cross-Origin-Resource-Policy", "cross-origin"),
                        ("Access-Control-Allow-Origin", "*")]
        return cls(body, tuple(headers))


@blp.after_request
def _common_headers(response):
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.errorhandler(429)
def _rate_limited(error):
    """The no-JS vote, refused by the rate limit, goes back to the widget with the reason."""
    if request.endpoint != "widgets.widget_vote":
        return error
    query = {**request.args.to_dict(), "error": "rate_limited"}
    query.pop("voted", None)
    return redirect(_widget_url(request.view_args["poll_id"], query), code=303)


@blp.errorhandler(ServiceError)
def _error_page(error: ServiceError):
    """The pages a visitor sees get an HTML error page in their language; the rest
    (oEmbed, SVG) keep problem+json."""
    if request.endpoint not in HTML_VIEWS:
        return handle_service_error(error)
    if "widget_locale" not in g:
        i18n.use_locale(i18n.choose_locale(request.args.get("lang")))
    lang = g.widget_locale
    message = _messages().get(error.code) or gettext("Something went wrong.")
    nonce = display.new_nonce()
    body = render_template("widgets/error.html", lang=lang,
                           direction=i18n.text_direction(lang), message=message, nonce=nonce)
    response = current_app.response_class(body, status=error.status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'"
    )
    response.headers.update(error.headers)
    return response
