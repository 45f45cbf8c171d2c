"""oEmbed 1.0: a widget or share URL answered with the iframe that embeds it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app, json, request
from markupsafe import Markup

from service.infra.db import db
from service.infra.errors import NotFound, ValidationFailed, problem
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.web.urls import base_url
from service.widgets.blueprint import blp

OEMBED_WIDTH = 480
OEMBED_HEIGHT = 400
OEMBED_CACHE_SECONDS = 3600
MAX_SIZE_DIGITS = 6
POLL_PATHS = (re.compile(r"^/p/([A-Za-z0-9_-]{1,32})/?$"),
              re.compile(r"^/polls/([A-Za-z0-9_-]{1,32})/widget/?$"))


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
    # ASCII digits only (str.isdigit() takes "²"), and few enough to be a size.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_SIZE_DIGITS or int(raw) < 1:
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
