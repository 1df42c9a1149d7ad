"""Input validation before upload, sans I/O: HERE's input rules checked line by line, streaming.

HERE checks an upload only after it has been accepted (a bad record lands in the job's error log, a
wrong delimiter makes every record invalid, too many records are refused with 413 after the whole file
travelled). :func:`validate_lines` applies the same rules to an iterable of lines before anything is
sent, and fails on the first problem with the line number, the field and the fix. It keeps one line at
a time in memory: pass a file object or a generator, never a list of the whole file.

Rules (shared doc ``here-batch-api-v7.md`` §8 and §11):

* the column descriptor comes from ``input_columns`` or from the first line (a header); lines in URL
  query form (``q=Berlin&limit=5``) need neither;
* each record has as many values as the descriptor has columns (``name=value`` entries are constant
  default columns and take no value); values holding the delimiter are wrapped in ``"``;
* a record line is at most 4096 characters, a ``recId`` at most 512;
* at most 1,000,000 records and 500 MB (uncompressed) per job;
* each service needs its key column: ``q`` or ``qq`` (geocode), ``at`` (revgeocode; ``in`` for a
  circle), ``id`` (lookup).

:func:`rows_to_lines` turns a list of dicts (rows from XCom, say) into a header plus record lines.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_here_batch.api.models import ServiceType
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
    "MAX_INPUT_BYTES",
    "MAX_RECORDS",
    "REQUIRED_COLUMNS",
    "InputReport",
    "InputValidationError",
    "iter_text_lines",
    "rows_to_lines",
    "validate_lines",
]

#: Most records HERE accepts in one job.
MAX_RECORDS = 1_000_000
#: Largest uncompressed input HERE accepts, in bytes.
MAX_INPUT_BYTES = 500 * 1024 * 1024

#: For each service, the columns of which a record needs at least one (HERE's backend query keys).
REQUIRED_COLUMNS: dict[ServiceType, tuple[str, ...]] = {
    ServiceType.GEOCODE: ("q", "qq"),
    ServiceType.REVGEOCODE: ("at", "in"),
    ServiceType.LOOKUP: ("id",),
}

_LIKELY_DELIMITERS = ("|", ";", ",", "\t", ":")


def _shown(delimiter: str) -> str:
    return "'\\t'" if delimiter == "\t" else repr(delimiter)


class InputValidationError(ValueError):
    """The input would be refused or mangled by HERE; nothing has been uploaded.

    :param message: what is wrong and how to fix it.
    :param line: 1-based line number in the input (header included), when one line is at fault.
    :param field: the column or limit concerned (``recId``, ``header``, ``records`` …).
    """

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        prefix = f"input line {line}: " if line is not None else "input: "
        super().__init__(prefix + message)
        self.line = line
        self.field = field


@dataclass
class InputReport:
    """What :func:`validate_lines` found in a valid input.

    :param records: number of record lines (header excluded).
    :param bytes: UTF-8 size of the input, line breaks included.
    :param columns: the descriptor's value columns (``None`` for URL-query-form input).
    :param defaults: the descriptor's constant ``name=value`` columns.
    :param has_header: whether the first line is a column header.
    :param query_form: whether the records are URL query strings.
    """

    records: int = 0
    bytes: int = 0
    columns: list[str] | None = None
    defaults: dict[str, str] = field(default_factory=dict)
    has_header: bool = False
    query_form: bool = False


def iter_text_lines(stream: IO[bytes] | IO[str], *, encoding: str = "utf-8") -> Iterator[str]:
    """Lines of a binary or text file object, one at a time, line breaks kept (``\\r\\n`` or ``\\n``)."""
    if isinstance(stream, io.TextIOBase):
        yield from stream
        return
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")  # type: ignore[arg-type]
    try:
        yield from text
    finally:
        text.detach()


def _descriptor_columns(value: str | Iterable[str], delimiter: str) -> ColumnDescriptor:
    text = value if isinstance(value, str) else format_record(list(value), delimiter)
    return parse_column_descriptor(text, delimiter)


def _check_required(
    names: Iterable[str], service: ServiceType | None, *, line: int | None, where: str
) -> None:
    if service is None:
        return
    required = REQUIRED_COLUMNS.get(service, ())
    lowered = {n.strip().lower() for n in names}
    if required and not any(r.lower() in lowered for r in required):
        wanted = " or ".join(repr(r) for r in required)
        raise InputValidationError(
            f"{where} has no {wanted} column, which the {service.value} service needs: "
            f"add it (e.g. {_example(service)})",
            line=line,
            field="columns",
        )


def _example(service: ServiceType) -> str:
    return {
        ServiceType.GEOCODE: "'recId|q' with records like '1|Invalidenstraße 116, Berlin'",
        ServiceType.REVGEOCODE: "'recId|at' with records like '1|52.5308,13.3847'",
        ServiceType.LOOKUP: "'recId|id' with records like '1|here:pds:place:276u33db-...'",
    }[service]


def _wrong_delimiter_hint(header: str, delimiter: str) -> str | None:
    for candidate in _LIKELY_DELIMITERS:
        if candidate != delimiter and candidate in header:
            return candidate
    return None


def validate_lines(
    lines: Iterable[str | bytes],
    *,
    service: ServiceType | str | None = None,
    input_columns: str | Sequence[str] | None = None,
    delimiter: str = "|",
    max_records: int = MAX_RECORDS,
    max_bytes: int = MAX_INPUT_BYTES,
) -> InputReport:
    """Check an input against HERE's rules, one line at a time, and report what it holds.

    :param lines: the input's lines, with or without line breaks (``str`` or UTF-8 ``bytes``).
    :param service: ``geocode``, ``revgeocode``, ``lookup`` or an HRN; enables the key-column check.
    :param input_columns: the column descriptor sent as ``inputColumns``; when given, the first line is
        a record, not a header (HERE lets ``inputColumns`` win over a header, so a header line would be
        geocoded as a record: the check refuses a first line that equals the descriptor).
    :param delimiter: the input delimiter (one character, or ``\\t``).
    :param max_records: record limit (HERE: 1,000,000).
    :param max_bytes: size limit in bytes (HERE: 500 MB uncompressed).
    :raises InputValidationError: on the first problem, naming the line, the field and the fix.
    """
    try:
        delim = decode_delimiter(delimiter)
    except ValueError:
        raise InputValidationError(
            f"input_delimiter {delimiter!r} must be one character (or '\\t' for a tab); HERE recommends '|'",
            field="input_delimiter",
        ) from None
    if delim in ("\n", "\r", '"'):
        raise InputValidationError(
            f"input_delimiter {delimiter!r} cannot be used: choose '|', ';', ',' or a tab",
            field="input_delimiter",
        )
    svc = ServiceType.from_name(service) if service is not None else None
    report = InputReport()
    descriptor: ColumnDescriptor | None = None
    if input_columns:
        try:
            descriptor = _descriptor_columns(input_columns, delim)
        except ValueError as exc:
            raise InputValidationError(
                f"input_columns is not a valid descriptor ({exc}): list column names such as ['recId', 'q']",
                field="input_columns",
            ) from None
        _check_required([*descriptor.columns, *descriptor.defaults], svc, line=None, where="input_columns")
        report.columns, report.defaults = descriptor.columns, descriptor.defaults
    recid_index: int | None = None
    if descriptor is not None:
        recid_index = _index_of(descriptor.columns, "recId")

    number = 0
    for raw in lines:
        number += 1
        if isinstance(raw, bytes):
            report.bytes += len(raw) + (0 if raw.endswith(b"\n") else 1)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputValidationError(
                    f"is not UTF-8 (byte {exc.start}): save the file as UTF-8",
                    line=number,
                    field="encoding",
                ) from None
        else:
            line = raw
            report.bytes += len(line.encode("utf-8")) + (0 if line.endswith("\n") else 1)
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        text = line.rstrip("\r\n")
        if "\n" in text or "\r" in text:
            raise InputValidationError(
                "contains a line break inside the record: HERE ends a record at every line break, even "
                "inside quotes; replace it with a space",
                line=number,
                field="record",
            )
        if report.bytes > max_bytes:
            raise InputValidationError(
                f"the input exceeds {max_bytes // (1024 * 1024)} MB uncompressed, HERE's per-job limit: "
                "split it into several jobs",
                line=number,
                field="size",
            )

        if number == 1 and descriptor is None:
            if not text.strip():
                raise InputValidationError(
                    "the first line is empty: start with a header (e.g. 'recId|q') or pass input_columns",
                    line=1,
                    field="header",
                )
            if is_query_form(text, delim):
                report.query_form = True
            else:
                try:
                    descriptor = parse_column_descriptor(text, delim)
                except ValueError as exc:
                    raise InputValidationError(
                        f"the header {text[:80]!r} is not a column descriptor ({exc}): write column names "
                        f"separated by {_shown(delim)}, or pass input_columns",
                        line=1,
                        field="header",
                    ) from None
                if len(descriptor.columns) + len(descriptor.defaults) == 1:
                    other = _wrong_delimiter_hint(text, delim)
                    if other is not None:
                        raise InputValidationError(
                            f"the header {text[:80]!r} has a single column with input_delimiter "
                            f"{_shown(delim)}, but contains {_shown(other)}: set input_delimiter="
                            f"{_shown(other)} or convert the file",
                            line=1,
                            field="input_delimiter",
                        )
                _check_required([*descriptor.columns, *descriptor.defaults], svc, line=1, where="the header")
                report.columns, report.defaults = descriptor.columns, descriptor.defaults
                report.has_header = True
                recid_index = _index_of(descriptor.columns, "recId")
                continue

        if number == 1 and report.columns is not None and not report.has_header:
            first = [v.strip() for v in _split_quiet(text, delim)]
            if first and [c.lower() for c in first] == [c.strip().lower() for c in report.columns]:
                raise InputValidationError(
                    "repeats input_columns as a header; HERE would process it as a record: drop "
                    "input_columns (the header is enough) or remove the header line",
                    line=1,
                    field="header",
                )
        if not text.strip():
            raise InputValidationError(
                "is empty: HERE counts every line as a record; remove blank lines",
                line=number,
                field="record",
            )
        report.records += 1
        if report.records > max_records:
            raise InputValidationError(
                f"the input has more than {max_records:,} records, HERE's per-job limit: split it into "
                "several jobs",
                line=number,
                field="records",
            )
        if len(text) > MAX_LINE_LENGTH:
            raise InputValidationError(
                f"is {len(text)} characters long; HERE accepts at most {MAX_LINE_LENGTH} per record "
                "(recId included): shorten the values",
                line=number,
                field="record",
            )
        if report.query_form:
            if not is_query_form(text, None):
                raise InputValidationError(
                    "is not a URL query string like the first line (e.g. 'q=Berlin&limit=1'): use one "
                    "format for the whole input",
                    line=number,
                    field="record",
                )
            params = parse_query_form(text)
            _check_required(params, svc, line=number, where="the record")
            recid = params.get("recId")
        else:
            assert descriptor is not None
            try:
                values = split_record(text, delim)
            except RecordFormatError as exc:
                raise InputValidationError(
                    f"cannot be split ({exc}): wrap values holding {_shown(delim)} in double quotes and "
                    'double any " inside them',
                    line=number,
                    field="record",
                ) from None
            if len(values) != len(descriptor.columns):
                raise InputValidationError(
                    f"has {len(values)} values but the column descriptor has {len(descriptor.columns)} "
                    f"({format_record(descriptor.columns, delim)}): check input_delimiter "
                    f"({_shown(delim)}) and wrap values that contain it in double quotes",
                    line=number,
                    field="columns",
                )
            recid = values[recid_index] if recid_index is not None else None
        if recid is not None and len(recid) > MAX_RECID_LENGTH:
            raise InputValidationError(
                f"recId is {len(recid)} characters long; HERE accepts at most {MAX_RECID_LENGTH}: "
                "use shorter ids",
                line=number,
                field="recId",
            )

    if report.records == 0:
        raise InputValidationError(
            "has no records" + (" (only a header)" if report.has_header else "") + ": nothing to process",
            field="records",
        )
    return report


def _split_quiet(line: str, delimiter: str) -> list[str]:
    try:
        return split_record(line, delimiter)
    except RecordFormatError:
        return []


def _index_of(columns: Sequence[str], name: str) -> int | None:
    for i, column in enumerate(columns):
        if column.strip().lower() == name.lower():
            return i
    return None


def rows_to_lines(
    rows: Iterable[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    delimiter: str = "|",
) -> Iterator[str]:
    """A header line and one record line per row, each ending with ``\\n``.

    :param rows: mappings of column name to value (``None`` becomes an empty value).
    :param columns: the columns to write, in order; by default the keys of the first row, then any new
        key of a later row is refused (a header cannot change half-way).
    :param delimiter: the input delimiter (one character, or ``\\t``).
    :raises InputValidationError: for a row that is not a mapping or carries an unexpected key.
    """
    delim = decode_delimiter(delimiter)
    header: list[str] | None = list(columns) if columns else None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputValidationError(
                f"row {number} is a {type(row).__name__}, not a dict: pass a list of dicts such as "
                "[{'recId': '1', 'q': 'Berlin'}]",
                field="rows",
            )
        if header is None:
            header = [str(k) for k in row]
            yield format_record(header, delim) + "\n"
        elif number == 1:
            yield format_record(header, delim) + "\n"
        extra = [k for k in row if str(k) not in header]
        if extra:
            raise InputValidationError(
                f"row {number} has keys {extra} that the header {header} lacks: pass columns= with every "
                "column, or give every row the same keys",
                field="rows",
            )
        yield format_record([row.get(c) for c in header], delim) + "\n"
