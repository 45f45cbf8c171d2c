"""What the widget says: its messages for failed votes, the texts its script shows, and
a tally as the widget and the results SVG show it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

from babel.numbers import format_percent
from flask import url_for
from flask_babel import format_date, format_decimal, get_locale, gettext

from service.infra import kinds
from service.tallies import baseline as baselines
from service.tallies.counts import Counts
from service.tallies.results import PERCENT_DECIMALS, is_suppressed, tallies_view
from service.widgets import display, i18n

# The baseline's date, as the widget writes dates (medium, in UTC).
DATE_FORMAT = "medium"

# The codes `messages` knows (an `error=` outside them shows no message).
MESSAGE_CODES = frozenset((
    "duplicate_vote", "poll_closed", "choose_one", "too_many", "invalid", "expired_form",
    "origin_not_allowed", "rate_limited", "unavailable", "network", "not_found",
    "vote_pending", "challenge_required", "poll_full", "change_not_allowed", "no_vote",
    "rank_repeated", "rank_gap",
))


def messages() -> dict[str, str]:
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
        # An earlier attempt's fate is not known yet (409 vote_pending): the script
        # retries by itself; the form without JavaScript asks the visitor to.
        "vote_pending": gettext("Your vote is being recorded. Please try again in a moment."),
        "challenge_required": needs_script(),
        "poll_full": full_message(),
        "change_not_allowed": gettext("This poll does not let you change your vote."),
        "no_vote": gettext("There is no vote from this browser to change."),
        # A ranked poll's form without JavaScript: one select per option.
        "rank_repeated": gettext("Please give each rank to one option only."),
        "rank_gap": gettext("Please rank from 1 upwards without skipping a number."),
    }


def full_message() -> str:
    """What the widget says of a poll that closed itself at its max_votes."""
    return gettext("This poll is full: it has reached its number of votes.")


def needs_script() -> str:
    """What the form says where the poll asks for a proof of work and the browser runs
    no script: plainly, rather than failing silently."""
    return gettext("This poll needs JavaScript to vote: your browser solves a small puzzle "
                   "that keeps automated votes out. Please turn JavaScript on and try "
                   "again.")


def script_texts() -> dict:
    return {
        "errors": messages(),
        "thanks": gettext("Thank you for voting."),
        "change": gettext("Change my vote"),
        "changed": gettext("Your vote has been changed."),
        "sending": gettext("Sending your vote…"),
        "votes": i18n.plural_forms("%(num)s vote", "%(num)s votes"),
        "total": i18n.plural_forms("Total votes: %(num)s", "Total votes: %(num)s"),
        "other": gettext("Other answers"),
        # A ranked poll's ordering buttons and what the live region says after a move.
        "moveUp": gettext("Move up"),
        "moveDown": gettext("Move down"),
        "moveUpLabel": gettext("Move up: %(label)s", label="{label}"),
        "moveDownLabel": gettext("Move down: %(label)s", label="{label}"),
        "position": gettext("%(label)s, position %(position)s of %(count)s",
                            label="{label}", position="{position}", count="{count}"),
        "winner": gettext("Winner after the instant runoff: %(label)s", label="{label}"),
        # `{date}`: the baseline's `as_of`, a medium date in UTC (Intl.DateTimeFormat).
        "baseline": i18n.plural_forms("includes %(num)s vote before %(date)s",
                                      "includes %(num)s votes before %(date)s",
                                      date="{date}"),
        # A scale poll's statistic under its results; the script fills in the numbers.
        "rating": gettext("Average: %(mean)s (median %(median)s)", mean="{mean}",
                          median="{median}"),
        "nps": gettext("Net Promoter Score: %(score)s", score="{score}"),
    }

# A rating of this scale is drawn as stars; every other scale as numbered buttons.
STAR_SCALE = (1, 5)


def scale_form(poll) -> dict | None:
    """A scale poll's row of points for the form: each point's option id, what it shows
    (a star or its number) and its accessible name, which at the ends includes the end
    label ("1 of 5 (Not useful)"); None for kinds without a scale."""
    kind = kinds.of(poll.kind)
    scale = kinds.scale_of(kind, poll.scale)
    if scale is None:
        return None
    stars = kind.scale_settable and (scale["min"], scale["max"]) == STAR_SCALE
    ends = {scale["min"]: scale["min_label"], scale["max"]: scale["max_label"]}
    if kind.fixed_scale is not None:  # NPS: the question's usual end words
        ends = {scale["min"]: gettext("Not at all likely"),
                scale["max"]: gettext("Extremely likely")}
    points = []
    for option in sorted(poll.options, key=lambda option: option.value or 0):
        name = gettext("%(value)s of %(max)s", value=option.value, max=scale["max"])
        if ends.get(option.value):
            name = gettext("%(point)s (%(label)s)", point=name, label=ends[option.value])
        points.append({"id": option.id, "value": option.value, "name": name,
                       "glyph": "★" if stars else str(option.value)})
    return {"stars": stars, "points": points, "min_label": ends.get(scale["min"]),
            "max_label": ends.get(scale["max"])}


def statistic_text(view: dict) -> str | None:
    """The results' statistic line: a rating's mean and median, an NPS poll's score."""
    rating, nps = view.get("rating"), view.get("nps")
    if rating and rating["mean"] is not None:
        return gettext("Average: %(mean)s (median %(median)s)",
                       mean=format_decimal(rating["mean"]),
                       median=format_decimal(rating["median"]))
    if nps and nps["score"] is not None:
        return gettext("Net Promoter Score: %(score)s", score=format_decimal(nps["score"]))
    return None


def baseline_note(poll) -> str | None:
    """The note under "Total votes: N" when N includes the poll's baseline."""
    baseline = baselines.of_poll(poll)
    if baseline is None:
        return None
    return i18n.counted("includes %(num)s vote before %(date)s",
                        "includes %(num)s votes before %(date)s", baseline.total_votes,
                        date=format_date(baseline.as_of, DATE_FORMAT))


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
                # As a decimal: 30.26 / 100 in binary floating point is 0.30260000000000004,
                # which unquantized formatting would show whole.
                percent=format_percent(Decimal(str(percent)) / 100, locale=get_locale(),
                                       decimal_quantization=False),
                votes=i18n.counted("%(num)s vote", "%(num)s votes", votes),
            ),
        })
    return rows


def shown_results(poll, counts: Counts, *, moment: datetime) -> dict:
    view = tallies_view(
        poll, counts, now=moment, suppressed=is_suppressed(poll, counts, is_owner=False)
    )
    return {
        "view": view,
        "rows": _result_rows(view),
        "total": i18n.counted("Total votes: %(num)s", "Total votes: %(num)s",
                              view["total_votes"]),
        "baseline": baseline_note(poll),
        "runoff": _runoff_note(poll, view),
        "statistic": statistic_text(view),
        "other": None if view["other_votes"] is None or not poll.allow_other else
        format_decimal(view["other_votes"]),
    }


def _runoff_note(poll, view: dict) -> dict | None:
    """A ranked poll's results: its winner after the instant runoff, if any."""
    runoff = view.get("irv")
    if runoff is None:
        return None
    labels = {option.id: option.label for option in poll.options}
    winner = runoff["winner"]
    final = runoff["rounds"][-1] if runoff["rounds"] else None
    return {
        "winner": None if winner is None else gettext(
            "Winner after the instant runoff: %(label)s", label=labels.get(winner, winner)),
        "final_rows": [] if final is None else _result_rows({"options": [
            {"id": int(option_id), "label": labels.get(int(option_id), option_id),
             "votes": votes, "percent": _share(votes, sum(final["counts"].values()))}
            for option_id, votes in final["counts"].items()]}),
    }


def _share(votes: int, total: int) -> float:
    return round(votes / total * 100, PERCENT_DECIMALS) if total else 0.0


def later_message(poll) -> str:
    if poll.results == "after_close":
        return gettext("Thank you. The results will be shown when the poll closes.")
    if poll.results == "owner_only":
        return gettext("Thank you. The results of this poll are not public.")
    return gettext("Thank you. The results will be shown later.")


def widget_url(poll_id: str, params: dict[str, str]) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"{url_for('widgets.widget', poll_id=poll_id)}{query}"


def apply_locale(poll, shown: display.Display) -> str:
    tag = i18n.choose_locale(shown.lang, poll.locale)
    i18n.use_locale(tag)
    return tag
