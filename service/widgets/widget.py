"""The widget: the poll as a small page for an iframe (the form, or the results), and the
no-JS form's vote, cast through the vote use-case as the JSON API casts it."""

from __future__ import annotations

from datetime import datetime

from flask import current_app, redirect, render_template, request, url_for
from flask_babel import format_datetime, gettext
from marshmallow import ValidationError

from service.infra import kinds
from service.infra.clock import now
from service.infra.db import db
from service.infra.errors import ServiceError, ValidationFailed
from service.infra.identity import Voter
from service.infra.models import challenge_on, is_full
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.tallies.counts import Counts
from service.tallies.results import results_visible
from service.voting.app import voting
from service.voting.ballot import Ballot
from service.voting.cast import Refused
from service.voting.change import change
from service.voting.records import own_ballot, voted_as, voted_identities
from service.voting.schemas import VoteSchema
from service.web.urls import own_origin
from service.web.voter import current_voter, vote_facts
from service.webhooks.dispatcher import announce_change
from service.widgets import display, i18n, order, pages, tokens
from service.widgets.blueprint import blp
from service.widgets.texts import (
    MESSAGE_CODES,
    apply_locale,
    full_message,
    later_message,
    messages,
    needs_script,
    scale_form,
    script_texts,
    shown_results,
    widget_url,
)

PAGES_EXTENSION = "pollbox.widget_pages"
VOTER_STATES_EXTENSION = "pollbox.widget_voter_states"
VOTE_SCHEMA = VoteSchema()


@blp.get("/polls/<id:poll_id>/widget")
def widget(poll_id: str):
    """The poll as a small page for an iframe: the form, or the results."""
    session, moment = db.session, now()
    secret = current_app.config["SECRET_KEY"]
    voter = current_voter()
    # Back from a vote: the tally is read past the process's cache (read-your-writes).
    just_voted = tokens.is_voted(request.args.get("voted"), secret=secret, poll_id=poll_id,
                                 voter=voter, now=moment)
    poll, counts, exact = poll_cache.get_poll_and_counts(
        session=session, redis=redis_handle(), poll_id=poll_id,
        fresh=just_voted or request.asks_fresh)
    shown = display.read_display(request.args, poll, own_origin())
    lang = apply_locale(poll, shown)
    voted = just_voted or _has_voted(poll, voter, secret=secret,
                                     tally=_counts_key(counts) if exact else None)
    visible = results_visible(poll, now=moment, is_owner=False, has_voted=lambda: voted)
    status = poll.status_at(moment)
    asked_results = request.args.get("view") == "results" and visible
    # Only the browser that voted (its cookie, never its address) may change its vote.
    can_change = (voted and status == "open" and poll.allow_change
                  and own_ballot(session=session, poll=poll, voter=voter,
                                 secret=secret) is not None)
    changing = can_change and request.args.get("change") == "1"
    show_form = status == "open" and (not voted or changing) and not asked_results
    error = request.args.get("error", "")
    page = pages.Page(
        poll_id=poll.id, version=poll.version, lang=lang, query=tuple(shown.query().items()),
        status=status, voted=voted, thanked=voted and bool(request.args.get("voted")),
        can_change=can_change, changing=changing,
        changed=just_voted and request.args.get("changed") == "1",
        visible=visible, asked_results=asked_results, show_form=show_form,
        error=error if error in MESSAGE_CODES else None,
        counts=_counts_key(counts) if visible and not show_form else None,
        script_root=request.script_root,
        order=order.option_order(poll, voter, secret=secret) if show_form else None,
        challenge=show_form and challenge_on(poll, moment),
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


def _has_voted(poll, voter: Voter, *, secret: str, tally: tuple | None) -> bool:
    """`records.has_voted`, remembered per process while the poll's tally is unchanged."""
    identities = voted_identities(poll=poll, voter=voter, secret=secret)
    if tally is None or poll.version is None:
        return voted_as(session=db.session, poll_id=poll.id, identities=identities)
    key = (poll.id, poll.version, identities, tally)
    states = current_app.extensions[VOTER_STATES_EXTENSION]
    voted = states.get(key)
    if voted is None:
        voted = voted_as(session=db.session, poll_id=poll.id, identities=identities)
        states.put(key, voted)
    return voted


def _counts_key(counts: Counts) -> tuple:
    return (counts.total, counts.other, tuple(sorted(counts.options.items())), counts.updated)


def _pages() -> pages.PageCache:
    return current_app.extensions[PAGES_EXTENSION]


def _render_widget(poll, counts: Counts, page: pages.Page,
                   shown: display.Display, *, moment: datetime) -> pages.RenderedPage:
    """Render the widget page with markers where the request's nonce and form token go,
    and keep it."""
    cache = _pages()
    results = shown_results(poll, counts, moment=moment) if page.counts is not None else None
    voted, visible, status = page.voted, page.visible, page.status
    notice = None
    if page.changed:
        notice = gettext("Your vote has been changed.")
    elif page.thanked:
        notice = gettext("Thank you for voting.") if visible else later_message(poll)
    elif voted:
        notice = gettext("You have already voted in this poll.") if visible else \
            later_message(poll)
    elif status == "scheduled":
        notice = gettext("This poll opens on %(when)s.",
                         when=format_datetime(poll.opens_at, "medium"))
    elif status == "closed":
        notice = full_message() if is_full(poll) else gettext("This poll is closed.")
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
        "hiddenText": later_message(poll),
        "maxChoices": poll.max_choices,
        "ranked": kinds.of(poll.kind).ordered,
        "allowOther": poll.allow_other,
        "texts": script_texts(),
        # The proof of work: solved ahead while it is on, and whenever a vote is told
        # `challenge_required` (an `auto` poll switched on since the page was made).
        "challenge": page.challenge,
        "challengeUrl": url_for("votes.Challenge", poll_id=poll.id),
        "powWorkerUrl": url_for("widgets.static", filename="altcha/sha.js"),
        # Changing one's vote: the script keeps the receipt of a vote it sent (this
        # browser's only) and changes the vote with it; without one, the form posts.
        "allowChange": bool(poll.allow_change and status == "open"),
        "changing": page.changing,
        "receiptsUrl": url_for("receipts.Receipt", receipt="R").rsplit("/", 1)[0] + "/",
    }
    body = render_template(
        "widgets/widget.html",
        poll=poll, options=order.ordered(poll.options, page.order),
        lang=page.lang, direction=i18n.text_direction(page.lang), shown=shown,
        nonce=cache.nonce_mark, show_form=page.show_form, results=results,
        error=messages()[page.error] if page.error else None, notice=notice,
        can_view_results=page.show_form and visible,
        results_url=widget_url(poll.id, {**query, "view": "results"}),
        vote_again_url=widget_url(poll.id, query) if page.asked_results else None,
        action=(url_for("widgets.widget_change", poll_id=poll.id, **query) if page.changing
                else widget_url(poll.id, query)),
        changing=page.changing,
        change_url=(widget_url(poll.id, {**query, "change": "1"})
                    if page.can_change and not page.show_form else None),
        csrf_token=cache.token_mark,
        config=config, challenge=page.challenge, needs_script=needs_script(),
        ranked=kinds.of(poll.kind).ordered,
        scale=scale_form(poll), one_choice=kinds.of(poll.kind).one_choice,
    )
    return cache.put(page, body, display.widget_policy(poll, cache.nonce_mark))


def _form_ballot(poll, shown: display.Display) -> Ballot:
    """The form's fields as the JSON API's vote, validated by the same schema; a
    ValidationFailed's detail is the widget's message code."""
    raw_choices = (_ranked_choices(poll) if kinds.of(poll.kind).ordered
                   else request.form.getlist("choice"))
    other = (request.form.get("other") or "").strip() or None
    comment = (request.form.get("comment") or "").strip() or None
    if not raw_choices and not (other and poll.allow_other):
        raise ValidationFailed({"choices": ["Choose at least one option."]}, detail="choose_one")
    if len(raw_choices) > poll.max_choices:
        raise ValidationFailed({"choices": ["Too many options."]}, detail="too_many")
    try:
        choices = [int(choice) for choice in raw_choices]
        return Ballot.from_fields(VOTE_SCHEMA.load({
            "choices": choices, "other": other if poll.allow_other else None,
            "comment": comment if poll.allow_comment else None, "context": shown.context,
            "altcha": request.form.get("altcha") or None,
        }))
    except (ValueError, ValidationError):
        raise ValidationFailed({"_form": ["Invalid vote."]}, detail="invalid") from None


def _ranked_choices(poll) -> list[str]:
    """A ranked poll's form: one `rank-<option id>` select per option (1..max_choices, or
    empty: not ranked), as the option ids in order of preference. The ranks must be given
    once each, from 1 without a gap."""
    ranks: dict[int, str] = {}
    for option in poll.options:
        value = (request.form.get(f"rank-{option.id}") or "").strip()
        if not value:
            continue
        if not value.isdecimal() or not 1 <= int(value) <= poll.max_choices:
            raise ValidationFailed({"choices": ["Invalid rank."]}, detail="invalid")
        if int(value) in ranks:
            raise ValidationFailed({"choices": ["A rank was given twice."]},
                                   detail="rank_repeated")
        ranks[int(value)] = str(option.id)
    if ranks and sorted(ranks) != list(range(1, len(ranks) + 1)):
        raise ValidationFailed({"choices": ["The ranks have a gap."]}, detail="rank_gap")
    return [ranks[rank] for rank in sorted(ranks)]


@blp.post("/polls/<id:poll_id>/widget")
def widget_vote(poll_id: str):
    """The no-JS vote: check the form token, cast the vote as the JSON API does (one
    rate limit, one count of outcomes), and answer 303 back to the widget, which then
    shows the results or the error."""
    moment, secret = now(), current_app.config["SECRET_KEY"]
    poll = poll_cache.get_poll_snapshot(session=db.session, redis=redis_handle(),
                                        poll_id=poll_id)
    shown = display.read_display(request.args, poll, own_origin())
    query = shown.query()
    casting, facts = voting(), vote_facts(keyed=False)

    def back(**extra: str):
        return redirect(widget_url(poll.id, {**query, **extra}), code=303)

    try:
        if not tokens.is_valid(request.form.get("csrf_token"), secret=secret,
                               purpose=tokens.CSRF_PURPOSE, poll_id=poll.id, now=moment):
            raise ValidationFailed({"csrf_token": ["Expired."]}, detail="expired_form")
        ballot = _form_ballot(poll, shown)
    except ValidationFailed as unparsed:  # an attempt all the same
        limited = casting.count_unparsed(poll_id=poll.id, facts=facts)
        return back(error=unparsed.detail if limited is None else limited.error.code)
    result = casting.cast(poll_id=poll.id, ballot=ballot, facts=facts)
    if isinstance(result, Refused):
        error = result.error
        return back(error="invalid" if isinstance(error, ValidationFailed) else error.code)
    return back(voted=tokens.issue_voted(secret=secret, poll_id=poll.id, voter=facts.voter,
                                         now=moment))


@blp.post("/polls/<id:poll_id>/widget/change")
def widget_change(poll_id: str):
    """The no-JS change of this browser's own vote (its voter cookie's ballot): check the
    form token, change the vote as the JSON API does, and answer 303 back to the widget."""
    moment, secret = now(), current_app.config["SECRET_KEY"]
    session = db.session
    poll = poll_cache.get_poll_snapshot(session=session, redis=redis_handle(),
                                        poll_id=poll_id)
    shown = display.read_display(request.args, poll, own_origin())
    query = shown.query()

    def back(**extra: str):
        return redirect(widget_url(poll.id, {**query, **extra}), code=303)

    voter = current_voter()
    try:
        if not tokens.is_valid(request.form.get("csrf_token"), secret=secret,
                               purpose=tokens.CSRF_PURPOSE, poll_id=poll.id, now=moment):
            raise ValidationFailed({"csrf_token": ["Expired."]}, detail="expired_form")
        ballot = _form_ballot(poll, shown)
    except ValidationFailed as unparsed:
        return back(error=unparsed.detail, change="1")
    row = own_ballot(session=session, poll=poll, voter=voter, secret=secret)
    if row is None:
        return back(error="no_vote")
    try:
        changed = change(session=session, redis=redis_handle(), row=row, now=moment,
                         ballot=Ballot(choices=ballot.choices, other=ballot.other,
                                       comment=ballot.comment))
    except ServiceError as error:
        code = "invalid" if isinstance(error, ValidationFailed) else error.code
        return back(error=code, **({"change": "1"} if code == "invalid" else {}))
    announce_change(session=session, ballot_id=changed["vote"]["id"], now=moment)
    return back(voted=tokens.issue_voted(secret=secret, poll_id=poll.id, voter=voter,
                                         now=moment), changed="1")
