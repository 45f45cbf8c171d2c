"""The `pollbox` command (`pip install` gives it): serve Pollbox here, or read another
Pollbox's tallies and exports over HTTP as an analyst does, with no shell on the server.

    pollbox serve [--bind 127.0.0.1:8000] [--workers N]
    pollbox export --server URL --key KEY POLL_ID [--data votes] [--format csv] [-o FILE|-]
    pollbox tallies --server URL POLL_ID [--key KEY]

The `flask --app wsgi ...` commands (owners, demo, export, reconcile, purge, webhooks)
stay; they work on the server's own database.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import click
import httpx

DEFAULT_BIND = "127.0.0.1:8000"
TIMEOUT = httpx.Timeout(30.0, read=300.0)  # a large export may pause between chunks
PROGRESS_EVERY_SECONDS = 0.2
# What to try after a refusal, for whoever typed the command.
HINTS = {
    401: "check --key",
    403: "the key may not do this, or the results are not public: use the owner's --key",
    404: "check POLL_ID and --server",
}

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Pollbox: embeddable polls and feedback widgets."""


@main.command()
@click.option("--bind", default=DEFAULT_BIND, show_default=True,
              help="Address and port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: one per core with REDIS_URL, else one).")
def serve(bind: str, workers: int | None) -> None:
    """Create or upgrade the database, seed the demo poll, print its URLs, then serve
    with gunicorn (the settings of deploy/gunicorn.conf.py, shipped in the package).

    Configured by the environment (DATABASE_URL, REDIS_URL, SECRET_KEY, ...; see the
    README). Without them: a SQLite file and the secret key in ./instance, and an
    in-process Redis stand-in."""
    os.environ.setdefault("INSTANCE_PATH", str(Path.cwd() / "instance"))
    os.environ.setdefault("LOG_FORMAT", "text")  # a person at a terminal
    from flask_migrate import upgrade

    from service import create_app
    from service.cli import demo

    app = create_app()
    host, _, port = bind.rpartition(":")
    with app.app_context():
        upgrade()
        click.echo()
        click.get_current_context().invoke(demo, base_url=f"http://{host or '127.0.0.1'}:{port}")
    click.echo(f"\nServing on http://{bind} (Ctrl-C to stop)")
    settings = Path(__file__).with_name("gunicorn.conf.py")
    command = [sys.executable, "-m", "gunicorn", "-c", str(settings), "--bind", bind]
    if workers is not None:
        command += ["--workers", str(workers)]
    sys.stdout.flush()
    os.execv(sys.executable, [*command, "service:create_app()"])


# The server the HTTP commands (export, tallies) talk to.
server_option = click.option("--server", required=True, envvar="POLLBOX_SERVER",
                             show_envvar=True,
                             help="The Pollbox server, e.g. https://polls.example.org")


def _client(server: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=TIMEOUT)


def _refused(response: httpx.Response) -> click.ClickException:
    """A clear message for an answer that is not the one asked for: the server's own
    detail (problem+json), its status, and what to try."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    status = response.status_code
    hint = HINTS.get(status)
    return click.ClickException(f"{detail or 'The server refused.'} ({status}"
                                + (f": {hint})" if hint else ")"))


@contextmanager
def _answer(server: str, key: str | None, path: str, params: dict) -> Iterator[httpx.Response]:
    """GET `path` and stream its answer; a ClickException for a refusal or no server."""
    try:
        with _client(server, key) as client, client.stream("GET", path, params=params) as answer:
            if answer.status_code != 200:
                answer.read()
                raise _refused(answer)
            yield answer
    except httpx.TransportError as error:
        raise click.ClickException(
            f"Could not reach {server} ({type(error).__name__}: {error}).") from None


def _copy(answer: httpx.Response, out: BinaryIO, *, progress: bool) -> int:
    """Copy the answer's body to `out`, showing the bytes so far on a terminal."""
    written, shown = 0, time.monotonic()
    total = answer.headers.get("Content-Length")
    for chunk in answer.iter_bytes():
        out.write(chunk)
        written += len(chunk)
        if progress and time.monotonic() - shown >= PROGRESS_EVERY_SECONDS:
            shown = time.monotonic()
            of = f" of {int(total):,}" if total else ""
            click.echo(f"\r{written:,}{of} bytes", nl=False, err=True)
    if progress:
        click.echo(f"\r{written:,} bytes, done.", err=True)
    return written


@main.command()
@server_option
@click.option("--key", required=True, envvar="POLLBOX_KEY", show_envvar=True,
              help="An API key of the poll's owner.")
@click.argument("poll_id")
@click.option("--data", type=click.Choice(["votes", "tallies", "timeseries"]),
              default="votes", show_default=True)
@click.option("--format", "format_", type=click.Choice(["csv", "json", "ndjson", "xlsx"]),
              default="csv", show_default=True)
@click.option("-o", "--output", default="-", show_default=True,
              help="The file to write, or - for standard output.")
def export(server: str, key: str, poll_id: str, data: str, format_: str, output: str) -> None:
    """Download a poll's export over HTTP.

    The file appears only once the whole export has arrived: a failed download leaves
    no partial file (and an existing one as it was). Nothing is resumed: each run
    downloads the export whole, as it is now."""
    path = f"/api/v1/polls/{poll_id}/export"
    params = {"data": data, "format": format_}
    if output == "-":
        with _answer(server, key, path, params) as answer:
            _copy(answer, sys.stdout.buffer, progress=False)
        sys.stdout.flush()
        return
    target = Path(output)
    descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                           suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as out, _answer(server, key, path, params) as answer:
            written = _copy(answer, out, progress=sys.stderr.isatty())
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    click.echo(f"Wrote {target} ({written:,} bytes).", err=True)


def _interval(ci95: list[float] | None) -> str:
    return "" if not ci95 else f"{ci95[0]:.1f} to {ci95[1]:.1f} %"


@main.command()
@server_option
@click.option("--key", default=None, envvar="POLLBOX_KEY", show_envvar=True,
              help="The owner's API key, for results hidden from the public.")
@click.argument("poll_id")
def tallies(server: str, key: str | None, poll_id: str) -> None:
    """Print a poll's tallies as a table, with each option's 95 % interval (Wilson)."""
    with _answer(server, key, f"/api/v1/polls/{poll_id}/tallies", {}) as answer:
        answer.read()
        shown = answer.json()
    total = shown["total_votes"]
    click.echo(f"Poll {poll_id}: {shown['status']}, "
               + ("votes not shown yet" if total is None else
                  f"{total:,} vote" + ("" if total == 1 else "s")))
    if shown.get("baseline"):
        carried = shown["baseline"]
        click.echo(f"Includes {carried['total_votes']:,} votes before "
                   f"{carried['as_of'][:10]} ({carried['source']}).")
    if shown["suppressed"]:
        click.echo("Results are shown once the poll has more votes.")
        return
    rows = [("option", "votes", "percent", "95 % interval")]
    rows += [(option["label"], f"{option['votes']:,}",
              "" if option["percent"] is None else f"{option['percent']:.1f} %",
              _interval(option["ci95"])) for option in shown["options"]]
    if shown.get("other_votes"):
        rows.append(("(other)", f"{shown['other_votes']:,}", "", ""))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        click.echo("  ".join([row[0].ljust(widths[0]),
                              *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:],
                                                                          strict=True))]))
    statistic = _statistic_line(shown)
    if statistic:
        click.echo(statistic)


def _statistic_line(shown: dict) -> str | None:
    """A rating's mean and median or an NPS poll's score, with its 95 % interval."""
    def interval(ci95: list[float] | None) -> str:
        return "none" if not ci95 else f"{ci95[0]} to {ci95[1]}"

    rating, nps = shown.get("rating"), shown.get("nps")
    if rating and rating["mean"] is not None:
        return (f"Mean {rating['mean']}, median {rating['median']} "
                f"(95 % interval {interval(rating['ci95'])})")
    if nps and nps["score"] is not None:
        return (f"NPS {nps['score']} (95 % interval {interval(nps['ci95'])}): "
                f"{nps['promoters']:,} promoters, {nps['passives']:,} passives, "
                f"{nps['detractors']:,} detractors")
    return None


if __name__ == "__main__":
    main()
