"""Rendered widget pages, and whether a visitor voted, kept per process.

Pages are keyed by everything a page depends on.

A widget page is a function of the poll (its version), the display parameters, the
language, the poll's status, the visitor's state (voted or not, just voted, asked for the
results, an error code) and, when results are shown, the counts. Only the CSP nonce and
the form's token are new on every request: the cached page holds random markers where
they go, replaced per request. The visitor's state is part of the key, so one visitor's
page (results after voting) is never served to another whose state differs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from service.infra.kept import Kept

MAX_PAGES = 1000
MAX_VOTER_STATES = 10_000
MARK_BYTES = 16


@dataclass(frozen=True, slots=True)
class Page:
    """Everything a widget page depends on, but its nonce and form token."""

    poll_id: str
    version: str | None
    lang: str
    query: tuple[tuple[str, str], ...]
    status: str
    voted: bool
    thanked: bool
    visible: bool
    asked_results: bool
    show_form: bool
    error: str | None
    counts: tuple | None
    script_root: str
    # The visitor's order of the options (`shuffle_options`, while the form shows).
    order: tuple[int, ...] | None = None
    # The poll asks for a proof of work now (the form says it needs JavaScript).
    challenge: bool = False
    # This browser's own ballot may be changed (`allow_change`, open); the form is shown
    # to change it (`?change=1`); the visitor just changed it.
    can_change: bool = False
    changing: bool = False
    changed: bool = False


@dataclass(frozen=True, slots=True)
class RenderedPage:
    html: str
    csp: str
    nonce_mark: str
    token_mark: str

    def body(self, nonce: str, csrf_token: str) -> str:
        return self.html.replace(self.nonce_mark, nonce).replace(self.token_mark, csrf_token)

    def policy(self, nonce: str) -> str:
        return self.csp.replace(self.nonce_mark, nonce)


class PageCache:
    """The process's rendered pages; the oldest go first once MAX_PAGES are kept. The
    markers are random per process, so no poll text can contain them."""

    def __init__(self) -> None:
        self.nonce_mark = secrets.token_hex(MARK_BYTES)
        self.token_mark = secrets.token_hex(MARK_BYTES)
        self._pages: Kept[Page, RenderedPage] = Kept(MAX_PAGES)

    def get(self, page: Page) -> RenderedPage | None:
        return self._pages.get(page)

    def put(self, page: Page, html: str, csp: str) -> RenderedPage:
        rendered = RenderedPage(html, csp, self.nonce_mark, self.token_mark)
        if page.version is not None:  # read without a version: nothing to key it on
            self._pages.put(page, rendered)
        return rendered


class VoterStates(Kept[tuple, bool]):
    """Whether a visitor (the keyed hashes of their cookie and address) has voted in a
    poll, remembered for one state of the poll's tally.

    A ballot is counted in the tally before its voter hears 201, and a withdrawal drops
    the tally before its 204: while the tally (total, per-option counts, last vote time)
    is unchanged, no ballot came or went, so the database would answer the same. Asked
    only with a tally read from Redis (not while it is down).
    """

    def __init__(self) -> None:
        super().__init__(MAX_VOTER_STATES)
