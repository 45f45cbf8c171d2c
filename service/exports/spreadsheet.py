"""Exports as spreadsheets (`format=xlsx`): one sheet, the CSV's columns, typed cells.

XlsxWriter in constant-memory mode writes each row to a temporary file as it comes and
forgets it, so memory stays flat whatever the poll's size; the workbook is zipped at the
end into a temporary file, which is then sent. Text is written as text cells, never as a
formula (nor a number or link guessed from it): a comment "=HYPERLINK(...)" stays the
characters the voter typed. Numbers and booleans are typed; times are Excel times (UTC).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

import xlsxwriter

from service.infra.errors import ValidationFailed

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A sheet holds 1,048,576 rows: the header and this many more.
MAX_ROWS = 1_048_575
TIME_COLUMNS = {"created_at": "yyyy-mm-dd hh:mm:ss", "changed_at": "yyyy-mm-dd hh:mm:ss",
                "bucket_start": "yyyy-mm-dd hh:mm"}
LIST_SEPARATOR = ";"  # as in the CSV
READ_CHUNK_BYTES = 64 * 1024
# Let the worker's other connections in this often while a big sheet is written
# (time.sleep(0) yields to other greenlets under gevent, and is a no-op elsewhere).
YIELD_EVERY_ROWS = 5_000


def workbook(columns: tuple[str, ...], rows: Iterable[tuple], *, sheet: str) -> BinaryIO:
    """Write the rows as one sheet to a temporary file and return it, at its start.
    ValidationFailed (naming `format`) when they do not fit in a sheet."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 (the caller's to close: chunks())
    try:
        _write(file, columns, rows, sheet=sheet)
    except BaseException:
        file.close()
        raise
    file.seek(0)
    return file


def chunks(file: BinaryIO) -> Iterator[bytes]:
    """The file's bytes, in chunks; the file is closed (and so deleted) at the end."""
    with file:
        while chunk := file.read(READ_CHUNK_BYTES):
            yield chunk


def _write(file: BinaryIO, columns: tuple[str, ...], rows: Iterable[tuple], *,
           sheet: str) -> None:
    book = xlsxwriter.Workbook(file, {
        "constant_memory": True, "strings_to_formulas": False, "strings_to_numbers": False,
        "strings_to_urls": False, "tmpdir": tempfile.gettempdir()})
    page = book.add_worksheet(sheet[:31])
    page.write_row(0, 0, columns, book.add_format({"bold": True}))
    page.freeze_panes(1, 0)
    writers = [_writer(page, book, name) for name in columns]
    for row_number, row in enumerate(rows, start=1):
        if row_number > MAX_ROWS:
            book.close()
            raise ValidationFailed({"format": [
                f"More than {MAX_ROWS:,} rows do not fit in one sheet: choose csv, or a "
                "narrower from/to."]})
        for column, (write, value) in enumerate(zip(writers, row, strict=True)):
            if value is not None:
                write(row_number, column, value)
        if not row_number % YIELD_EVERY_ROWS:
            time.sleep(0)
    page.set_column(0, len(columns) - 1, 16)
    book.close()


def _writer(page, book, column: str):
    """How the column's cells are written: times as times, the rest by their type."""
    if column in TIME_COLUMNS:
        shown = book.add_format({"num_format": TIME_COLUMNS[column]})

        def write_time(row: int, col: int, value: str | None) -> None:
            if value is None:  # a vote never changed
                page.write_blank(row, col, None)
                return
            # The database's ISO text ("2026-11-29T12:00:00Z"), read without its zone.
            page.write_datetime(row, col, datetime.fromisoformat(value[:19]), shown)

        return write_time

    def write(row: int, col: int, value) -> None:
        kind = value.__class__
        if kind is str:
            page.write_string(row, col, value)
        elif kind is bool:
            page.write_boolean(row, col, value)
        elif kind is list:
            page.write_string(row, col, LIST_SEPARATOR.join(map(str, value)))
        else:
            page.write_number(row, col, value)

    return write
