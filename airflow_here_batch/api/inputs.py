"""Input validation before upload, sans I/O: every record reaches HERE exactly as given, or is refused.

The rule: between the user's input and the upload no record may be lost, merged, split, renumbered or
changed. Where that would happen (at the client or at HERE), the input is refused before anything is
uploaded, naming the line (or XCom row), the field and the fix.

**One pass over a stream.** :class:`InputChecker` reads the input's lines one at a time (a generator:
a million-line file is never held in memory) and yields a :class:`CheckedLine` per line: the text to
upload and the problems found. Everything else is built on it:

* :func:`validate_lines` runs the pass and reports (fail mode: raises :class:`InputValidationError`
  listing up to :data:`MAX_PROBLEMS_SHOWN` problems with counts by kind; skip mode: returns the counts
  and hands each bad record to ``on_reject``);
* :func:`upload_lines` runs the same pass and yields the lines to upload (``\\n``-terminated);
* :func:`iter_input_lines` turns a binary file object into lines (``\\n`` only; gzip detected by its
  magic bytes and read decompressed); :func:`split_text` does the same for inline text;
* :func:`rows_to_lines` is the one place where rows (dicts, e.g. from XCom or a database) become HERE
  lines.

**Lines.** A line ends at ``\\n`` and nowhere else (HERE: a line break always ends a record, §8), for
files and inline text alike: U+2028, U+0085 and the other characters ``str.splitlines`` breaks on are
ordinary characters inside a value. CRLF: when the first line ends with ``\\r\\n`` the input uses CRLF,
and the ``\\r`` before each ``\\n`` is a line ending: not part of the record, not uploaded (the upload
is LF-only, so the result does not depend on how HERE reads a CR). Any other ``\\r`` (CR-only line
endings, a CR inside a value, a CRLF line in an input whose first line ends with LF alone, where the CR
may be the end of a value) is refused: the fix is to use one line ending and remove the CR. A UTF-8
byte-order mark at the start of the input is not data: it is stripped (HERE would read ``\\ufeffrecId``
as an unknown column and number the records itself, so recIds ``7, 9`` would come back as ``1, 2``).

Rules from HERE (shared doc ``here-batch-api-v7.md`` §8, §11, §16): the column descriptor comes from
``input_columns`` or the first line; records have as many values as the descriptor has columns;
values holding the delimiter are wrapped in ``"``; a line is at most 4096 characters, a ``recId`` at
most 512; at most 1,000,000 records and 500 MB; parameter names are case-sensitive; each service needs
its key column (``q``/``qq``, ``at``/``in``, ``id``), and its values in their form (``at`` = ``lat,lng``,
``id`` = a HERE id; an empty value passes: HERE fails that record and reports it in the errors file);
legacy 6.2 column names are not v7 parameters (every record would fail with "The query is empty").
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any, Literal, NamedTuple

from airflow_here_batch.api.models import ServiceType
from airflow_here_batch.api.recids import RECID_RULE, DuplicateRecId, UniqueRecIds
from airflow_here_batch.api.records import (
    MAX_LINE_LENGTH,
    MAX_RECID_LENGTH,
    ColumnDescriptor,
    RecordFormatError,
    decode_delimiter,
    format_record,
    is_query_form,
    parse_column_descriptor,
    parse_query_form,
    split_record,
)

__all__ = [
    "KIND_LABELS",
    "LEGACY_COLUMNS",
    "MAX_INPUT_BYTES",
    "MAX_PROBLEMS_SHOWN",
    "MAX_RECORDS",
    "REQUIRED_COLUMNS",
    "V7_PARAMETERS",
    "CheckedLine",
    "InputChecker",
    "InputProblem",
    "InputReport",
    "InputValidationError",
    "RejectedRow",
    "at_problem",
    "here_id_problem",
    "iter_input_lines",
    "rows_to_lines",
    "sniff_format",
    "split_text",
    "upload_lines",
    "validate_lines",
]

#: Most records HERE accepts in one job.
MAX_RECORDS = 1_000_000
#: Largest uncompressed input HERE accepts, in bytes.
MAX_INPUT_BYTES = 500 * 1024 * 1024
#: Problems listed in one error message (the counts by kind cover all of them).
MAX_PROBLEMS_SHOWN = 20
#: A line longer than this many bytes is not kept whole in memory: it is reported as too long.
MAX_RAW_LINE_BYTES = 1024 * 1024

OnBadRecord = Literal["fail", "skip"]

#: For each service, the columns of which a record needs at least one (HERE's backend query keys).
REQUIRED_COLUMNS: dict[ServiceType, tuple[str, ...]] = {
    ServiceType.GEOCODE: ("q", "qq"),
    ServiceType.REVGEOCODE: ("at", "in"),
    ServiceType.LOOKUP: ("id",),
}

#: GS7 query parameters a batch column may name, spelled as HERE spells them (names are
#: case-sensitive, [PARAMS]). A column matching one of these only in case is refused; a column
#: matching none of them (nor a legacy name) gets a warning, since HERE's full list is not in the
#: stored docs.
V7_PARAMETERS: tuple[str, ...] = (
    "recId",
    "q",
    "qq",
    "at",
    "in",
    "id",
    "lang",
    "limit",
    "types",
    "politicalView",
    "show",
    "showMapReferences",
    "showNavAttributes",
    "showRelated",
    "postalCodeMode",
    "bearing",
)
_V7_BY_LOWER = {p.lower(): p for p in V7_PARAMETERS}

_QQ_FIX = (
    "v7 takes structured fields in one 'qq' column, e.g. "
    "'city=Berlin;street=Invalidenstr.;houseNumber=116;postalCode=10115'"
)
#: Column names of the legacy Batch Geocoder 6.2 (shared doc §16), lower-cased, with the v7 way.
LEGACY_COLUMNS: dict[str, str] = {
    "searchtext": "v7 takes free text in the 'q' column",
    "country": "v7 filters by country with 'in' holding 'countryCode:DEU' (a column 'in', or a "
    "constant 'in=countryCode:DEU' at the end of the header)",
    "city": _QQ_FIX,
    "postalcode": _QQ_FIX,
    "street": _QQ_FIX,
    "housenumber": _QQ_FIX,
    "state": _QQ_FIX,
    "county": _QQ_FIX,
    "district": _QQ_FIX,
    "prox": "v7 takes a position in 'at' as 'lat,lng' (a search circle: 'in' as 'circle:lat,lng;r=1000')",
    "maxresults": "v7 calls it 'limit'",
    "language": "v7 calls it 'lang'",
}

#: Human names of the problem kinds, for the counts in error messages and logs.
KIND_LABELS: dict[str, str] = {
    "source": "unreadable input",
    "header": "unusable header",
    "size": "input too large",
    "records": "too many records",
    "empty": "no records",
    "renumber": "records that would be renumbered",
    "not-utf8": "not UTF-8",
    "bare-cr": "carriage return (CR) inside a line",
    "bom": "byte-order mark inside the input",
    "nul": "NUL character",
    "blank": "blank line",
    "quotes": "unbalanced quotes",
    "value-count": "wrong number of values",
    "line-length": "line longer than 4096 characters",
    "recid-length": "recId longer than 512 characters",
    "recid-empty": "empty recId",
    "at": "'at' not a position",
    "id": "not a HERE id",
    "query-form": "not a URL query string",
    "no-query": "no query parameter",
    "parameter": "parameter name HERE does not know",
    "row": "unusable row",
    "line-break": "line break inside a value",
    "recid-duplicate": "recId given to more than one record",
}
_FATAL_KINDS = frozenset({"source", "header", "size", "records", "empty", "renumber", "recid-duplicate"})


# -- problems and reports --------------------------------------------------------------------------


@dataclass(frozen=True)
class InputProblem:
    """One thing wrong with the input.

    :param kind: a key of :data:`KIND_LABELS` (``not-utf8``, ``value-count`` …).
    :param message: what is wrong and how to fix it (no location).
    :param line: 1-based line number (header = 1); ``None`` for the input as a whole.
    :param where: the location as the user knows it (``line 3``, ``row 2``, ``the header``).
    :param field: the column, limit or setting concerned (``q``, ``recId``, ``encoding`` …).
    """

    kind: str
    message: str
    line: int | None = None
    where: str = "input"
    field: str | None = None

    @property
    def fatal(self) -> bool:
        """Whether the input as a whole is unusable (skipping records cannot help)."""
        return self.kind in _FATAL_KINDS

    def __str__(self) -> str:
        return self.message if self.where == "input" else f"{self.where}: {self.message}"


def _count_text(counts: Mapping[str, int]) -> str:
    return ", ".join(
        f"{KIND_LABELS.get(k, k)}: {n:,}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])
    )


class InputValidationError(ValueError):
    """The input would be refused or changed by HERE; nothing has been uploaded.

    :param problems: the first problems found (at most :data:`MAX_PROBLEMS_SHOWN`), in input order.
    :param counts: number of problems of each kind in the whole input (or as far as it was read).

    ``line`` and ``field`` are those of the first problem. The message names each problem's line (or
    row) and field and the fix; with several problems it starts with the counts by kind.
    """

    def __init__(
        self,
        problems: Sequence[InputProblem] | str,
        *,
        counts: Mapping[str, int] | None = None,
        line: int | None = None,
        field: str | None = None,
        kind: str = "source",
    ) -> None:
        if isinstance(problems, str):
            problems = [
                InputProblem(kind, problems, line, f"line {line}" if line is not None else "input", field)
            ]
        self.problems: list[InputProblem] = list(problems)
        self.counts: dict[str, int] = dict(counts) if counts else dict(Counter(p.kind for p in problems))
        first = self.problems[0]
        self.line = first.line
        self.field = first.field
        total = sum(self.counts.values())
        if total <= 1:
            text = f"input {first}" if first.where != "input" else first.message
        else:
            shown = "\n".join(f"  {p}" for p in self.problems)
            more = total - len(self.problems)
            text = (
                f"input: {total:,} problems ({_count_text(self.counts)}); "
                + (f"the first {len(self.problems)}" if more > 0 else "they are")
                + ":\n"
                + shown
                + (f"\n  ... and {more:,} more" if more > 0 else "")
            )
        super().__init__(text)


@dataclass
class InputReport:
    """What a pass over the input found.

    :param records: records to upload (header excluded; rejected records excluded).
    :param rejected: records left out (``on_bad_record="skip"``), each with a problem.
    :param counts: problems by kind (see :data:`KIND_LABELS`).
    :param problems: the first :data:`MAX_PROBLEMS_SHOWN` problems.
    :param warnings: things that may be wrong but do not stop the upload (unknown columns).
    :param bytes: UTF-8 size of the upload, line breaks included.
    :param columns: the descriptor's value columns (``None`` for URL-query-form input).
    :param defaults: the descriptor's constant ``name=value`` columns.
    :param has_header: whether the first line is a column header.
    :param query_form: whether the records are URL query strings.
    :param bom: a UTF-8 byte-order mark was stripped from the start.
    :param crlf: some lines ended with CRLF (uploaded as LF).
    :param lines: lines read, header and bad ones included.
    """

    records: int = 0
    rejected: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[InputProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes: int = 0
    columns: list[str] | None = None
    defaults: dict[str, str] = field(default_factory=dict)
    has_header: bool = False
    query_form: bool = False
    bom: bool = False
    crlf: bool = False
    lines: int = 0

    @property
    def recid_column(self) -> bool:
        """Whether records carry their own recId (else HERE numbers them by position)."""
        if self.query_form:
            return True  # each URL-query record may carry recId=...; checked per record
        return self.columns is not None and "recId" in self.columns

    @property
    def unchanged(self) -> bool:
        """Whether the upload is byte for byte the input (no BOM, no CR, nothing rejected)."""
        return not (self.bom or self.crlf or self.rejected)


class CheckedLine(NamedTuple):
    """One input line after the check.

    :param number: 1-based line number (header = 1).
    :param text: the line as it is uploaded, without its line break (BOM and CRLF's CR removed); for
        a line that is not UTF-8, its bytes with the bad ones shown as ``\\xNN``.
    :param header: the line is the column header.
    :param problems: what is wrong with it; empty for a good line.
    """

    number: int
    text: str
    header: bool = False
    problems: tuple[InputProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


_new_line = functools.partial(tuple.__new__, CheckedLine)  # CheckedLine(...) without Python code


class RejectedRow(str):
    """A row that :func:`rows_to_lines` could not turn into a line (``on_bad_row="mark"``).

    The string is the row as JSON (for the rejects file, never uploaded); ``problems`` says why.
    """

    problems: tuple[InputProblem, ...]

    def __new__(cls, text: str, problems: Sequence[InputProblem]) -> RejectedRow:
        obj = super().__new__(cls, text)
        obj.problems = tuple(problems)
        return obj


# -- value rules -----------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
# HERE ids look like here:pds:place:276u33db-..., here:af:streetsection:tVuv...:CgcI..., here:cm:...;
# HERE does not document the grammar, so only this shape is required (safe: a bare number such as a
# 6.2 LocationId or a database key is refused; any id HERE hands out has the shape).
_HERE_ID = re.compile(r"here:[A-Za-z0-9]+:[A-Za-z0-9_]+:\S+")


def at_problem(value: str) -> str | None:
    """Why ``value`` is not a HERE position ``lat,lng`` (two decimal numbers, lat in -90..90, lng in
    -180..180), or ``None`` when it is one. Spaces are refused: HERE's docs never show them, and
    whether it trims them is not documented."""
    parts = value.split(",")
    if len(parts) != 2 or not all(_NUMBER.fullmatch(p) for p in parts):
        return (
            f"'at' is {value[:60]!r}, not a position: write 'lat,lng' as two decimal numbers with no "
            "spaces, e.g. '52.5308,13.3847'"
        )
    lat, lng = float(parts[0]), float(parts[1])
    wrong = []
    if not -90.0 <= lat <= 90.0:
        wrong.append(f"latitude {parts[0]} is outside -90..90")
    if not -180.0 <= lng <= 180.0:
        wrong.append(f"longitude {parts[1]} is outside -180..180")
    if not wrong:
        return None
    hint = ""
    if -90.0 <= lng <= 90.0 and -180.0 <= lat <= 180.0:
        hint = " (latitude and longitude swapped? HERE wants 'lat,lng')"
    return f"'at' is {value!r}: {' and '.join(wrong)}{hint}: fix the position"


def here_id_problem(value: str) -> str | None:
    """Why ``value`` is not a HERE id (``here:<namespace>:<type>:<id>``), or ``None`` when it is one."""
    if _HERE_ID.fullmatch(value):
        return None
    return (
        f"'id' is {value[:60]!r}, not a HERE id: lookup takes ids from HERE's v7 Geocoding & Search "
        "answers, such as 'here:pds:place:276u33db-8097f3194e4b411081b761ea9a366776' (ids from the 6.2 "
        "API or your own keys do not work)"
    )


# -- line sources ----------------------------------------------------------------------------------

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def sniff_format(head: bytes) -> str:
    """What the first bytes of an input are: ``gzip``, ``zip``, ``bzip2``, ``xz``, ``zstd``,
    ``utf-16`` (a UTF-16 byte-order mark) or ``text``.

    Magic bytes decide, not the file name: ``1f 8b`` cannot start UTF-8 text (``8b`` is a continuation
    byte), so reading a gzip file decompressed whatever its name can never misread a text file.
    """
    for magic, name in _MAGIC:
        if head.startswith(magic):
            if name == "bzip2" and not (len(head) >= 4 and head[3:4].isdigit()):
                continue
            return name
    return "text"


def _unsupported_format(fmt: str) -> InputValidationError:
    if fmt == "utf-16":
        message = (
            "the file is UTF-16 encoded (it starts with a UTF-16 byte-order mark); HERE reads UTF-8: "
            "save it as UTF-8"
        )
    else:
        message = (
            f"the file is {fmt}-compressed; only gzip is read: decompress it, or recompress it with gzip"
        )
    return InputValidationError(message, field="encoding")


class _TooLong(bytes):
    """The start of a line longer than :data:`MAX_RAW_LINE_BYTES` (the rest was not kept)."""


def _split_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    skipping = False
    for chunk in chunks:
        data = rest + chunk if rest else chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if skipping:
                skipping = False
            else:
                yield data[start : end + 1]
            start = end + 1
        rest = data[start:]
        if len(rest) > MAX_RAW_LINE_BYTES and not skipping:
            yield _TooLong(rest[: MAX_LINE_LENGTH * 4])
            skipping, rest = True, b""
        elif skipping:
            rest = b""
    if rest and not skipping:
        yield rest


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress a gzip stream (one or more members, as ``cat a.gz b.gz`` makes) chunk by chunk."""
    decompressor = zlib.decompressobj(47)
    fed = False  # the current member has received data
    try:
        for chunk in chunks:
            while chunk:
                fed = True
                out = decompressor.decompress(chunk)
                if out:
                    yield out
                chunk = b""
                if decompressor.eof:  # another member may follow
                    chunk = decompressor.unused_data
                    decompressor, fed = zlib.decompressobj(47), False
        if fed and not decompressor.eof:
            raise InputValidationError(
                "the file is gzip-compressed but ends early (a truncated copy or download): get a "
                "complete copy",
                field="encoding",
            )
    except zlib.error as exc:
        raise InputValidationError(
            f"the file is gzip-compressed but its data is damaged ({exc}): recompress it",
            field="encoding",
        ) from None


def iter_input_lines(stream: IO[bytes], *, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    """The lines of a binary file object, split at ``\\n`` only, line breaks kept.

    Gzip data is recognised by its magic bytes and decompressed on the fly (the name does not
    matter); other compressed formats and UTF-16 are refused. The stream is read a line (or a chunk)
    at a time: memory stays flat whatever the size; a single line longer than 1 MB is cut (and
    reported as too long).

    :raises InputValidationError: for another compression format, UTF-16, or a damaged gzip stream.
    """
    head = stream.read(8)
    if isinstance(head, str):  # a text-mode handle: its lines are already decoded
        raise TypeError("iter_input_lines needs a binary file object (open it with 'rb')")
    fmt = sniff_format(head)
    if fmt not in ("text", "gzip"):
        raise _unsupported_format(fmt)
    try:
        seekable = bool(head) and stream.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    # fsspec's files (s3://, gs://, ...) have a readline() without a size: read them in chunks.
    native = isinstance(stream, (io.BufferedIOBase, io.RawIOBase))
    if seekable and (native or fmt == "gzip"):
        # The C readline of a buffered file (or of gzip's reader) splits at b"\n" only.
        stream.seek(-len(head), io.SEEK_CUR)
        if fmt == "gzip":
            with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
                yield from _gzip_errors(_readlines(unzipped))  # type: ignore[arg-type]
        else:
            yield from _readlines(stream)
        return

    def chunks() -> Iterator[bytes]:
        yield head
        while chunk := stream.read(chunk_size):
            yield chunk

    if fmt == "gzip":
        yield from _split_chunks(_gunzip(chunks()))
    else:
        yield from _split_chunks(chunks())


def _readlines(source: IO[bytes]) -> Iterator[bytes]:
    readline = source.readline
    limit = MAX_RAW_LINE_BYTES
    while line := readline(limit):
        if len(line) == limit and line[-1:] != b"\n":
            yield _TooLong(line[: MAX_LINE_LENGTH * 4])
            while (more := readline(limit)) and more[-1:] != b"\n":
                pass
            continue
        yield line


def _gzip_errors(lines: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from lines
    except EOFError:
        raise InputValidationError(
            "the file is gzip-compressed but ends early (a truncated copy or download): get a complete copy",
            field="encoding",
        ) from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputValidationError(
            f"the file is gzip-compressed but its data is damaged ({exc}): recompress it",
            field="encoding",
        ) from None


def split_text(text: str) -> Iterator[str]:
    """Lines of inline text, split at ``\\n`` only (line breaks kept), like a file's lines."""
    start = 0
    while True:
        end = text.find("\n", start)
        if end < 0:
            if start < len(text):
                yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


# -- rows -> lines ---------------------------------------------------------------------------------


def _row_value_problem(value: Any) -> str | None:
    if value is None:
        return (
            "is None (null): HERE has no null value; pass '' if the value is meant to be empty, or "
            "leave the row out"
        )
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            return (
                f"holds a line break ({value[:40]!r}…): HERE ends a record at every line break, even "
                "inside quotes, so it would become two broken records: replace it with a space"
            )
        return None
    if isinstance(value, bool):
        return f"is a bool ({value}): write the text HERE expects, e.g. 'true'"
    if isinstance(value, float) and not math.isfinite(value):
        return f"is {value}: give a number or text"
    if isinstance(value, (int, float, Decimal)):
        return None
    kind = type(value).__name__
    return (
        f"is a {kind}, not text or a number: HERE takes one text value per column; flatten it (e.g. "
        "qq='city=Berlin;street=Invalidenstr.'), or pass str(value) or json.dumps(value) if that text "
        "is what HERE should get"
    )


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _row_json(row: Any) -> str:
    try:
        return json.dumps(row, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(row)


def rows_to_lines(
    rows: Iterable[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    delimiter: str = "|",
    on_bad_row: Literal["raise", "mark"] = "raise",
) -> Iterator[str]:
    """The one place where rows become HERE lines: a header, then one ``\\n``-terminated line per row.

    A value is written as given: text as it is, ``int``/``Decimal`` with ``str``, ``float`` with
    ``repr``; a value holding the delimiter is quoted (:func:`~airflow_here_batch.api.records.
    format_record`). Refused, naming the row, the field and the fix: a row that is not a mapping, a
    row missing one of the columns or carrying another key, a ``None`` value, a value that is a
    dict/list/bytes/bool or other object (never its Python repr), a value holding a line break (HERE
    would split the record).

    :param rows: mappings of column name to value (e.g. XCom rows, database rows as dicts).
    :param columns: the columns, in order; by default the keys of the first row.
    :param delimiter: the input delimiter (one character, or ``\\t``).
    :param on_bad_row: ``"raise"``: :class:`InputValidationError` at the first bad row; ``"mark"``:
        yield a :class:`RejectedRow` for it instead (:class:`InputChecker` reports and rejects it).
    :raises InputValidationError: see ``on_bad_row``; and when the header cannot be known (the first
        row is not a mapping and no ``columns``).
    """
    delim = decode_delimiter(delimiter)
    header: list[str] | None = [str(c) for c in columns] if columns else None
    if header is not None:
        yield format_record(header, delim) + "\n"
    for number, row in enumerate(rows, start=1):
        where = f"row {number}"
        line = number + 1
        problems: list[InputProblem] = []
        if not isinstance(row, Mapping):
            problems.append(
                InputProblem(
                    "row",
                    f"is a {type(row).__name__}, not a dict: pass a list of dicts such as "
                    "[{'recId': '1', 'q': 'Berlin'}]",
                    line,
                    where,
                    "rows",
                )
            )
            if header is None:
                raise InputValidationError(problems)
        else:
            if header is None:
                header = [str(k) for k in row]
                yield format_record(header, delim) + "\n"
            keys = {str(k): v for k, v in row.items()}
            missing = [c for c in header if c not in keys]
            extra = [k for k in keys if k not in header]
            if missing:
                problems.append(
                    InputProblem(
                        "row",
                        f"has no {', '.join(repr(c) for c in missing)} (the columns are "
                        f"{format_record(header, delim)}): give every row every column ('' for an "
                        "empty value)",
                        line,
                        where,
                        missing[0],
                    )
                )
            if extra:
                problems.append(
                    InputProblem(
                        "row",
                        f"has keys {extra} that the columns ({format_record(header, delim)}) lack: "
                        "pass columns= with every column, or give every row the same keys",
                        line,
                        where,
                        extra[0],
                    )
                )
            for name in header:
                if name in keys:
                    why = _row_value_problem(keys[name])
                    if why is not None:
                        kind = "line-break" if "line break" in why else "row"
                        problems.append(InputProblem(kind, f"field {name!r} {why}", line, where, name))
        if problems:
            if on_bad_row == "raise":
                raise InputValidationError(problems)
            yield RejectedRow(_row_json(row), problems)
            continue
        assert header is not None
        yield format_record([_cell(keys[c]) for c in header], delim) + "\n"


# -- the checker -----------------------------------------------------------------------------------


def _shown(delimiter: str) -> str:
    return "'\\t'" if delimiter == "\t" else repr(delimiter)


def _example(service: ServiceType) -> str:
    return {
        ServiceType.GEOCODE: "'recId|q' with records like '1|Invalidenstraße 116, Berlin'",
        ServiceType.REVGEOCODE: "'recId|at' with records like '1|52.5308,13.3847'",
        ServiceType.LOOKUP: "'recId|id' with records like '1|here:pds:place:276u33db-...'",
    }[service]


_LIKELY_DELIMITERS = ("|", ";", ",", "\t", ":")


def _line_label(number: int) -> str:
    return f"line {number}"


class InputChecker:
    """HERE's input rules, checked in one streaming pass.

    Usage (also for a splitter that cuts a big input into jobs)::

        checker = InputChecker(service="geocode", delimiter="|")
        for checked in checker.check(lines):      # lines: str or bytes, one at a time
            if checked.ok:
                upload(checked.text + "\\n")       # the header first (checked.header), then records
            else:
                reject(checked)                   # checked.problems say why
        checker.duplicate_recids(reread)          # recIds on more than one record (see below)
        checker.report                            # counts, warnings, header facts

    ``check`` raises :class:`InputValidationError` at once for a problem with the input as a whole
    (unreadable format, unusable header, a limit exceeded) and, at the end, when there is no record.
    Record problems are never raised by ``check``: they come with the line, counted in ``report``.

    **Repeated recIds** can only be known once every record was seen: after ``check``,
    :meth:`duplicate_recids` returns a problem per recId that more than one good record holds (nothing
    may be uploaded before it was called). ``check`` keeps 8 bytes per record for it
    (:class:`~airflow_here_batch.api.recids.UniqueRecIds`).

    :param service: ``geocode``, ``revgeocode``, ``lookup`` or an HRN; enables the key-column checks.
    :param input_columns: the column descriptor sent as ``inputColumns``; then the first line is a
        record (a first line equal to the descriptor is refused: HERE would geocode it).
    :param delimiter: the input delimiter (one character, or ``\\t``).
    :param max_records: record limit (HERE: 1,000,000).
    :param max_bytes: size limit in bytes (HERE: 500 MB uncompressed).
    :param label: how line ``n`` is named in messages (default ``line n``; rows: ``row n-1``).
    :param unique_recids: keep the recIds' hashes for :meth:`duplicate_recids` (off for a pass that
        follows a validation pass, such as the upload's).
    :param allow_empty: an input with no record (empty, or a header alone) is not refused: ``check``
        ends with ``report.records == 0`` (a split has then nothing to send; a single job still refuses).
        An input of blank lines only is refused all the same (it has no header).
    """

    def __init__(
        self,
        *,
        service: ServiceType | str | None = None,
        input_columns: str | Sequence[str] | None = None,
        delimiter: str = "|",
        max_records: int = MAX_RECORDS,
        max_bytes: int = MAX_INPUT_BYTES,
        label: Callable[[int], str] = _line_label,
        unique_recids: bool | UniqueRecIds = True,
        allow_empty: bool = False,
    ) -> None:
        try:
            delim = decode_delimiter(delimiter)
        except ValueError:
            raise InputValidationError(
                f"input_delimiter {delimiter!r} must be one character (or '\\t' for a tab); HERE "
                "recommends '|'",
                field="input_delimiter",
            ) from None
        if delim in ("\n", "\r", '"'):
            raise InputValidationError(
                f"input_delimiter {delimiter!r} cannot be used: choose '|', ';', ',' or a tab",
                field="input_delimiter",
            )
        self.delimiter = delim
        self.service = ServiceType.from_name(service) if service is not None else None
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.label = label
        self.allow_empty = allow_empty
        self._settings = {
            "service": service,
            "input_columns": input_columns,
            "delimiter": delimiter,
            "max_records": max_records,
            "max_bytes": max_bytes,
            "label": label,
            "allow_empty": True,
        }
        if isinstance(unique_recids, UniqueRecIds):
            self.recids: UniqueRecIds | None = unique_recids
        else:
            self.recids = UniqueRecIds() if unique_recids else None
        self._recid: str | None = None  # the recId of the record _record checked last
        self.report = InputReport()
        self._descriptor: ColumnDescriptor | None = None
        self._given_columns = False
        self._blank_first = False
        self._crlf = False
        # (delimiter as bytes, delimiters per record, value checks needed or None), set by _header
        self._fast: tuple[bytes, int, object | None] | None = None
        self._value_index: tuple[int | None, int | None, int | None] = (None, None, None)
        self._counter: Counter[str] = Counter()
        if input_columns:
            text = (
                input_columns
                if isinstance(input_columns, str)
                else format_record([str(c) for c in input_columns], delim)
            )
            self._descriptor = self._header(text, None, "input_columns")
            self._given_columns = True

    # -- public -------------------------------------------------------------------------------------

    def check(self, lines: Iterable[str | bytes]) -> Iterator[CheckedLine]:
        """Check each line; yields a :class:`CheckedLine` per input line, in order."""
        it = iter(lines)
        number = 0
        for raw in it:  # the first line decides header, query form and line endings
            number += 1
            checked = self._line(number, raw)
            if checked is not None:
                yield checked
            break
        if self._fast is None:
            for raw in it:
                number += 1
                checked = self._line(number, raw)
                if checked is not None:
                    yield checked
        else:
            # The common line, checked with a few C-level calls: UTF-8 bytes, LF (or the input's
            # CRLF), no quote, no CR/NUL/BOM, the descriptor's number of delimiters, short, and
            # recId/at/id (when present) plainly fine. Anything else takes the full path
            # (a property test checks that both agree).
            delim_b, seps, checks = self._fast
            crlf, delim, values_ok, full = self._crlf, self.delimiter, self._values_ok, self._line
            rep, max_records, max_bytes = self.report, self.max_records, self.max_bytes
            recid_at = self._value_index[0]
            add_recid = self.recids.add if self.recids is not None and recid_at is not None else None
            for raw in it:
                number += 1
                if raw.__class__ is bytes:
                    body = raw[:-1] if raw[-1:] == b"\n" else raw
                    if crlf and body[-1:] == b"\r":
                        body = body[:-1]
                    if (
                        body.count(delim_b) == seps
                        and len(body) <= MAX_LINE_LENGTH
                        and b'"' not in body
                        and b"\r" not in body
                        and b"\x00" not in body
                        and body[:3] != b"\xef\xbb\xbf"
                    ):
                        try:
                            text = body.decode("utf-8")
                        except UnicodeDecodeError:
                            text = None
                        cells = text.split(delim) if text is not None and checks is not None else None
                        if text is not None and (cells is None or values_ok(cells)):
                            size = len(body) + 1
                            if rep.records + rep.rejected < max_records and rep.bytes + size <= max_bytes:
                                rep.records += 1
                                rep.bytes += size
                                if add_recid is not None:
                                    add_recid(cells[recid_at], number)  # type: ignore[index]
                                yield _new_line((number, text, False, ()))
                                continue
                checked = full(number, raw)
                if checked is not None:
                    yield checked
        self.report.lines = number
        self._finish(number)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counter)

    def duplicate_recids(
        self,
        reread: Callable[[], AbstractContextManager[Iterable[str | bytes]]] | None = None,
    ) -> list[InputProblem]:
        """After :meth:`check`: a problem (kind ``recid-duplicate``) per recId that more than one good
        record holds, also counted in ``report``; call it once.

        Each problem names the first two records and the recId: ``line 7 and line 12: both have recId
        'A-1'; recIds must be unique within a job (HERE returns results by recId) ...``. Records that
        carry no recId (HERE numbers them) and records with other problems are not compared.

        :param reread: opens the same input again (a context manager giving its lines, as the one
            given to ``check``). Needed only when two recIds' hashes are equal: the second pass
            confirms on the text and finds the lines. Without it such an input is refused with a
            problem that cannot name the lines (two different recIds with one 64-bit hash are possible
            but about 1 chance in 10^7 for a million records).
        """
        recids = self.recids
        if recids is None or not recids.finish():
            return []
        if reread is None:
            repeats = recids.unconfirmed
            problems = [
                InputProblem(
                    "recid-duplicate",
                    f"{repeats:,} recId{'s are' if repeats > 1 else ' is'} given to more than one record "
                    f"(the input could be read only once, so the records are not named); {RECID_RULE}: "
                    "give each record its own id",
                    None,
                    "input",
                    "recId",
                )
            ]
        else:
            twin = InputChecker(**self._settings, unique_recids=recids)  # type: ignore[arg-type]
            with reread() as lines:
                for _ in twin.check(lines):
                    pass
            recids.finish()
            problems = [self._duplicate_problem(d) for d in recids.duplicates()]
        self._note(problems)
        return problems

    def _duplicate_problem(self, duplicate: DuplicateRecId) -> InputProblem:
        return InputProblem(
            "recid-duplicate",
            duplicate.problem(),
            duplicate.lines[0],
            duplicate.where(self.label),
            "recId",
        )

    # -- internals ----------------------------------------------------------------------------------

    def _fatal(self, message: str, number: int | None, field: str, kind: str = "header") -> None:
        where = self.label(number) if number is not None else "input"
        problem = InputProblem(kind, message, number, where, field)
        problems = [problem, *self.report.problems[: MAX_PROBLEMS_SHOWN - 1]]
        counts = dict(self._counter)
        counts[kind] = counts.get(kind, 0) + 1
        raise InputValidationError(problems, counts=counts)

    def _note(self, problems: list[InputProblem]) -> None:
        for p in problems:
            self._counter[p.kind] += 1
            if len(self.report.problems) < MAX_PROBLEMS_SHOWN:
                self.report.problems.append(p)
        self.report.counts = dict(self._counter)

    def _decode(self, number: int, raw: str | bytes) -> tuple[str, list[InputProblem]]:
        problems: list[InputProblem] = []
        rep = self.report
        if isinstance(raw, bytes):
            if isinstance(raw, _TooLong):
                text = raw.decode("utf-8", "backslashreplace")
                problems.append(
                    self._problem(
                        number,
                        "line-length",
                        f"is longer than {MAX_RAW_LINE_BYTES:,} bytes; HERE accepts at most "
                        f"{MAX_LINE_LENGTH} characters per record: shorten it (or is this not a "
                        "text file?)",
                        "record",
                    )
                )
                return text, problems
            if number == 1:
                fmt = sniff_format(raw[:8])
                if fmt != "text":
                    if fmt == "gzip":
                        raise InputValidationError(
                            "the data is gzip-compressed: pass a .gz file or bytes as input (they are "
                            "read decompressed), or decompress it",
                            field="encoding",
                        )
                    raise _unsupported_format(fmt)
                if raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                    rep.bom = True
            body = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = body.decode("utf-8", "backslashreplace")
                bad = body[exc.start : exc.start + 1].hex().upper()
                column = len(body[: exc.start].decode("utf-8", "replace")) + 1
                problems.append(
                    self._problem(
                        number,
                        "not-utf8",
                        f"is not UTF-8 (byte 0x{bad} at character {column}; the file looks "
                        "Latin-1/Windows-1252 encoded): save the file as UTF-8 (e.g. iconv -f "
                        "WINDOWS-1252 -t UTF-8 in.csv > out.csv)",
                        "encoding",
                    )
                )
        else:
            text = raw[:-1] if raw.endswith("\n") else raw
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
                rep.bom = True
        # CRLF: the first line's ending sets the input's convention. In a CRLF input the CR before
        # each LF is a line ending and is not uploaded; in an LF input a CR before the LF is part of
        # the last value, so it is refused as a bare CR (never silently cut from the value).
        ends_lf = raw.endswith(b"\n" if isinstance(raw, bytes) else "\n")
        if number == 1 and ends_lf:
            self._crlf = text.endswith("\r")
        if ends_lf and self._crlf and text.endswith("\r"):
            text = text[:-1]
            rep.crlf = True
        return text, problems

    def _problem(self, number: int, kind: str, message: str, field: str | None) -> InputProblem:
        return InputProblem(kind, message, number, self.label(number), field)

    def _values_ok(self, cells: list[str]) -> bool:
        recid, at, here_id = self._value_index
        if recid is not None and not (cells[recid].strip() and len(cells[recid]) <= MAX_RECID_LENGTH):
            return False
        if at is not None and cells[at] and at_problem(cells[at]) is not None:
            return False
        return not (here_id is not None and cells[here_id] and here_id_problem(cells[here_id]) is not None)

    def _line(self, number: int, raw: str | bytes) -> CheckedLine | None:
        if isinstance(raw, RejectedRow):
            self._note(list(raw.problems))
            self.report.rejected += 1
            return CheckedLine(number, str(raw), False, raw.problems)
        text, problems = self._decode(number, raw)
        if "\r" in text:
            if number == 1 and not self._given_columns:
                self._fatal(
                    "holds a carriage return (CR) that does not end a line: the file has CR-only "
                    "(classic Mac) line endings, which HERE does not read as line breaks (it would see "
                    "one line): convert them to LF (e.g. dos2unix -c mac in.csv)",
                    number,
                    "line endings",
                )
            problems.append(
                self._problem(
                    number,
                    "bare-cr",
                    "holds a carriage return (CR) that does not end the line (CR-only line endings, "
                    "a CR inside a value, or a CRLF ending while line 1 ends with LF alone); HERE "
                    "reads only LF as a line break: use one line ending (LF or CRLF) for the whole "
                    "input and remove the CR from the values",
                    "line endings",
                )
            )
        if "\n" in text:
            problems.append(
                self._problem(
                    number,
                    "line-break",
                    "holds a line break inside the record: HERE ends a record at every line break, "
                    "even inside quotes; replace it with a space",
                    "record",
                )
            )
        if number == 1 and self._descriptor is None and not self.report.query_form:
            if not text.strip():
                self._blank_first = True
                return None
            if problems:
                self._fatal(problems[0].message, number, problems[0].field or "header", "header")
            if is_query_form(text, self.delimiter):
                self.report.query_form = True
            else:
                self._descriptor = self._header(text, number, "the header")
                self.report.has_header = True
                self.report.bytes += len(text.encode("utf-8")) + 1
                return CheckedLine(number, text, True)
        elif self._blank_first and self._descriptor is None and not self.report.query_form:
            if not text.strip():
                return None
            self._fatal(
                "is blank: HERE reads the first line as the column header; remove the blank line(s) "
                "before the header",
                1,
                "header",
            )
        if number == 1 and self._given_columns and not problems:
            first = [v.strip() for v in _split_quiet(text, self.delimiter)]
            assert self._descriptor is not None
            if first and [c.lower() for c in first] == [c.lower() for c in self._descriptor.columns]:
                self._fatal(
                    "repeats input_columns as a header; HERE would process it as a record: drop "
                    "input_columns (the header is enough) or remove the header line",
                    number,
                    "header",
                )
        self._recid = None
        if not problems:
            problems = self._record(number, text)
        rep = self.report
        if problems:
            self._note(problems)
            rep.rejected += 1
        else:
            rep.records += 1
            rep.bytes += len(text.encode("utf-8")) + 1
            if self._recid is not None and self.recids is not None:
                self.recids.add(self._recid, number)
        if rep.records + rep.rejected > self.max_records:
            self._fatal(
                f"the input has more than {self.max_records:,} records, HERE's per-job limit: split it "
                "into several jobs",
                number,
                "records",
                "records",
            )
        if rep.bytes > self.max_bytes:
            self._fatal(
                f"the input exceeds {self.max_bytes // (1024 * 1024)} MB uncompressed, HERE's per-job "
                "limit: split it into several jobs",
                number,
                "size",
                "size",
            )
        return CheckedLine(number, text, False, tuple(problems))

    def _header(self, text: str, number: int | None, where: str) -> ColumnDescriptor:
        delim = self.delimiter
        field = "input_columns" if number is None else "header"
        try:
            raw_names = split_record(text, delim)
            descriptor = parse_column_descriptor(text, delim)
        except (ValueError, RecordFormatError) as exc:
            self._fatal(
                f"{where} {text[:80]!r} is not a column descriptor ({exc}): write column names "
                f"separated by {_shown(delim)}, or pass input_columns",
                number,
                field,
            )
            raise AssertionError from None  # unreachable
        messages: list[str] = []
        if len(raw_names) == 1:
            other = next((c for c in _LIKELY_DELIMITERS if c != delim and c in text), None)
            if other is not None:
                self._fatal(
                    f"{where} {text[:80]!r} has a single column with input_delimiter {_shown(delim)}, "
                    f"but contains {_shown(other)}: set input_delimiter={_shown(other)} or convert the "
                    "file",
                    number,
                    "input_delimiter",
                )
        seen: dict[str, int] = {}
        for index, raw_name in enumerate(raw_names, start=1):
            name = raw_name.split("=", 1)[0] if "=" in raw_name else raw_name
            if name != name.strip():
                messages.append(
                    f"column {index} {raw_name!r} has spaces around its name; HERE's parameter names "
                    f"are exact: write {name.strip()!r}"
                )
            name = name.strip()
            if name in seen:
                messages.append(f"column {name!r} appears twice (columns {seen[name]} and {index}): keep one")
            seen.setdefault(name, index)
            messages.extend(self._name_problems(name))
        names = set(seen)
        if self.service is not None:
            required = REQUIRED_COLUMNS.get(self.service, ())
            if required and not names & set(required):
                wanted = " or ".join(repr(r) for r in required)
                messages.append(
                    f"has no {wanted} column, which the {self.service.value} service needs: add it "
                    f"(e.g. {_example(self.service)})"
                )
        if messages:
            problems = [
                InputProblem(
                    "header",
                    f"{where}: {m}" if number is None else m,
                    number,
                    self.label(number) if number is not None else "input",
                    field,
                )
                for m in messages
            ]
            raise InputValidationError(problems[:MAX_PROBLEMS_SHOWN], counts={"header": len(problems)})
        for name in descriptor.columns + list(descriptor.defaults):
            if name not in V7_PARAMETERS:
                warning = (
                    f"column {name!r} is not a HERE v7 parameter this provider knows "
                    f"({', '.join(V7_PARAMETERS)}); HERE may ignore it or fail the records"
                )
                if warning not in self.report.warnings:
                    self.report.warnings.append(warning)
        self.report.columns, self.report.defaults = descriptor.columns, descriptor.defaults
        columns = descriptor.columns

        def index(name: str) -> int | None:
            return columns.index(name) if name in columns else None

        lookup = self.service is ServiceType.LOOKUP
        self._value_index = (index("recId"), index("at"), index("id") if lookup else None)
        # (a constant recId=... in the header is every record's: the full path sees it)
        constant_recid = "recId" in descriptor.defaults
        if len(columns) >= 2 and not delim.isspace() and delim.isascii() and not constant_recid:
            checks = object() if any(i is not None for i in self._value_index) else None
            self._fast = (delim.encode("ascii"), len(columns) - 1, checks)
        return descriptor

    @staticmethod
    def _name_problems(name: str) -> list[str]:
        lower = name.lower()
        known = _V7_BY_LOWER.get(lower)
        if known is not None and known != name:
            return [
                f"column {name!r} must be written {known!r}: HERE's parameter names are case-sensitive"
                + (" (HERE would number the records itself)" if known == "recId" else "")
            ]
        if known is None and lower in LEGACY_COLUMNS:
            return [
                f"column {name!r} is a Batch Geocoder 6.2 name, not a v7 parameter (every record would "
                f"fail with 'The query is empty'): {LEGACY_COLUMNS[lower]}"
            ]
        return []

    def _record(self, number: int, text: str) -> list[InputProblem]:
        problems: list[InputProblem] = []
        add = problems.append
        if not text.strip():
            add(
                self._problem(
                    number,
                    "blank",
                    "is blank: HERE counts every line as a record; remove blank lines",
                    "record",
                )
            )
            return problems
        if len(text) > MAX_LINE_LENGTH:
            add(
                self._problem(
                    number,
                    "line-length",
                    f"is {len(text)} characters long; HERE accepts at most {MAX_LINE_LENGTH} per record "
                    "(recId included): shorten the values",
                    "record",
                )
            )
            return problems
        if "\x00" in text:
            add(
                self._problem(
                    number,
                    "nul",
                    "holds a NUL character (\\x00): is the file UTF-16 or binary? Save it as UTF-8 text",
                    "record",
                )
            )
        if text.startswith("\ufeff"):
            add(
                self._problem(
                    number,
                    "bom",
                    "starts with a byte-order mark (U+FEFF), probably where two files were joined; HERE "
                    "would keep it in the first value: remove it",
                    "record",
                )
            )
        if self.report.query_form:
            if not is_query_form(text, None):
                add(
                    self._problem(
                        number,
                        "query-form",
                        "is not a URL query string like the first line (e.g. 'q=Berlin&limit=1'): use "
                        "one format for the whole input",
                        "record",
                    )
                )
                return problems
            params = parse_query_form(text)
            for name in params:
                for message in self._name_problems(name):
                    add(self._problem(number, "parameter", message, name))
            required = REQUIRED_COLUMNS.get(self.service, ()) if self.service is not None else ()
            if required and not any(r in params for r in required):
                wanted = " or ".join(repr(r) for r in required)
                add(
                    self._problem(
                        number,
                        "no-query",
                        f"has no {wanted} parameter, which the {self.service.value} service needs: add "
                        "it (e.g. 'q=Invalidenstr. 116, Berlin&recId=1')",
                        required[0],
                    )
                )
            values = params
        else:
            descriptor = self._descriptor
            assert descriptor is not None
            try:
                cells = split_record(text, self.delimiter)
            except RecordFormatError as exc:
                add(
                    self._problem(
                        number,
                        "quotes",
                        f"cannot be split ({exc}): wrap values holding {_shown(self.delimiter)} in "
                        'double quotes and double any " inside them',
                        "record",
                    )
                )
                return problems
            if len(cells) != len(descriptor.columns):
                add(
                    self._problem(
                        number,
                        "value-count",
                        f"has {len(cells)} values but the column descriptor has "
                        f"{len(descriptor.columns)} ({format_record(descriptor.columns, self.delimiter)})"
                        f": check input_delimiter ({_shown(self.delimiter)}) and wrap values that "
                        "contain it in double quotes",
                        "columns",
                    )
                )
                return problems
            values = dict(descriptor.defaults)
            values.update(zip(descriptor.columns, cells, strict=True))
        recid = self._recid = values.get("recId")
        if recid is not None:
            if len(recid) > MAX_RECID_LENGTH:
                add(
                    self._problem(
                        number,
                        "recid-length",
                        f"recId is {len(recid)} characters long; HERE accepts at most "
                        f"{MAX_RECID_LENGTH}: use shorter ids",
                        "recId",
                    )
                )
            elif not recid.strip():
                # What HERE does with an empty recId is not documented: its results could not be
                # matched to the record, so it is refused.
                add(
                    self._problem(
                        number,
                        "recid-empty",
                        "has an empty recId: its results could not be matched back; give every record an id",
                        "recId",
                    )
                )
        problems.extend(self._service_values(number, values))
        return problems

    def _service_values(self, number: int, values: Mapping[str, str]) -> list[InputProblem]:
        problems: list[InputProblem] = []
        svc = self.service
        at = values.get("at")
        if at:
            why = at_problem(at)
            if why is not None:
                problems.append(self._problem(number, "at", why, "at"))
        if svc is None:
            return problems
        # An empty query value passes: HERE fails that one record and lists it in the job's errors
        # report ("The query is empty"), so it is accounted for. A value in the wrong form is refused.
        if svc is ServiceType.LOOKUP:
            value = values.get("id", "")
            if value:
                why = here_id_problem(value)
                if why is not None:
                    problems.append(self._problem(number, "id", why, "id"))
        return problems

    def _finish(self, number: int) -> None:
        rep = self.report
        if rep.records or rep.rejected:
            return
        if self._blank_first:  # no header either: a broken export, refused even where empty is allowed
            hint = "; nothing to send is an empty file or a header alone" if self.allow_empty else ""
            self._fatal(
                f"the input holds only blank lines: it holds no records and no header{hint}",
                None,
                "records",
                "empty",
            )
        if self.allow_empty:
            return
        if number == 0:
            self._fatal("the input is empty: it holds no records", None, "records", "empty")
        detail = " (only a header)" if rep.has_header else ""
        self._fatal(f"the input holds no records{detail}: nothing to process", None, "records", "empty")


def _split_quiet(line: str, delimiter: str) -> list[str]:
    try:
        return split_record(line, delimiter)
    except RecordFormatError:
        return []


# -- passes ----------------------------------------------------------------------------------------


def _skip_needs_recids(report: InputReport, counts: Mapping[str, int]) -> InputValidationError:
    return InputValidationError(
        [
            InputProblem(
                "renumber",
                f"{report.rejected:,} records would be left out ({_count_text(counts)}), but the input "
                "has no recId column: HERE numbers such records by position, so every record after a "
                "left-out one would come back under another recId: add a recId column, or fix the "
                "records",
                None,
                "input",
                "recId",
            ),
            *report.problems[: MAX_PROBLEMS_SHOWN - 1],
        ],
        counts={"renumber": 1, **counts},
    )


def validate_lines(
    lines: Iterable[str | bytes],
    *,
    service: ServiceType | str | None = None,
    input_columns: str | Sequence[str] | None = None,
    delimiter: str = "|",
    max_records: int = MAX_RECORDS,
    max_bytes: int = MAX_INPUT_BYTES,
    on_bad_record: OnBadRecord = "fail",
    on_reject: Callable[[CheckedLine], None] | None = None,
    label: Callable[[int], str] = _line_label,
    reread: Callable[[], AbstractContextManager[Iterable[str | bytes]]] | None = None,
    allow_empty: bool = False,
) -> InputReport:
    """Check a whole input in one pass (see :class:`InputChecker`) and report what it holds.

    :param lines: the input's lines (``str``, or ``bytes`` as read from a file), one at a time.
    :param on_bad_record: ``"fail"``: any bad record fails; ``"skip"``: bad records are counted in
        ``report.rejected`` and passed to ``on_reject``; the input still fails when it has no good
        record, or has no recId column (leaving records out would renumber the rest).
    :param on_reject: called with each bad record's :class:`CheckedLine` (skip mode).
    :param reread: opens the same input again, for :meth:`InputChecker.duplicate_recids` (called only
        when two recIds' hashes are equal). Not needed when ``lines`` is a list or another sequence
        (it is read again).
    :param allow_empty: an input without records is not refused (``report.records == 0``; a split).
    :raises InputValidationError: with up to :data:`MAX_PROBLEMS_SHOWN` problems and the counts by
        kind of all of them (the whole input is read first, so one run shows them all). A recId that
        more than one good record holds fails the input in either mode: skipping would silently drop
        records whose only fault is that their key clashes, and which of them to keep is not ours to
        guess, so the user deduplicates.
    """
    checker = InputChecker(
        service=service,
        input_columns=input_columns,
        delimiter=delimiter,
        max_records=max_records,
        max_bytes=max_bytes,
        label=label,
        allow_empty=allow_empty,
    )
    skip = on_reject is not None and on_bad_record == "skip"
    for checked in checker.check(lines):
        if skip and checked.problems:
            on_reject(checked)  # type: ignore[misc]
    if reread is None and not isinstance(lines, Iterator):
        reread = functools.partial(contextlib.nullcontext, lines)
    duplicates = checker.duplicate_recids(reread)
    report = checker.report
    counts = checker.counts
    if duplicates:
        problems = [p for p in report.problems if p.kind != "recid-duplicate"]
        raise InputValidationError((duplicates + problems)[:MAX_PROBLEMS_SHOWN], counts=counts)
    if report.rejected:
        if on_bad_record != "skip":
            raise InputValidationError(report.problems, counts=counts)
        if not report.recid_column:
            raise _skip_needs_recids(report, counts)
        if not report.records:
            raise InputValidationError(
                [
                    InputProblem(
                        "empty",
                        f"every record of the input is bad ({_count_text(counts)}): nothing to process",
                        None,
                        "input",
                        "records",
                    ),
                    *report.problems[: MAX_PROBLEMS_SHOWN - 1],
                ],
                counts={"empty": 1, **counts},
            )
    return report


def upload_lines(
    lines: Iterable[str | bytes],
    *,
    service: ServiceType | str | None = None,
    input_columns: str | Sequence[str] | None = None,
    delimiter: str = "|",
    on_bad_record: OnBadRecord = "fail",
    check: bool = True,
    label: Callable[[int], str] = _line_label,
) -> Iterator[bytes]:
    """The lines to upload as UTF-8 bytes, each ending with ``\\n``: the input's lines with the BOM
    and CRLF's CR removed, bad records left out (skip mode) or refused (fail mode).

    Run it after :func:`validate_lines` passed (the upload is a second pass over the same input):
    then it raises only if the input changed in between. With ``check=False`` (the operator's
    ``validate_input=False``) nothing is refused or left out; only the BOM and the CRs of CRLF go.
    """
    if not check:
        for number, raw in enumerate(lines, start=1):
            data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            data = data[:-1] if data.endswith(b"\n") else data
            data = data[:-1] if data.endswith(b"\r") else data
            yield data + b"\n"
        return
    checker = InputChecker(
        service=service,
        input_columns=input_columns,
        delimiter=delimiter,
        max_records=MAX_RECORDS * 2,  # limits were enforced by the validation pass
        max_bytes=MAX_INPUT_BYTES * 2,
        label=label,
        unique_recids=False,  # so were repeated recIds
    )
    for checked in checker.check(lines):
        if not checked.problems:
            yield checked.text.encode("utf-8") + b"\n"
        elif on_bad_record != "skip":
            raise InputValidationError(list(checked.problems))
