"""The share page: a page to link to, with Open Graph tags, the oEmbed discovery link
and the widget."""

from __future__ import annotations

from urllib.parse import quote

from flask import current_app, render_template, request
from flask_babel import gettext

from service.infra.clock import now
from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.tallies import baseline as baselines
from service.tallies.results import results_visible
from service.web.urls import base_url, own_origin
from service.widgets import display, i18n
from service.widgets.blueprint import blp
from service.widgets.texts import apply_locale


@blp.get("/p/<id:poll_id>")
def share(poll_id: str):
    """A page to link to: Open Graph tags, the oEmbed discovery link, and the widget."""
    session, moment = db.session, now()
    poll, counts, _exact = poll_cache.get_poll_and_counts(
        session=session, redis=redis_handle(), poll_id=poll_id
    )
    lang = apply_locale(poll, display.read_display(request.args, poll, own_origin()))
    base = base_url()
    share_url = f"{base}/p/{poll.id}"
    total = None
    if results_visible(poll, now=moment, is_owner=False, has_voted=lambda: False):
        total = baselines.combined(counts, baselines.of_poll(poll)).total  # as the widget
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
