"""Exports for analysts: tallies, time series and pseudonymous votes as CSV, JSON or NDJSON.

Rows come from the database (the record) through a server-side cursor and are written
as they arrive, so memory stays flat whatever the poll's size. Row generators are lazy:
no query runs until the first row is asked for, which lets a web view hand them to a
streamed response (whose database session is the one alive while it streams).

The tallies of a whole poll add its baseline (votes from before Pollbox, column
`baseline_votes`); filtered tallies, time series and votes count ballots only.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from service.exports import spreadsheet
from service.infra import kinds
from service.infra.clock import iso, parse_iso
from service.infra.errors import ValidationFailed
from service.infra.models import (
    Ballot,
    BallotChoice,
    Option,
    Owner,
    Poll,
    PollBaseline,
    PollBaselineOption,
)
from service.tallies import baseline as baselines
from service.tallies import irv, statistics
from service.tallies.results import PERCENT_DECIMALS, scale_votes, wilson_interval

DATA_KINDS = ("tallies", "timeseries", "votes")
FORMATS = ("csv", "json", "ndjson", "xlsx")
INTERVALS = ("hour", "day")
DEFAULT_INTERVAL = "day"
COLUMNS = {
    # `baseline_votes` (after the contract's v1 columns): the part of `votes` that is the
    # poll's baseline, votes from before Pollbox (0 when filtered: no ballot is invented).
    # `value` (last): a scale point's number (rating, NPS), or a statistic's (see
    # statistic_rows).
    "tallies": ("poll_id", "question", "option_id", "option_label", "votes", "percent",
                "ci95_low", "ci95_high", "baseline_votes", "value"),
    "timeseries": ("bucket_start", "option_id", "option_label", "votes", "value"),
    # `comment_hidden` (after the contract's columns): the owner hid the comment publicly;
    # `changed_at`: when its voter last changed the vote (empty: as cast).
    "votes": ("vote_id", "created_at", "option_ids", "other", "comment", "context", "voter",
              "comment_hidden", "changed_at"),
}
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",  # RFC 4180 names its charset parameter
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "xlsx": spreadsheet.MEDIA_TYPE,
}
BUCKET_STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# A bucket is a prefix of an ISO time ("2026-11-29T12" / "2026-11-29") and its completion.
BUCKET_TEXT = {"hour": (13, ":00:00Z"), "day": (10, "T00:00:00Z")}

# Rows fetched per round trip from the server-side cursor: big enough to amortize the
# round trip, small enough that a batch is a few hundred kilobytes at most.
CURSOR_BATCH_ROWS = 2000
# Text gathered before one chunk goes out: a few TCP segments, never the whole file.
CHUNK_CHARS = 64 * 1024

# OWASP CSV injection: a text cell starting with one of these is read as a formula by
# Excel, LibreOffice or Google Sheets; a leading single quote makes it plain text.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_GUARD = "'"
CSV_LIST_SEPARATOR = ";"
UTF8_BOM = "\ufeff"

# The rows a scale poll's tallies export adds after its options (statistic_rows).
STATISTIC_ROWS = {"rating": 2, "nps": 4}
PSEUDONYM_BYTES = 8  # 16 hex digits: no collisions in practice within one poll
PSEUDONYM_KEY_LABEL = "pollbox-export-voter"


class utc_iso(FunctionElement):
    """A stored (naive UTC) time as ISO 8601 text with `Z`, formatted by the database.

    Formatting a million times in SQL costs next to nothing; parsing them into Python
    datetimes and formatting them again was a third of an export's time.
    """

    type = String()
    name = "utc_iso"
    inherit_cache = True


@compiles(utc_iso, "sqlite")
def _utc_iso_sqlite(element, compiler, **kw) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%SZ', {compiler.process(element.clauses, **kw)})"


@compiles(utc_iso, "postgresql")
def _utc_iso_postgresql(element, compiler, **kw) -> str:
    return f"""to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


@dataclass(frozen=True)
class Filters:
    """Which ballots an export covers: `since` <= created_at < `until`, one context."""

    context: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_document(self) -> dict:
        return {"from": _time(self.since), "to": _time(self.until), "context": self.context}

    @property
    def whole_poll(self) -> bool:
        """Whether every ballot is covered: only then is the poll's baseline added (it is
        no ballot, so no context and no time window holds it)."""
        return self.context is None and self.since is None and self.until is None


@dataclass(frozen=True)
class ExportParams:
    """A validated export request."""

    data: str
    fmt: str
    interval: str | None = None
    filters: Filters = field(default_factory=Filters)
    bom: bool = False


@dataclass
class Export:
    """What to write: the column names, the JSON document around the rows, and the rows."""

    columns: tuple[str, ...]
    document: dict
    rows: Iterator[tuple]


@dataclass
class TimeSeries:
    """Votes per option in consecutive buckets (for charts)."""

    interval: str
    options: list[tuple[int, str]]
    buckets: list[datetime] = field(default_factory=list)
    votes: dict[int, list[int]] = field(default_factory=dict)


def export_params(*, data: str, fmt: str, interval: str | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  context: str | None = None, bom: bool = False) -> ExportParams:
    """Check a request's parameters together; raise ValidationFailed naming each field."""
    errors: dict[str, list[str]] = {}
    if data not in DATA_KINDS:
        errors["data"] = [f"Must be one of: {', '.join(DATA_KINDS)}."]
    if fmt not in FORMATS:
        errors["format"] = [f"Must be one of: {', '.join(FORMATS)}."]
    if interval is not None and interval not in INTERVALS:
        errors["interval"] = [f"Must be one of: {', '.join(INTERVALS)}."]
    elif interval is not None and data != "timeseries":
        errors["interval"] = ["Only applies to data=timeseries."]
    errors.update(_window_errors(since, until))
    if bom and fmt != "csv":
        errors["bom"] = ["Only applies to format=csv."]
    if errors:
        raise ValidationFailed(errors)
    if data == "timeseries" and interval is None:
        interval = DEFAULT_INTERVAL
    return ExportParams(data=data, fmt=fmt, interval=interval, bom=bom,
                        filters=Filters(context=context, since=since, until=until))


def export_filters(*, since: datetime | None = None, until: datetime | None = None,
                   context: str | None = None) -> Filters:
    """Check a time window and context; raise ValidationFailed naming `to` if it is empty."""
    errors = _window_errors(since, until)
    if errors:
        raise ValidationFailed(errors)
    return Filters(context=context, since=since, until=until)


def _window_errors(since: datetime | None, until: datetime | None) -> dict[str, list[str]]:
    if since is not None and until is not None and until <= since:
        return {"to": ["Must be after from."]}
    return {}


def filename(poll_id: str, data: str, fmt: str) -> str:
    """The download's file name: `<poll id>-<data>.<format>`."""
    return f"{poll_id}-{data}.{fmt}"


def poll_export(*, session: Session, poll: Poll, params: ExportParams, secret: str,
                now: datetime) -> Export:
    """The export of one poll; its rows are read lazily when iterated."""
    filters = params.filters
    if params.data == "tallies":
        # A JSON document carries the statistic as a field of its own, not as rows.
        rows = tally_rows(session=session, poll=poll, filters=filters,
                          with_statistics=params.fmt != "json")
    elif params.data == "timeseries":
        rows = timeseries_rows(session=session, poll=poll, interval=params.interval or
                               DEFAULT_INTERVAL, filters=filters)
    else:
        rows = vote_rows(session=session, poll=poll, secret=secret, filters=filters)
    document = {
        "poll_id": poll.id,
        "question": poll.question,
        "data": params.data,
        "interval": params.interval,
        "filters": filters.as_document(),
        "generated_at": _time(now),
    }
    if params.data == "tallies":
        baseline = baselines.of_poll(poll) if filters.whole_poll else None
        document["baseline"] = None if baseline is None else baseline.summary()
        rows = _with_kind_blocks(rows, document, session=session, poll=poll, params=params)
        if kinds.of(poll.kind).statistic is not None and params.fmt == "json":
            statistic, block = statistic_block(
                poll, tally_counts(session=session, poll=poll, filters=filters))
            document[statistic] = block
    return Export(columns=COLUMNS[params.data], document=document, rows=rows)


def _with_kind_blocks(rows: Iterable[tuple], document: dict, *, session: Session, poll: Poll,
                      params: ExportParams) -> Iterable[tuple]:
    """A ranked poll's runoff: the JSON answer's top-level `irv`, the other formats' rows
    after the options' ones."""
    if not kinds.of(poll.kind).ordered:
        return rows
    runoff = irv.runoff_of_groups(
        irv.rankings(session, poll_id=poll.id, ranks=len(poll.options),
                     conditions=_conditions(poll.id, params.filters)),
        [option.id for option in poll.options])
    if params.fmt == "json":
        document["irv"] = runoff.view()
        return rows
    return itertools.chain(rows, irv_rows(poll, runoff))


def irv_rows(poll: Poll, runoff: irv.Runoff) -> Iterator[tuple]:
    """One row per round and option in the race: `irv round N <label>`, its ballots and
    their percent of the round's ballots not exhausted (option_id empty); then
    `irv winner <label>` when there is one."""
    labels = {option.id: option.label for option in poll.options}
    for number, one in enumerate(runoff.rounds, start=1):
        active = sum(one.counts.values())
        for option_id, votes in one.counts.items():
            yield _tally_row(poll.id, poll.question, None,
                             f"irv round {number} {labels.get(option_id, option_id)}",
                             votes, active)
        yield _tally_row(poll.id, poll.question, None, f"irv round {number} exhausted",
                         one.exhausted, 0)
    if runoff.winner is not None:
        last = runoff.rounds[-1]
        yield _tally_row(poll.id, poll.question, None,
                         f"irv winner {labels.get(runoff.winner, runoff.winner)}",
                         last.counts[runoff.winner], sum(last.counts.values()))


def account_export(*, session: Session, owner: Owner, now: datetime) -> Export:
    """All the owner's polls' tallies in one export."""
    document = {"owner": owner.name, "data": "tallies", "generated_at": _time(now)}
    return Export(columns=COLUMNS["tallies"], document=document,
                  rows=account_tally_rows(session=session, owner=owner))


def render(export: Export, *, fmt: str, bom: bool = False) -> Iterator[bytes]:
    """The export's bytes in chunks. Text formats are written as the rows are read, in
    UTF-8 chunks of about CHUNK_CHARS characters; a spreadsheet is written whole first,
    here (so that a refusal, too many rows for a sheet, comes before any byte)."""
    if fmt == "xlsx":
        return spreadsheet.chunks(spreadsheet.workbook(
            export.columns, export.rows, sheet=export.document.get("data", "export")))
    return _text(export, fmt=fmt, bom=bom)


def _text(export: Export, *, fmt: str, bom: bool) -> Iterator[bytes]:
    if fmt == "csv":
        texts = csv_text(export.columns, export.rows, bom=bom)
    elif fmt == "json":
        texts = _buffered(json_text(export.columns, export.rows, document=export.document))
    else:
        texts = _buffered(ndjson_text(export.columns, export.rows))
    for text in texts:
        yield text.encode("utf-8", "replace")


# Rows ---------------------------------------------------------------------------------


def _conditions(poll_id: str, filters: Filters) -> list:
    conditions = [Ballot.poll_id == poll_id]
    if filters.context is not None:
        conditions.append(Ballot.context == filters.context)
    if filters.since is not None:
        conditions.append(Ballot.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(Ballot.created_at < filters.until)
    return conditions


def _stream(session: Session, statement) -> Iterator:
    """Execute a query whose every row is read, through a server-side cursor."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # A cursor is planned for its first rows by default (cursor_tuple_fraction 0.1);
        # an export reads them all, so plan for the total time (about twice as fast).
        connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
    return connection.execute(statement.execution_options(yield_per=CURSOR_BATCH_ROWS))


def _tally_row(poll_id: str, question: str, option_id: int, label: str, votes: int,
               total: int, baseline_votes: int = 0, value: int | None = None) -> tuple:
    """`votes` and `total` include the baseline's, `baseline_votes` says how many."""
    interval = wilson_interval(votes, total)
    low, high = interval if interval else (None, None)
    percent = round(votes / total * 100, PERCENT_DECIMALS) if total else 0.0
    return (poll_id, question, option_id, label, votes, percent, low, high, baseline_votes,
            value)


@dataclass(frozen=True)
class TallyCounts:
    """What a tallies export counts: ballots and votes per option id, the baseline's
    included when the whole poll is exported."""

    total: int
    votes: dict[int, int]
    baseline: baselines.Baseline | None


def tally_counts(*, session: Session, poll: Poll, filters: Filters) -> TallyCounts:
    """Count the ballots the filters cover, per option (a few rows: read at once)."""
    baseline = baselines.of_poll(poll) if filters.whole_poll else None
    conditions = _conditions(poll.id, filters)
    total = session.scalar(select(func.count(Ballot.id)).where(*conditions)) or 0
    if kinds.of(poll.kind).ordered:  # a ranked ballot counts for its first preference
        conditions.append(BallotChoice.rank == 1)
    votes = dict(
        session.execute(
            select(BallotChoice.option_id, func.count())
            .join(Ballot, Ballot.id == BallotChoice.ballot_id)
            .where(*conditions)
            .group_by(BallotChoice.option_id)
        ).all()
    )
    if baseline is not None:
        total += baseline.total_votes
        for option_id, before in baseline.options:
            votes[option_id] = votes.get(option_id, 0) + before
    return TallyCounts(total=total, votes=votes, baseline=baseline)


def statistic_block(poll: Poll, counted: TallyCounts) -> tuple[str, dict] | None:
    """The poll kind's statistic (`rating`, `nps`) of the counted votes, if it has one."""
    statistic = kinds.of(poll.kind).statistic
    if statistic is None:
        return None
    return statistic, statistics.block(statistic, scale_votes(poll, counted.votes))


def tally_rows(*, session: Session, poll: Poll, filters: Filters,
               with_statistics: bool = True) -> Iterator[tuple]:
    """One row per option: votes (the baseline's included when the whole poll is
    exported), percent of ballots, its 95 % Wilson interval, the baseline's part and the
    option's value; then, `with_statistics`, the statistic rows of a scale poll."""
    counted = tally_counts(session=session, poll=poll, filters=filters)
    baseline = counted.baseline
    for option in poll.options:
        before = 0 if baseline is None else baseline.votes(option.id)
        yield _tally_row(poll.id, poll.question, option.id, option.label,
                         counted.votes.get(option.id, 0), counted.total, before, option.value)
    found = statistic_block(poll, counted) if with_statistics else None
    if found is not None:
        yield from statistic_rows(poll, *found, total=counted.total)


def statistic_rows(poll: Poll, statistic: str, block: dict, *, total: int) -> Iterator[tuple]:
    """A statistic as rows with no option id, its name as the option label: its number in
    `value` and its interval in `ci95_low`/`ci95_high` (`mean`, `median`, `nps`); a count
    of ballots in `votes` with its share in `percent` (`promoters`, `passives`,
    `detractors`)."""
    def row(name, *, value=None, interval=None, votes=None):
        low, high = interval if interval else (None, None)
        percent = None
        if votes is not None:
            percent = round(votes / total * 100, PERCENT_DECIMALS) if total else 0.0
        return (poll.id, poll.question, None, name, votes, percent, low, high, None, value)

    if statistic == "rating":
        yield row("mean", value=block["mean"], interval=block["ci95"])
        yield row("median", value=block["median"])
    else:
        yield row("nps", value=block["score"], interval=block["ci95"])
        for name in ("promoters", "passives", "detractors"):
            yield row(name, votes=block[name])


def account_tally_rows(*, session: Session, owner: Owner) -> Iterator[tuple]:
    """Tally rows of every poll of the owner, newest poll first, baselines included."""
    owned = Poll.owner_id == owner.id
    totals = Counter(dict(
        session.execute(
            select(Ballot.poll_id, func.count(Ballot.id))
            .join(Poll, Poll.id == Ballot.poll_id)
            .where(owned)
            .group_by(Ballot.poll_id)
        ).all()
    ))
    totals.update(dict(session.execute(
        select(PollBaseline.poll_id, PollBaseline.total_votes)
        .join(Poll, Poll.id == PollBaseline.poll_id)
        .where(owned)
    ).all()))
    before = dict(session.execute(
        select(PollBaselineOption.option_id, PollBaselineOption.votes)
        .join(Poll, Poll.id == PollBaselineOption.poll_id)
        .where(owned)
    ).all())
    counts = dict(
        session.execute(
            select(BallotChoice.option_id, func.count())
            .join(Option, Option.id == BallotChoice.option_id)
            .join(Poll, Poll.id == Option.poll_id)
            .where(owned, or_(BallotChoice.rank == 1, Poll.kind.not_in(kinds.ORDERED)))
            .group_by(BallotChoice.option_id)
        ).all()
    )
    options = _stream(
        session,
        select(Poll.id, Poll.question, Option.id, Option.label, Option.value)
        .join(Option, Option.poll_id == Poll.id)
        .where(owned)
        .order_by(Poll.created_at.desc(), Poll.id, Option.position),
    )
    for poll_id, question, option_id, label, value in options:
        earlier = before.get(option_id, 0)
        yield _tally_row(poll_id, question, option_id, label,
                         counts.get(option_id, 0) + earlier, totals[poll_id], earlier, value)


def bucket_start(moment: datetime, interval: str) -> datetime:
    """The start of the UTC hour or day holding `moment`."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if interval == "day" else moment


def timeseries_rows(*, session: Session, poll: Poll, interval: str,
                    filters: Filters) -> Iterator[tuple]:
    """Votes per option per bucket, every bucket from the first ballot's to the last's.

    Buckets are counted in Python from (time, option) rows in time order, so only the
    current bucket's counts are held, and the SQL is the same on every database. The
    database formats the times; a bucket is a prefix of that text.
    """
    options = [(option.id, option.label, option.value) for option in poll.options]
    step, prefix, suffix = BUCKET_STEPS[interval], *BUCKET_TEXT[interval]
    # Outer join: a ballot with only an `other` answer still marks a bucket as voted in.
    result = _stream(
        session,
        select(utc_iso(Ballot.created_at), BallotChoice.option_id)
        .outerjoin(BallotChoice, BallotChoice.ballot_id == Ballot.id)
        .where(*_conditions(poll.id, filters))
        .order_by(Ballot.created_at)
    )
    current_key: str | None = None
    current: datetime | None = None
    counts: Counter[int] = Counter()
    for created, option_id in result:
        key = created[:prefix]
        if key != current_key:
            bucket = parse_iso(key + suffix)
            if current is not None:
                yield from _bucket_rows(current, options, counts)
                counts.clear()
                current += step
                while current < bucket:  # zero-fill the buckets nobody voted in
                    yield from _bucket_rows(current, options, counts)
                    current += step
            current_key, current = key, bucket
        if option_id is not None:
            counts[option_id] += 1
    if current is not None:
        yield from _bucket_rows(current, options, counts)


def _bucket_rows(bucket: datetime, options: list[tuple[int, str, int | None]],
                 counts: Counter[int]) -> Iterator[tuple]:
    start = _time(bucket)
    for option_id, label, value in options:
        yield (start, option_id, label, counts[option_id], value)


def timeseries(*, session: Session, poll: Poll, interval: str, filters: Filters,
               max_buckets: int) -> TimeSeries:
    """The whole time series in memory (for a chart); at most `max_buckets` buckets."""
    series = TimeSeries(interval=interval,
                        options=[(option.id, option.label) for option in poll.options])
    series.votes = {option_id: [] for option_id, _ in series.options}
    last = None
    for start, option_id, _label, votes, _value in timeseries_rows(
        session=session, poll=poll, interval=interval, filters=filters
    ):
        if start != last:
            if len(series.buckets) == max_buckets:
                raise ValidationFailed({"interval": [
                    f"More than {max_buckets} buckets to draw: choose interval=day or a "
                    "narrower from/to."
                ]})
            series.buckets.append(parse_iso(start))
            last = start
        series.votes[option_id].append(votes)
    return series


def pseudonymizer(secret: str, poll_id: str) -> Callable[[str | None], str | None]:
    """A per-poll keyed hash of a stored voter hash: stable within a poll, opaque outside.

    The stored hashes are never exported: a further keyed hash means an export cannot be
    joined with the ballots table or with another poll's export.
    """
    key = hmac.new(secret.encode(), f"{PSEUDONYM_KEY_LABEL}\x00{poll_id}".encode(),
                   hashlib.sha256).digest()

    def pseudonym(stored: str | None) -> str | None:
        if stored is None:
            return None
        return hashlib.blake2b(stored.encode(), key=key, digest_size=PSEUDONYM_BYTES).hexdigest()

    return pseudonym


def vote_rows(*, session: Session, poll: Poll, secret: str,
              filters: Filters) -> Iterator[tuple]:
    """One row per ballot as it is now (changed votes with their new options and their
    `changed_at`), oldest first, with its options in the poll's order (a ranked poll's:
    in the voter's order of preference).

    A ballot's choices arrive as consecutive rows (ordered by ballot) and are gathered
    here, so only one ballot is held at a time.
    """
    positions = ({} if kinds.of(poll.kind).ordered else
                 {option.id: option.position for option in poll.options})
    pseudonym = pseudonymizer(secret, poll.id)
    result = _stream(
        session,
        select(Ballot.id, utc_iso(Ballot.created_at), Ballot.other, Ballot.comment,
               Ballot.context, Ballot.user_hash, Ballot.cookie_hash, BallotChoice.option_id,
               Ballot.comment_hidden, utc_iso(Ballot.changed_at))
        .outerjoin(BallotChoice, BallotChoice.ballot_id == Ballot.id)
        .where(*_conditions(poll.id, filters))
        .order_by(Ballot.created_at, Ballot.id, BallotChoice.rank)
    )
    ballot = None
    option_ids: list[int] = []
    for row in result:
        if ballot is not None and row[0] == ballot[0]:
            option_ids.append(row[7])
            continue
        if ballot is not None:
            yield _vote_row(ballot, option_ids, positions, pseudonym)
        ballot = row
        option_ids = [] if row[7] is None else [row[7]]
    if ballot is not None:
        yield _vote_row(ballot, option_ids, positions, pseudonym)


def _vote_row(ballot, option_ids: list[int], positions: dict[int, int],
              pseudonym: Callable[[str | None], str | None]) -> tuple:
    (ballot_id, created, other, comment, context, user_hash, cookie_hash, _, hidden,
     changed) = ballot
    if len(option_ids) > 1 and positions:
        option_ids.sort(key=lambda option_id: positions.get(option_id, option_id))
    # A signed site user is the respondent where the poll has one; else the browser.
    voter = pseudonym(f"user:{user_hash}" if user_hash else
                      f"cookie:{cookie_hash}" if cookie_hash else None)
    return (ballot_id, created, option_ids, other, comment, context, voter, bool(hidden),
            changed)


def count_rows(*, session: Session, poll: Poll, params: ExportParams) -> int:
    """How many rows the export will have (for a progress bar)."""
    if params.data == "tallies":
        return len(poll.options) + STATISTIC_ROWS.get(kinds.of(poll.kind).statistic, 0)
    conditions = _conditions(poll.id, params.filters)
    if params.data == "votes":
        return session.scalar(select(func.count(Ballot.id)).where(*conditions)) or 0
    first, last = session.execute(
        select(func.min(Ballot.created_at), func.max(Ballot.created_at)).where(*conditions)
    ).one()
    if first is None:
        return 0
    # Aggregates skip the column's type on SQLite: parse what comes back.
    first, last = (_as_utc(value) for value in (first, last))
    interval = params.interval or DEFAULT_INTERVAL
    span = bucket_start(last, interval) - bucket_start(first, interval)
    return (span // BUCKET_STEPS[interval] + 1) * len(poll.options)


# Writers ------------------------------------------------------------------------------


def defuse(value: str) -> str:
    """Make a text cell that a spreadsheet would run as a formula plain text (OWASP)."""
    return FORMULA_GUARD + value if value.startswith(FORMULA_TRIGGERS) else value


def _csv_cells(row: tuple) -> list:
    # One expression, not a call per cell: this runs for every cell of a million rows.
    return [
        (FORMULA_GUARD + value if value.startswith(FORMULA_TRIGGERS) else value)
        if value.__class__ is str
        else defuse(CSV_LIST_SEPARATOR.join(map(str, value))) if value.__class__ is list
        else ("true" if value else "false") if value.__class__ is bool  # as in JSON
        else value  # numbers stay numbers; None is an empty cell
        for value in row
    ]


def csv_text(columns: Iterable[str], rows: Iterable[tuple], *, bom: bool = False) -> Iterator[str]:
    """RFC 4180 CSV (CRLF, quotes doubled), text cells defused, in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if bom:
        buffer.write(UTF8_BOM)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(_csv_cells(row))
        if buffer.tell() >= CHUNK_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json_encoder() -> json.JSONEncoder:
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def json_text(columns: tuple[str, ...], rows: Iterable[tuple], *,
              document: dict) -> Iterator[str]:
    """One JSON document `{...document, "rows": [{column: value}, ...]}`, row by row."""
    encode = _json_encoder().encode
    head = encode({**document, "rows": []})
    yield head[: -len("[]}")] + "["
    separator = ""
    for row in rows:
        yield separator + encode(dict(zip(columns, row, strict=True)))
        separator = ","
    yield "]}\n"


def ndjson_text(columns: tuple[str, ...], rows: Iterable[tuple]) -> Iterator[str]:
    """One JSON object per line."""
    encode = _json_encoder().encode
    for row in rows:
        yield encode(dict(zip(columns, row, strict=True))) + "\n"


def _buffered(pieces: Iterable[str]) -> Iterator[str]:
    gathered: list[str] = []
    size = 0
    for piece in pieces:
        gathered.append(piece)
        size += len(piece)
        if size >= CHUNK_CHARS:
            yield "".join(gathered)
            gathered.clear()
            size = 0
    if gathered:
        yield "".join(gathered)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


def _as_utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
