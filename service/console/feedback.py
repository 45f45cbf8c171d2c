"""Console feedback pages: results per context (page), comments with hide / show, and the
one-click "Was this page helpful?" poll with the snippet every page of a site pastes.

The views only translate HTTP: the work is service/feedback.py's, as for the API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from math import ceil
from urllib.parse import quote

from flask import abort, flash, g, redirect, render_template, request, url_for
from markupsafe import escape
from marshmallow import ValidationError

from service import feedback
from service.console import bp
from service.console.auth import owner_required, scope_required
from service.console.forms import lines
from service.console.paging import page_number, page_size
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import Forbidden, NotFound, ValidationFailed, flatten_messages
from service.infra.models import Poll
from service.infra.redis import redis_handle
from service.polls import manage as polls
from service.polls.embed import LOCALES
from service.web.urls import base_url

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100  # as the API's paginated lists
# The comments filter: `shown=` in the query, `hidden` as service.feedback takes it.
VISIBILITY = {"all": None, "shown": False, "hidden": True}
# The page path the snippets show; the owner puts each page's own path there.
EXAMPLE_PATH = "/docs/install"
IFRAME_HEIGHT = 300
PRESET_FIELDS = ("question", "allowed_origins", "locale")


@dataclass(frozen=True)
class Page:
    """One page of a paginated list: its number, size, query names, and the list's total."""

    number: int
    size: int
    arg: str = "page"
    size_arg: str = "page_size"
    total: int = 0

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def pages(self) -> int:
        return max(1, ceil(self.total / self.size))

    def counted(self, total: int) -> Page:
        return replace(self, total=total)

    def query(self, params: dict, number: int) -> dict:
        """The query of page `number` of this list, keeping the other `params`."""
        size = {self.size_arg: self.size} if self.size != PAGE_SIZE_DEFAULT else {}
        return {**params, self.arg: number, **size}


def requested_page(arg: str = "page", size_arg: str = "page_size") -> Page:
    """The page asked for in the query (`?page=`, `?page_size=` up to 100, as in the API);
    a value that is not a number falls back to the first page, of 20 (see `paging`)."""
    size = page_size(size_arg, default=PAGE_SIZE_DEFAULT, maximum=PAGE_SIZE_MAX)
    return Page(page_number(arg), size, arg, size_arg)


def owned_poll(poll_id: str) -> Poll:
    """The signed-in owner's poll; another owner's is as unknown as a missing one (404)."""
    try:
        return polls.get_owned_poll(session=db.session, poll_id=poll_id, owner=g.console_owner)
    except Forbidden:
        raise NotFound() from None


def page_snippets(poll: Poll, base: str) -> dict[str, str]:
    """What each page of a site pastes: the poll once, the page's path as its context."""
    loader = f"{escape(base)}/embed.js"
    title = escape(f"Poll: {poll.question}")
    widget = f"{escape(base)}/polls/{poll.id}/widget?context={quote(EXAMPLE_PATH, safe='')}"
    return {
        "script": (f'<script async src="{loader}" data-poll="{poll.id}" '
                   f'data-context="{EXAMPLE_PATH}"></script>'),
        "every_page": (
            "<script>\n"
            "  (function (s) {\n"
            f"    s.async = true; s.src = {json.dumps(base + '/embed.js')};\n"
            f'    s.setAttribute("data-poll", {json.dumps(poll.id)});\n'
            '    s.setAttribute("data-context", location.pathname);\n'
            "    document.currentScript.after(s);\n"
            '  })(document.createElement("script"));\n'
            "</script>"
        ),
        "iframe": (f'<iframe src="{widget}" title="{title}" width="100%" '
                   f'height="{IFRAME_HEIGHT}" loading="lazy"></iframe>'),
    }


def _comment_filters() -> dict[str, str]:
    shown = request.args.get("shown", "all")
    return {"context": request.args.get("context", "").strip(),
            "shown": shown if shown in VISIBILITY else "all"}


@bp.get("/polls/<id:poll_id>/feedback")
@owner_required
def poll_feedback(poll_id: str):
    """Results per context, most votes first, and the comments, newest first."""
    poll = owned_poll(poll_id)
    page = requested_page()
    contexts, total = feedback.contexts(session=db.session, poll=poll, offset=page.offset,
                                        limit=page.size)
    filters = _comment_filters()
    comments_page = requested_page("comments_page", "comments_page_size")
    comments, comments_total = feedback.comments(
        session=db.session, poll=poll, context=filters["context"] or None,
        hidden=VISIBILITY[filters["shown"]], offset=comments_page.offset,
        limit=comments_page.size,
    )
    return render_template(
        "console/feedback.html", poll=poll, contexts=contexts, page=page.counted(total),
        comments=comments, comments_page=comments_page.counted(comments_total),
        filters=filters, snippets=page_snippets(poll, base_url()), example_path=EXAMPLE_PATH,
    )


@bp.post("/polls/<id:poll_id>/feedback/comments/<id:vote_id>")
@owner_required
def poll_comment_visibility(poll_id: str, vote_id: str):
    """Hide a comment from every public surface, or show it again; back to the list."""
    poll = owned_poll(poll_id)
    hidden = request.form.get("hidden")
    if hidden not in ("true", "false"):
        abort(400, "Say whether to hide or show the comment.")
    feedback.set_comment_hidden(session=db.session, poll=poll, vote_id=vote_id,
                                hidden=hidden == "true")
    flash("The comment is hidden from the widget and webhooks; it stays in your exports."
          if hidden == "true" else "The comment is shown again.", "success")
    back = {name: request.form[name] for name in ("context", "shown", "comments_page")
            if request.form.get(name)}
    return redirect(url_for("console.poll_feedback", poll_id=poll.id, **back,
                            _anchor="comments"))


def _preset_errors(messages: dict[str, list[str]]) -> dict[str, list[str]]:
    """Field -> messages for the form; an origin's error names its line."""
    errors: dict[str, list[str]] = {}
    for key, found in messages.items():
        field, _, index = key.partition(".")
        if field not in PRESET_FIELDS:
            field = "_form"
        if field == "allowed_origins" and index.isdigit():
            found = [f"Line {int(index) + 1}: {message}" for message in found]
        errors.setdefault(field, []).extend(found)
    return errors


@bp.route("/presets/page-feedback", methods=["GET", "POST"])
@owner_required
@scope_required("write")
def page_feedback_preset():
    """The one-click "Was this page helpful?" poll: Yes / No, an optional comment, one
    poll for a whole site with results per page."""
    form = {"question": "", "allowed_origins": "", "locale": "en"}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = {name: request.form.get(name, default) for name, default in form.items()}
        data = {
            "allowed_origins": lines(form["allowed_origins"]),
            "locale": form["locale"].strip() or "en",
        }
        if form["question"].strip():
            data["question"] = form["question"]
        try:
            poll = feedback.create_page_feedback_poll(
                session=db.session, redis=redis_handle(), owner=g.console_owner, data=data,
                now=now(),
            )
        except ValidationError as error:
            errors = _preset_errors(flatten_messages(error.messages))
        except ValidationFailed as error:
            errors = _preset_errors(error.errors)
        else:
            flash(f"Created \u201c{poll.question}\u201d. Its Feedback page shows the snippet "
                  "to paste on every page and the results per page.", "success")
            return redirect(url_for("console.poll_show", poll_id=poll.id))
    page = render_template(
        "console/feedback_preset.html", form=form, errors=errors, locales=LOCALES,
        default_question=feedback.PAGE_FEEDBACK_QUESTION, example_path=EXAMPLE_PATH,
    )
    return page, 422 if errors else 200
