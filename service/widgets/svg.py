"""The current results as an SVG bar chart (for emails and READMEs: no script)."""

from __future__ import annotations

import hashlib
import re

from flask import current_app, render_template, request
from flask_babel import gettext

from service.infra.clock import now
from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.tallies.results import results_visible
from service.web import hot
from service.web.urls import own_origin
from service.widgets import display
from service.widgets.blueprint import blp
from service.widgets.texts import apply_locale, shown_results

SVG_CACHE_SECONDS = 60
SVG_WIDTH = 600
SVG_ROW = 48
SVG_TOP = 64
SVG_BOTTOM = 40
# The line under the total saying it includes a baseline ("includes N votes before ...").
SVG_NOTE = 20
SVG_BAR_LEFT = 16
SVG_BAR_WIDTH = SVG_WIDTH - 2 * SVG_BAR_LEFT
SVG_TITLE_CHARS = 80
SVG_LABEL_CHARS = 70
ETAG_HEX_CHARS = 32
# Characters XML 1.0 forbids even escaped: they are dropped from SVG text.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _svg_text(value: str, limit: int) -> str:
    value = NOT_XML.sub("", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


@blp.get("/polls/<id:poll_id>/results.svg")
def results_svg(poll_id: str):
    """The current results as an SVG bar chart (for emails, READMEs: no script). Read
    again, it is answered from memory as the tallies are (web/hot.py)."""
    session, moment = db.session, now()
    read = poll_cache.read_poll_and_counts(session=session, redis=redis_handle(),
                                           poll_id=poll_id)
    poll, counts = read.poll, read.counts
    lang = apply_locale(poll, display.read_display(request.args, poll, own_origin()))
    visible = results_visible(poll, now=moment, is_owner=False,
                                      has_voted=lambda: False)
    results = shown_results(poll, counts, moment=moment) if visible else None
    rows = results["rows"] if results else []
    runoff = results["runoff"] if results else None
    if runoff is not None and runoff["final_rows"]:
        # A ranked poll: the instant runoff's final round, and its winner as the note.
        rows = runoff["final_rows"]
    shown_rows = rows if results and not results["view"]["suppressed"] else []
    baseline = results["baseline"] if results else None
    # Lines under the total: a ranked poll's winner, a scale poll's statistic, then the
    # baseline's note.
    winner = runoff["winner"] if runoff is not None else None
    statistic = results["statistic"] if results else None
    notes = [note for note in (winner, statistic, baseline) if note]
    height = (SVG_TOP + SVG_ROW * len(shown_rows) + SVG_BOTTOM + (24 if not shown_rows else 0)
              + SVG_NOTE * len(notes))
    body = render_template(
        "widgets/results.svg",
        lang=lang, width=SVG_WIDTH, height=height, row_height=SVG_ROW, top=SVG_TOP,
        left=SVG_BAR_LEFT, bar_width=SVG_BAR_WIDTH,
        question=_svg_text(poll.question, 10_000),
        heading=_svg_text(poll.question, SVG_TITLE_CHARS),
        rows=[{**row, "label": _svg_text(row["label"], SVG_LABEL_CHARS),
               "full_label": _svg_text(row["label"], 10_000)} for row in shown_rows],
        total=results["total"] if results else None,
        baseline=baseline, notes=notes, note_height=SVG_NOTE,
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
    if read.entry is not None:
        # Everyone's image (no reader is the owner or has voted here): the same for the
        # same request while the tally and the poll's status stand.
        hot.keep_while_unchanged(poll, None, read.entry, moment)
    return response.make_conditional(request)
