"""Thin readers for JSON, CSV and XLSX inputs.

Why a module of its own: every adapter reads the same three file kinds, and each
must turn unusable input into one clear InputError (file, line, column, what is
wrong) rather than a traceback. Some published sample payloads carry comments or
trailing commas; those are reported, not repaired: repairing would be guessing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .base import InputError

__all__ = ["detect_format", "read_csv", "read_json", "read_table", "read_xlsx"]

#: a cell longer than this is refused (csv module default is 128 KiB already)
csv.field_size_limit(1 << 20)


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson"):
        return "json"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    raise InputError(path, f"unsupported file type {suffix or '(none)'}: use .json, .csv or .xlsx")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(path, "is a directory, not a file") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or type(exc).__name__})") from exc


def read_json(path: Path) -> Any:
    """Parse a whole JSON file; errors name the file, line and column."""
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise InputError(path, "file is empty")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        hint = ""
        around = data[max(0, exc.pos - 2): exc.pos + 2]
        if b"//" in around or b"/*" in around:
            hint = " (comments are not allowed in JSON)"
        elif exc.msg.startswith("trailing comma"):
            hint = " (trailing commas are not allowed in JSON)"
        raise InputError(path, f"not valid JSON: {exc.msg}{hint}",
                         line=exc.lineno, column=exc.colno) from exc


def _decode_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}); save the file as 'CSV UTF-8'", line=line) from exc


def read_csv(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """Header and row iterator. The delimiter (comma, semicolon, tab) is read from the header."""
    text = _decode_text(path, _read_bytes(path))
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise InputError(path, "no header row", line=1)
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise InputError(path, "no readable header row", line=1) from exc
    _check_header(path, header)

    def rows() -> Iterator[list[str]]:
        try:
            for row in reader:
                if row and any(c.strip() for c in row):
                    yield row
        except csv.Error as exc:
            raise InputError(path, f"broken CSV: {exc}", line=reader.line_num) from exc

    return header, rows()


def _check_header(path: Path, header: list[str]) -> None:
    seen: set[str] = set()
    for i, h in enumerate(header, start=1):
        if not h:
            raise InputError(path, f"header column {i} is empty", line=1, column=i)
        if h in seen:
            raise InputError(path, f"header column {h!r} appears twice", line=1, column=i)
        seen.add(h)


def _cell(value: Any) -> str:
    """XLSX cells become the strings a CSV export of the same sheet would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_xlsx(path: Path, sheet: str | None = None) -> tuple[list[str], Iterator[list[str]]]:
    """First (or named) worksheet in read-only mode, so large extracts stream."""
    import openpyxl  # imported here: only spreadsheet inputs pay for it
    from openpyxl.utils.exceptions import InvalidFileException

    _read_bytes(path)  # uniform not-found / unreadable errors
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise InputError(path, f"not a readable .xlsx workbook ({type(exc).__name__})") from exc
    try:
        ws = wb[sheet] if sheet else wb.worksheets[0]
    except (KeyError, IndexError) as exc:
        wb.close()
        raise InputError(path, f"worksheet {sheet!r} not found" if sheet else "no worksheet")\
            from exc
    it = ws.iter_rows(values_only=True)
    try:
        header_row = next(it)
    except StopIteration as exc:
        wb.close()
        raise InputError(path, "worksheet is empty") from exc
    header = [_cell(h).strip() for h in header_row]
    while header and not header[-1]:
        header.pop()
    _check_header(path, header)
    width = len(header)

    def rows() -> Iterator[list[str]]:
        try:
            for raw in it:
                row = [_cell(v) for v in raw[:width]]
                if any(c.strip() for c in row):
                    yield row
        finally:
            wb.close()

    return header, rows()


def read_table(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    fmt = detect_format(path)
    if fmt == "csv":
        return read_csv(path)
    if fmt == "xlsx":
        return read_xlsx(path)
    raise InputError(path, "expected a .csv or .xlsx table")
