"""Page numbers and page sizes from a console URL's query, read strictly.

A console user follows links; a mangled or hand-edited value is no reason for an error
page. So a page number that is not 1..PAGE_NUMBER_MAX written in ASCII digits means the
first page, and a page size that is not ASCII digits means the default size (one that
is, is held within 1..its maximum). `int()` alone is too lenient: it takes other
scripts' digits (Arabic-Indic, full-width), " 3", "+3" and "1_000"; `str.isdigit()` lets
"²" through to an `int()` that fails; and a long number overflows SQLite's OFFSET.
"""

from __future__ import annotations

from flask import request

# Beyond any list an owner has, and bounded so that the offset fits every database's
# integer (as the API's MAX_PAGE).
PAGE_NUMBER_MAX = 1_000_000
# More digits than any number read here: longer text is refused before `int()` sees it.
DIGITS_MAX = len(str(PAGE_NUMBER_MAX))


def ascii_number(text: str | None) -> int | None:
    """`text` as a number if it is 1..DIGITS_MAX ASCII digits and nothing else; else None."""
    if not text or len(text) > DIGITS_MAX or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def page_number(arg: str = "page") -> int:
    """The page asked for in the query; the first page unless it is 1..PAGE_NUMBER_MAX."""
    number = ascii_number(request.args.get(arg))
    return number if number is not None and 1 <= number <= PAGE_NUMBER_MAX else 1


def page_size(arg: str, *, default: int, maximum: int) -> int:
    """The page size asked for in the query, within 1..maximum; else `default`."""
    size = ascii_number(request.args.get(arg))
    return default if size is None else min(max(size, 1), maximum)
