"""HERE Batch API v7 input/output *line* format, sans I/O.

Shared by the client side (the operator validates input lines before uploading them) and the local
emulator (which parses uploaded input and writes results), so both agree on one reading of HERE's
rules. No I/O and no Airflow import here: the functions take and return strings.

HERE's rules (see ``here-batch-api-v7.md`` §8):

* one line is one record; a line break always ends a record, even inside quotes;
* values are separated by a single-character delimiter (``\\t`` written as the two characters
  backslash + ``t`` in the ``inputDelimiter`` parameter);
* a value that contains the delimiter is wrapped in double quotes.

HERE leaves open how a ``"`` *inside* a quoted value is written. This module uses the CSV convention
(RFC 4180): inside a quoted value a double quote is doubled (``""``). A ``"`` inside an *unquoted*
value (one that does not start with ``"``) is an ordinary character. :func:`format_record` quotes a
value when it contains the delimiter or starts with ``"``, so ``split_record(format_record(v, d), d)
== v`` for every list of strings without line breaks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl

__all__ = [
    "MAX_LINE_LENGTH",
    "MAX_RECID_LENGTH",
    "ColumnDescriptor",
    "RecordFormatError",
    "decode_delimiter",
    "encode_delimiter",
    "format_record",
    "is_query_form",
    "parse_column_descriptor",
    "parse_query_form",
    "split_record",
]

#: Longest accepted record line in characters (recId included), per HERE's limits page.
MAX_LINE_LENGTH = 4096
#: Longest accepted ``recId`` in characters.
MAX_RECID_LENGTH = 512

_QUERY_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9_]*=")


class RecordFormatError(ValueError):
    """A line cannot be split: a quoted value is not closed, or text follows its closing quote."""


def decode_delimiter(value: str) -> str:
    """Turn an ``inputDelimiter``/``outputDelimiter`` parameter value into the delimiter character.

    HERE accepts one character, or the two-character escape ``\\t`` for a tab (the only 2-char value).

    :raises ValueError: when the value is empty, or two characters other than ``\\t``.
    """
    if value == "\\t":
        return "\t"
    if len(value) != 1:
        raise ValueError(f"delimiter must be one character or '\\t', got {value!r}")
    return value


def encode_delimiter(delimiter: str) -> str:
    """Inverse of :func:`decode_delimiter`: the parameter value to send for ``delimiter``."""
    return "\\t" if delimiter == "\t" else delimiter


def split_record(line: str, delimiter: str) -> list[str]:
    """Split one record line into its values, honouring double-quote wrapping.

    A trailing ``\\n``/``\\r\\n`` is ignored. A value starting with ``"`` runs to the next ``"`` that is not
    doubled; ``""`` inside it stands for one ``"``; the closing quote must be followed by the delimiter
    or the end of the line.

    :raises RecordFormatError: for an unclosed quote or text after a closing quote.
    """
    line = line.rstrip("\r\n")
    if '"' not in line:  # fast path: the overwhelmingly common case
        return line.split(delimiter)
    values: list[str] = []
    i = 0
    n = len(line)
    while True:
        if i < n and line[i] == '"':
            buf: list[str] = []
            i += 1
            while True:
                j = line.find('"', i)
                if j < 0:
                    raise RecordFormatError("unclosed quoted value")
                buf.append(line[i:j])
                if j + 1 < n and line[j + 1] == '"':
                    buf.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            values.append("".join(buf))
            if i == n:
                return values
            if not line.startswith(delimiter, i):
                raise RecordFormatError("text after a closing quote")
            i += len(delimiter)
        else:
            j = line.find(delimiter, i)
            if j < 0:
                values.append(line[i:])
                return values
            values.append(line[i:j])
            i = j + len(delimiter)


def _quote(value: str, delimiter: str) -> str:
    if delimiter in value or value.startswith('"') or "\n" in value or "\r" in value:
        # Line breaks are not representable in HERE's format; replace them rather than corrupt the file.
        # Input never gets here with one: rows_to_lines (api.inputs) refuses such values first.
        value = value.replace("\r", " ").replace("\n", " ")
        return '"' + value.replace('"', '""') + '"'
    return value


def format_record(values: Iterable[object], delimiter: str) -> str:
    """Join values into one record line (no line break), quoting where :func:`split_record` needs it.

    ``None`` becomes an empty value; other non-strings are formatted with ``str``.
    """
    cells = ["" if v is None else v if v.__class__ is str else str(v) for v in values]
    joined = delimiter.join(cells)
    # Fast path: nothing to quote when the joined line has exactly the separators we put in, no quote
    # character and no line break (checked in C instead of per value).
    if (
        '"' not in joined
        and "\n" not in joined
        and "\r" not in joined
        and joined.count(delimiter) == max(len(cells) - 1, 0)
    ):
        return joined
    return delimiter.join(_quote(cell, delimiter) for cell in cells)


def is_query_form(line: str, delimiter: str | None = None) -> bool:
    """Whether a line is a URL query string (``q=...&lang=de``) rather than delimited values.

    A header such as ``recId|q|limit=5`` is not query form: the text before the first ``=`` contains the
    delimiter.
    """
    if not _QUERY_FORM.match(line):
        return False
    head = line.split("=", 1)[0]
    return delimiter is None or delimiter not in head


def parse_query_form(line: str) -> dict[str, str]:
    """Parse a URL-query-form record (``q=Invalidenstra%C3%9Fe%20116&limit=2``) into its parameters."""
    return dict(parse_qsl(line.rstrip("\r\n"), keep_blank_values=True))


class ColumnDescriptor:
    """A parsed column descriptor (``inputColumns`` value or the body's header line).

    Entries of the form ``name=value`` are *default values*: constant columns applied to every record
    and not present in the record lines (HERE's way to set e.g. ``limit=5`` for all records).
    """

    __slots__ = ("columns", "defaults")

    def __init__(self, columns: Sequence[str], defaults: dict[str, str]) -> None:
        self.columns: list[str] = list(columns)
        self.defaults: dict[str, str] = dict(defaults)

    def __repr__(self) -> str:
        return f"ColumnDescriptor(columns={self.columns!r}, defaults={self.defaults!r})"

    def bind(self, values: Sequence[str]) -> dict[str, str] | None:
        """Map a record's values to column names; ``None`` if the value count does not match."""
        if len(values) != len(self.columns):
            return None
        params = dict(self.defaults)
        params.update(zip(self.columns, values, strict=True))
        return params


def parse_column_descriptor(line: str, delimiter: str) -> ColumnDescriptor:
    """Parse a column descriptor line split by ``delimiter`` (names are kept as written).

    :raises ValueError: for an empty descriptor or an empty column name.
    """
    names = split_record(line, delimiter)
    columns: list[str] = []
    defaults: dict[str, str] = {}
    for raw in names:
        name = raw.strip()
        if "=" in name:
            key, value = name.split("=", 1)
            if not key:
                raise ValueError(f"empty column name in default value {raw!r}")
            defaults[key] = value
        elif not name:
            raise ValueError("empty column name in column descriptor")
        else:
            columns.append(name)
    if not columns and not defaults:
        raise ValueError("empty column descriptor")
    return ColumnDescriptor(columns, defaults)
