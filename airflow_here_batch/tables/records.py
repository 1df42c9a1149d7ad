"""Database rows <-> HERE records, sans I/O: mapping, fingerprints, result rows, plain names.

Used by :mod:`airflow_here_batch.tables.extract` and :mod:`airflow_here_batch.tables.sink` (which do the
database and storage I/O; the SQL per database is :mod:`airflow_here_batch.tables.dialect`). Nothing here
opens a connection or a file, so every rule is unit-tested without a server.

* :class:`RecordMapping` turns one source row (a mapping of column name to value) into one HERE request
  (``recId`` from a key column; ``q``/``qq``/``in``/``lang``/... from columns, ``str.format`` templates or
  constants; ``at`` from a latitude and a longitude column for reverse geocoding).
* :func:`request_fingerprint` is the hash of the *normalised* request (service, ``recId``, every query
  value, ``in``, ``lang``) followed by its *scope* (the fingerprint version and the output columns):
  two rows whose requests differ only in Unicode normalisation, repeated blanks or the case/order of the
  output columns have the same fingerprint, and anything HERE would answer differently changes it. The
  two halves tell a changed request from a change of output columns or of the fingerprint version
  (:func:`scope_state`), so neither re-sends a table silently.
* :class:`FingerprintIndex` holds the fingerprints already stored in the target table in 8 bytes each
  (1,000,000 records: 8 MB), so an incremental run can tell unchanged records from changed ones without
  holding the table in memory.
* :func:`target_columns`, :func:`result_values`, :func:`parse_error_line`: the typed row written back for
  each result or failed record.
* :func:`plain_name`: the table and column names the pipeline accepts.
"""

from __future__ import annotations

import array
import bisect
import hashlib
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_here_batch.api.models import ServiceType
from airflow_here_batch.api.outputs import row_position
from airflow_here_batch.api.queries import normalise_value
from airflow_here_batch.api.records import split_record

__all__ = [
    "FINGERPRINT_LENGTH",
    "FINGERPRINT_VERSION",
    "QUALITY_COLUMNS",
    "REQUEST_PART",
    "SCOPE_CURRENT",
    "SCOPE_LEGACY",
    "SCOPE_OUTPUTS",
    "SCOPE_VERSION",
    "STATUS_FAILED",
    "STATUS_NO_MATCH",
    "STATUS_OK",
    "STATUS_SKIPPED",
    "FingerprintIndex",
    "FingerprintMerge",
    "MappingError",
    "RecordMapping",
    "ResultLayout",
    "StoredRecords",
    "TargetColumn",
    "normalise_value",
    "parse_error_line",
    "plain_name",
    "request_fingerprint",
    "scope_state",
    "snake_case",
    "target_columns",
]

#: Bumped when the normalisation changes. A stored fingerprint of another version is told apart by its
#: scope (:func:`scope_state`): its record is kept, or re-sent only when the user asks
#: (``on_fingerprint_version_change="resend"``). Version 1 (earlier releases: one 128-bit hash over the
#: request and the output columns) is still recognised (:meth:`RecordMapping.legacy_fingerprint`).
FINGERPRINT_VERSION = "2"
#: Characters of a fingerprint: 16 hex of the request's 64-bit hash, then 16 of its scope
#: (``v<version>`` and the output columns' hash).
FINGERPRINT_LENGTH = 32
#: Characters of the request part (the first half, hex; what :class:`FingerprintIndex` keeps).
REQUEST_PART = 16
#: ``status`` of a record not sent because its query is empty (:func:`airflow_here_batch.api.inputs.
#: empty_query`).
STATUS_SKIPPED = "skipped"

#: :func:`scope_state` results: the stored result was asked as now, with other output columns, under
#: another fingerprint version, or under version 1 (one hash over both; compare its legacy fingerprint).
SCOPE_CURRENT, SCOPE_OUTPUTS, SCOPE_VERSION, SCOPE_LEGACY = 0, 1, 2, 3
# The scope's version marker; the "." ends it (never a hex digit), so "v2." is not a prefix of "v23.".
_SCOPE_MARKER = f"v{FINGERPRINT_VERSION}."

#: ``status`` of a record HERE returned a position for.
STATUS_OK = "ok"
#: ``status`` of a record HERE answered without a position (no match).
STATUS_NO_MATCH = "no_match"
#: ``status`` of a record listed in the job's errors report.
STATUS_FAILED = "failed"


def scope_state(stored: str, current_scope: str) -> int:
    """How a stored fingerprint's scope compares with the run's (``current_scope``:
    :attr:`RecordMapping.scope`): one of :data:`SCOPE_CURRENT`, :data:`SCOPE_OUTPUTS`,
    :data:`SCOPE_VERSION`, :data:`SCOPE_LEGACY` (a version-1 fingerprint: all hex, no ``v`` marker)."""
    scope = stored[REQUEST_PART:]
    if scope == current_scope:
        return SCOPE_CURRENT
    if not scope.startswith("v"):
        return SCOPE_LEGACY
    return SCOPE_OUTPUTS if scope.startswith(_SCOPE_MARKER) else SCOPE_VERSION


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WHITESPACE = re.compile(r"\s+")
# What NULL parts leave in a template's text: " ," and ", ,".
_EMPTY_PARTS = re.compile(r"\s*,(?:\s*,)*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Output columns that become typed columns of their own instead of a text column named after them.
_POSITION_COLUMNS = {"positionlat", "positionlng", "position"}
_MATCH_LEVEL_COLUMN = "resulttype"  # v7's name for the match level (6.2: matchLevel)


class MappingError(ValueError):
    """A source row or the mapping cannot become a HERE record; nothing has been uploaded.

    :param message: what is wrong and the fix, naming the row key and/or the column.
    :param column: the column concerned, if one.
    :param key: the row's key value, if known.
    """

    def __init__(self, message: str, *, column: str | None = None, key: Any = None) -> None:
        super().__init__(message)
        self.column = column
        self.key = key


def plain_name(name: str) -> str:
    """``name`` (``table``, ``schema.table`` or a column) as given, when it is a plain SQL name.

    :raises ValueError: for a part that is not ``[A-Za-z_][A-Za-z0-9_]*`` (no SQL injection through a
        table or column name; :meth:`~airflow_here_batch.tables.dialect.SourceDialect.quote_name` quotes
        it).
    """
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"{name!r} is not a plain table/column name: use letters, digits and '_'")
    return name


def snake_case(name: str) -> str:
    """A HERE camelCase output column as a database column name: ``addressLabel`` -> ``address_label``."""
    return _CAMEL.sub("_", name).lower()


def _template_fields(template: str) -> list[str]:
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or not _IDENTIFIER.match(name):
            raise MappingError(
                f"template {template!r} has a field {{{name}}}: name a source column, e.g. '{{street}}'",
                column=name or None,
            )
        names.append(name)
    return names


def _text(value: Any) -> str:
    if value is None:
        return ""
    if value.__class__ is str:
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class RecordMapping:
    """How a source row becomes one HERE request line.

    :param service: ``geocode``, ``revgeocode`` or ``lookup``.
    :param key_column: the source column whose value becomes ``recId`` (never NULL, unique; at most 512
        characters, HERE's limit).
    :param columns: HERE column -> source column, e.g. ``{"q": "address", "in": "country"}``. A NULL value
        is sent as an empty value (HERE then reports the record in its errors report).
    :param templates: HERE column -> ``str.format`` template over source columns, e.g.
        ``{"q": "{street} {house_number}, {postal_code} {city}", "in": "countryCode:{country}"}``;
        NULLs format as empty text; blanks and the commas left around an empty part are collapsed.
    :param constants: HERE column -> the same value for every record, e.g. ``{"lang": "de-DE"}``.
    :param at_columns: ``(latitude column, longitude column)``: ``at`` = ``"lat,lng"`` (revgeocode).
    :param output_columns: HERE's ``outputColumns`` of the job (the fingerprint's scope: asking for other
        fields is told apart from a changed request, see :func:`scope_state`).
    :raises MappingError: for a mapping that names no query column the service needs or a HERE column
        twice.
    """

    service: str
    key_column: str
    columns: Mapping[str, str] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    at_columns: Sequence[str] | None = None
    output_columns: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.service = ServiceType.from_name(self.service).value
        self.columns = dict(self.columns or {})
        self.templates = dict(self.templates or {})
        self.constants = {k: _text(v) for k, v in (self.constants or {}).items()}
        names = [*self.columns, *self.templates, *self.constants]
        if self.at_columns is not None:
            if len(self.at_columns) != 2:
                raise MappingError("at_columns must be (latitude column, longitude column)")
            names.append("at")
        seen: set[str] = set()
        for name in names:
            if name.lower() == "recid":
                raise MappingError("recId comes from key_column: do not map it again", column=name)
            if name.lower() in seen:
                raise MappingError(f"HERE column {name!r} is mapped twice: map it once", column=name)
            seen.add(name.lower())
        required = {
            "geocode": ("q", "qq"),
            "revgeocode": ("at", "in"),
            "lookup": ("id",),
        }[self.service]
        if not any(r in seen for r in required):
            wanted = " or ".join(repr(r) for r in required)
            raise MappingError(
                f"the {self.service} service needs a {wanted} column: map one in columns, templates"
                + (" or at_columns" if self.service == "revgeocode" else ""),
                column=required[0],
            )
        self._template_parts = {name: _template_fields(t) for name, t in self.templates.items()}
        self.here_columns: list[str] = ["recId", *self.columns, *self.templates]
        if self.at_columns is not None:
            self.here_columns.append("at")
        self.here_columns.extend(self.constants)
        self._outputs = sorted({c.strip().lower() for c in self.output_columns if c.strip()})
        # The request's columns in name order (the mapping's order does not matter), and everything of
        # the fingerprint that is the same for every record, hashed once. The request part leaves the
        # version out: a new version whose normalisation gives the same request keeps matching.
        self._fp_order = sorted(self.here_columns, key=str.lower)
        names = [n.lower() for n in self._fp_order]
        self._prefix = json.dumps([self.service, names], separators=(",", ":")).encode()
        legacy = ["1", self.service, self._outputs, names]
        self._legacy_prefix = json.dumps(legacy, separators=(",", ":")).encode()
        digest = hashlib.blake2b(json.dumps(self._outputs).encode(), digest_size=8).hexdigest()
        #: The second half of every fingerprint of this mapping: ``v<version>.`` and the output columns'
        #: hash (16 characters).
        self.scope = (_SCOPE_MARKER + digest)[: FINGERPRINT_LENGTH - REQUEST_PART]

    @property
    def raw_columns(self) -> list[str] | None:
        """The source columns whose raw values make :meth:`raw_text` (HERE-name order), or ``None`` when
        the mapping uses templates or ``at_columns`` (then no database-side pre-filter is possible)."""
        if self.templates or self.at_columns is not None:
            return None
        return [self.columns[name] for name in sorted(self.columns, key=str.lower)]

    def raw_text(self, row: Mapping[str, Any]) -> str:
        """The raw source values of a column mapping joined by ``\\x1f`` (NULL as empty text).

        Stored as ``request_text``; the next run compares it in SQL
        (:meth:`~airflow_here_batch.tables.dialect.TableDialect.raw_text_sql`) and reads
        back only rows whose raw values differ. Raw equality implies an equal fingerprint, so the
        pre-filter never hides a change; values that differ only in spelling still get the fingerprint
        check.
        """
        columns = self.raw_columns
        if columns is None:
            return ""
        return "\x1f".join([_text(row[c]) for c in columns])

    def source_columns(self) -> list[str]:
        """Every source column the mapping reads, key first, without repeats."""
        wanted = [self.key_column, *self.columns.values()]
        for parts in self._template_parts.values():
            wanted.extend(parts)
        if self.at_columns is not None:
            wanted.extend(self.at_columns)
        return list(dict.fromkeys(wanted))

    def check_columns(self, available: Iterable[str]) -> dict[str, str]:
        """Match the mapping's source columns to the query's result columns.

        :returns: mapping column name -> the query's column name (exact match first, then ignoring case,
            as PostgreSQL folds unquoted names to lower case).
        :raises MappingError: naming every column the mapping needs but the query does not return.
        """
        names = list(available)
        lowered = {n.lower(): n for n in names}
        resolved: dict[str, str] = {}
        missing = []
        for column in self.source_columns():
            if column in names:
                resolved[column] = column
            elif column.lower() in lowered:
                resolved[column] = lowered[column.lower()]
            else:
                missing.append(column)
        if missing:
            raise MappingError(
                f"the query returns no column {', '.join(repr(m) for m in missing)} that the mapping names "
                f"(it returns {names}): add it to the SELECT or fix the mapping",
                column=missing[0],
            )
        return resolved

    def request(self, row: Mapping[str, Any], rec_id: str) -> dict[str, str]:
        """The HERE request of one row: ``{"recId": ..., "q": ..., ...}`` in :attr:`here_columns` order.

        :raises MappingError: when the latitude/longitude of ``at`` is not a number, or only one of them
            is NULL. Both NULL (or blank) make ``at`` empty: with no ``in`` either, the record's query is
            empty (:func:`~airflow_here_batch.api.inputs.empty_query`: skipped, not refused).
        """
        request = {"recId": rec_id}
        for name, column in self.columns.items():
            request[name] = _text(row[column])
        for name, template in self.templates.items():
            values = {part: _text(row[part]) for part in self._template_parts[name]}
            text = template.format(**values)
            request[name] = _EMPTY_PARTS.sub(",", _WHITESPACE.sub(" ", text)).strip(" ,")
        if self.at_columns is not None:
            lat_column, lng_column = self.at_columns
            if not (_text(row[lat_column]).strip() or _text(row[lng_column]).strip()):
                request["at"] = ""  # no position: an empty query unless ``in`` is given
            else:
                try:
                    lat, lng = float(row[lat_column]), float(row[lng_column])
                except (TypeError, ValueError):
                    raise MappingError(
                        f"row with key {rec_id!r}: {lat_column}/{lng_column} = {row[lat_column]!r}/"
                        f"{row[lng_column]!r} is not a position: filter such rows out in the query",
                        column=lat_column,
                        key=rec_id,
                    ) from None
                request["at"] = f"{lat!r},{lng!r}"
        request.update(self.constants)
        return request

    def fingerprint(self, request: Mapping[str, str]) -> str:
        """:func:`request_fingerprint` of a request built by :meth:`request`, for this mapping's job:
        16 hex characters of the request, then :attr:`scope`."""
        text = "\x1f".join([normalise_value(request.get(name, "")) for name in self._fp_order])
        return hashlib.blake2b(self._prefix + text.encode(), digest_size=8).hexdigest() + self.scope

    def legacy_fingerprint(self, request: Mapping[str, str]) -> str:
        """The version-1 fingerprint of ``request`` (one 128-bit hash over the request and the output
        columns), to recognise the unchanged records of a table written before version 2."""
        text = "\x1f".join([normalise_value(request.get(name, "")) for name in self._fp_order])
        return hashlib.blake2b(self._legacy_prefix + text.encode(), digest_size=16).hexdigest()


def request_fingerprint(service: str, request: Mapping[str, str], output_columns: Sequence[str] = ()) -> str:
    """The fingerprint (32 hex characters) of a normalised HERE request.

    The first 16 characters cover the service, ``recId`` and every request value after
    :func:`normalise_value` (``q``, ``qq``, ``in``, ``at``, ``lang``, constants...); the last 16 the
    fingerprint version and the output columns (case and order ignored, as HERE matches them). The same
    request always gives the same fingerprint, in any process.
    """
    mapping = RecordMapping(
        service=service,
        key_column="recId",
        columns={k: k for k in request if k != "recId"},
        output_columns=output_columns,
    )
    return mapping.fingerprint(request)


class FingerprintIndex:
    """Fingerprints known to be stored, 8 bytes each, for membership tests.

    Add them in ascending order (``ORDER BY ... COLLATE "C"`` in the query) and the index needs no sort;
    any order works (it sorts once, on first lookup). A 64-bit prefix of a 128-bit hash: a false
    "unchanged" needs two different requests to share 64 bits (about 1 in 10^7 for 10^6 records per run).
    """

    def __init__(self) -> None:
        self._values = array.array("Q")
        self._sorted = True

    def __len__(self) -> int:
        return len(self._values)

    def add(self, fingerprint: str) -> None:
        value = int(fingerprint[:16], 16)
        if self._values and value < self._values[-1]:
            self._sorted = False
        self._values.append(value)

    def __contains__(self, fingerprint: object) -> bool:
        if not isinstance(fingerprint, str):
            return False
        if not self._sorted:
            self._values = array.array("Q", sorted(self._values))
            self._sorted = True
        value = int(fingerprint[:16], 16)
        values = self._values
        i = bisect.bisect_left(values, value)
        return i < len(values) and values[i] == value


class StoredRecords:
    """What the target table holds, for an incremental run's reasons: per stored record the request
    part of its fingerprint (8 bytes) with a code (1 byte: scope and force flags), and its recId's
    hash (8 bytes): 1,000,000 records in about 17 MB.

    Add the rows in ascending fingerprint order (``ORDER BY request_fingerprint`` in "C" collation) and
    the fingerprint index needs no sort; the recId hashes are sorted once, on the first
    :meth:`has_key` (only records not found by fingerprint ask it). The hashes are Python's own string
    hash: stable within the process, which is all a run needs.

    :param current_scope: the run's :attr:`RecordMapping.scope`.
    """

    #: Force flags of a stored record (added by the caller from the table's ``geocoded_at``/``status``).
    EXPIRED, FAILED = 4, 8
    _SCOPE = 3

    def __init__(self, current_scope: str) -> None:
        self.scope = current_scope
        self._keys = array.array("Q")
        self._codes = array.array("B")
        self._ids = array.array("Q")
        self._sorted = True
        self._ids_sorted = False
        #: Stored fingerprints by scope state (index :data:`SCOPE_CURRENT` ...).
        self.scopes = [0, 0, 0, 0]

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, rec_id: str, fingerprint: str | None, force: int = 0) -> None:
        """One stored row: its key, fingerprint (``None``: the key alone counts) and force flags."""
        self._ids.append(hash(rec_id) & 0xFFFFFFFFFFFFFFFF)
        self._ids_sorted = False
        if not fingerprint:
            return
        try:
            value = int(fingerprint[:REQUEST_PART], 16)
        except ValueError:
            return  # not a fingerprint of this provider: the key alone counts
        state = scope_state(fingerprint, self.scope)
        self.scopes[state] += 1
        if self._keys and value < self._keys[-1]:
            self._sorted = False
        self._keys.append(value)
        self._codes.append(state | force)

    def code(self, fingerprint: str) -> int | None:
        """The code stored with ``fingerprint``'s request part (scope state | force flags), or
        ``None`` when no stored record has that request."""
        if not self._sorted:
            order = sorted(range(len(self._keys)), key=self._keys.__getitem__)
            self._keys = array.array("Q", [self._keys[i] for i in order])
            self._codes = array.array("B", [self._codes[i] for i in order])
            self._sorted = True
        value = int(fingerprint[:REQUEST_PART], 16)
        keys = self._keys
        i = bisect.bisect_left(keys, value)
        if i < len(keys) and keys[i] == value:
            return self._codes[i]
        return None

    def has_key(self, rec_id: str) -> bool:
        """Whether the table holds a row for ``rec_id`` (a new record or a changed one)."""
        if not self._ids_sorted:
            self._ids = array.array("Q", sorted(self._ids))
            self._ids_sorted = True
        value = hash(rec_id) & 0xFFFFFFFFFFFFFFFF
        ids = self._ids
        i = bisect.bisect_left(ids, value)
        return i < len(ids) and ids[i] == value

    @property
    def legacy(self) -> bool:
        """Whether some stored fingerprint is of version 1 (see
        :meth:`RecordMapping.legacy_fingerprint`)."""
        return bool(self.scopes[SCOPE_LEGACY])


class FingerprintMerge:
    """The extract's fingerprints matched to result rows by ``recId`` in one pass, in bounded memory.

    The extract writes one ``rec_id|fingerprint|request_text`` entry per record sent, in the order the
    records were sent; HERE's results usually come back in that order, minus the failed records (which
    are in the errors report). :meth:`take` reads the entries forward up to the row's key, keeping the
    ones passed over (at most ``window``; the oldest go first). A row whose entry is not found (results
    in another order: HERE does not promise the input order, shared doc §12 #8) counts in
    :attr:`missed`; the caller then looks it up elsewhere. Each entry is read once.

    :param entries: the file's rows after its header (``csv.reader`` lists: key, fingerprint, ...).
    :param request_text: the position of ``request_text`` in an entry, or ``None`` when the file has none
        (the request text is then ``""``).
    :param window: the most entries kept while looking ahead.
    """

    def __init__(
        self, entries: Iterable[Sequence[str]], *, request_text: int | None = 2, window: int = 20_000
    ) -> None:
        self._entries = iter(entries)
        self._text = request_text
        self._window = window
        self._pending: dict[str, tuple[str, str]] = {}
        self._done = False
        #: Rows :meth:`take` found no entry for.
        self.missed = 0

    def take(self, rec_id: str) -> tuple[str, str] | tuple[None, None]:
        """``(request text, fingerprint)`` of ``rec_id``, or ``(None, None)`` when not found."""
        pending = self._pending
        if pending:
            found = pending.pop(rec_id, None)
            if found is not None:
                return found
        text = self._text
        if not self._done:
            for _ in range(self._window):
                entry = next(self._entries, None)
                if entry is None:
                    self._done = True
                    break
                value = ((entry[text] if text is not None and len(entry) > text else ""), entry[1])
                if entry[0] == rec_id:
                    return value
                pending[entry[0]] = value
                if len(pending) > self._window:
                    del pending[next(iter(pending))]
        self.missed += 1
        return None, None


# --- the target table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetColumn:
    """A column of the target table: its name, its type (``text``, ``float``, ``timestamp``)."""

    name: str
    kind: str = "text"


#: The quality verdict's columns (:mod:`airflow_here_batch.api.quality`), after the output columns' ones.
QUALITY_COLUMNS: tuple[TargetColumn, ...] = (
    TargetColumn("match_quality"),
    TargetColumn("accepted", "bool"),
    TargetColumn("query_score", "float"),
    TargetColumn("candidates", "int"),
)


def target_columns(output_columns: Sequence[str], *, quality: bool = True) -> list[TargetColumn]:
    """The target table's columns for a job with these output columns, in table order.

    ``rec_id`` (primary key), ``status`` (``ok``, ``no_match`` or ``failed``), ``lat``/``lng`` (floats),
    ``match_level`` (HERE's ``resultType``), one text column per other output column (snake_case, e.g.
    ``addressLabel`` -> ``address_label``), the quality verdict (:data:`QUALITY_COLUMNS`:
    ``match_quality`` text, ``accepted`` boolean, ``query_score`` float, ``candidates`` integer; see
    :mod:`airflow_here_batch.api.quality`), ``error_code``/``error_message`` (from the errors report),
    ``request_text`` (the raw source values of a column mapping, for the database-side pre-filter),
    (``quality=False``: no quality columns)
    ``request_fingerprint``, ``job_id``, ``geocoded_at``.
    """
    columns = [
        TargetColumn("rec_id"),
        TargetColumn("status"),
        TargetColumn("lat", "float"),
        TargetColumn("lng", "float"),
        TargetColumn("match_level"),
    ]
    reserved = {c.name for c in columns} | {c.name for c in QUALITY_COLUMNS} | {
        "error_code",
        "error_message",
        "request_text",
        "request_fingerprint",
        "job_id",
        "geocoded_at",
    }
    for name in dict.fromkeys(output_columns):
        lowered = name.strip().lower()
        if lowered in _POSITION_COLUMNS or lowered == _MATCH_LEVEL_COLUMN or lowered in ("recid",):
            continue
        column = plain_name(snake_case(name.strip()))
        if column in reserved:
            continue
        reserved.add(column)
        columns.append(TargetColumn(column))
    columns += [
        *(QUALITY_COLUMNS if quality else ()),
        TargetColumn("error_code"),
        TargetColumn("error_message"),
        TargetColumn("request_text"),
        TargetColumn("request_fingerprint"),
        TargetColumn("job_id"),
        TargetColumn("geocoded_at", "timestamp"),
    ]
    return columns


# --- result and error rows ------------------------------------------------------------------------


#: Target columns that do not come from HERE's answer.
BOOKKEEPING = ("error_code", "error_message", "request_text", "request_fingerprint", "job_id", "geocoded_at")


class ResultLayout:
    """Where each target column's value is in a results row, from the results header.

    :param header: the results file's column names (HERE puts ``recId`` first).
    :param columns: the target table's columns (:func:`target_columns`).
    """

    def __init__(self, header: Sequence[str], columns: Sequence[TargetColumn]) -> None:
        self.header = list(header)
        lowered = {name.lower(): i for i, name in enumerate(self.header)}
        if "recid" not in lowered:
            raise ValueError(f"the results header {self.header} has no recId column")
        self.rec_id = lowered["recid"]
        self.seq = lowered.get("seqnumber")
        self.lat = lowered.get("positionlat")
        self.lng = lowered.get("positionlng")
        self.match_level = lowered.get(_MATCH_LEVEL_COLUMN)
        self.seq_length = lowered.get("seqlength")
        by_column = {snake_case(name): i for i, name in enumerate(self.header)}
        self.fields = [
            (c.name, by_column.get(c.name))
            for c in columns
            if c.name not in ("rec_id", "status", "lat", "lng", "match_level")
            and c.name not in BOOKKEEPING
            and c not in QUALITY_COLUMNS
        ]
        self._field_positions = [i for _, i in self.fields]
        self._needs_row_position = self.lat is None or self.lng is None
        self.width = len(self.header)

    def values(self, cells: list[str]) -> tuple[Any, ...] | None:
        """``(rec_id, status, lat, lng, match_level, *fields)`` of one results row, or ``None`` for an
        item after the first of its record (``seqNumber`` > 1: the best match is kept)."""
        if len(cells) < self.width:
            cells = cells + [""] * (self.width - len(cells))
        if self.seq is not None:
            seq = cells[self.seq]
            if seq and seq != "1":
                return None
        lat, lng = self._position(cells)
        match_level = cells[self.match_level] or None if self.match_level is not None else None
        return (
            cells[self.rec_id],
            STATUS_OK if lat is not None else STATUS_NO_MATCH,
            lat,
            lng,
            match_level,
            *[(cells[i] or None) if i is not None else None for _, i in self.fields],
        )

    def copy_cells(self, cells: list[str]) -> list[str] | None:
        """:meth:`values` as PostgreSQL ``COPY`` text cells (``\\N`` for NULL, floats by ``repr``), for
        cells holding no tab, backslash or line end (the caller checks the line; else :meth:`values`)."""
        if len(cells) < self.width:
            cells = cells + [""] * (self.width - len(cells))
        seq = self.seq
        if seq is not None and cells[seq] != "1" and cells[seq]:
            return None
        if self._needs_row_position:
            lat, lng = self._position(cells)
            position = [repr(lat), repr(lng)] if lat is not None else None
        else:
            try:  # float("") raises too: no position
                position = [repr(float(cells[self.lat])), repr(float(cells[self.lng]))]  # type: ignore[index]
            except ValueError:
                position = None
        match_level = (cells[self.match_level] or "\\N") if self.match_level is not None else "\\N"
        if position is None:
            out = [cells[self.rec_id], STATUS_NO_MATCH, "\\N", "\\N", match_level]
        else:
            out = [cells[self.rec_id], STATUS_OK, *position, match_level]
        out += [(cells[i] or "\\N") if i is not None else "\\N" for i in self._field_positions]
        return out

    def _position(self, cells: list[str]) -> tuple[float, float] | tuple[None, None]:
        """``(lat, lng)`` of a row, or ``(None, None)`` when either is missing or not a number."""
        if self._needs_row_position:
            position = row_position(dict(zip(self.header, cells, strict=False)))
            return position if position is not None else (None, None)
        lat, lng = cells[self.lat], cells[self.lng]  # type: ignore[index]
        if not lat or not lng:
            return None, None
        try:
            return float(lat), float(lng)
        except ValueError:
            return None, None

    def split(self, line: str, delimiter: str) -> list[str]:
        """One results line as cells (HERE quoting, as in ``api.records.split_record``)."""
        return split_record(line, delimiter)


def parse_error_line(line: str, delimiter: str = "|") -> tuple[str, str, str] | None:
    """``(recId, error code, message)`` of one line of a job's errors report; ``None`` for the header.

    HERE's layout is undocumented (shared doc §12 #4); the emulator and HERE's look-alike write
    ``recId|errorCode|errorMessage`` where the message is JSON ``{status, recordId, title, cause,
    action, jobRecord}``. The message is read as ``title: cause`` when it is such JSON, else kept as
    text; a line of another shape keeps its whole text as the message (never dropped).
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if text.lower().startswith(f"recid{delimiter}"):
        return None
    rec_id, rest = _first_field(text, delimiter)
    code, _, message = rest.partition(delimiter)
    try:
        details = json.loads(message)
    except ValueError:
        details = None
    if isinstance(details, dict):
        parts = [str(details[k]) for k in ("title", "cause") if details.get(k)]
        message = ": ".join(parts) or message
    return rec_id, code, message


def _first_field(text: str, delimiter: str) -> tuple[str, str]:
    """The first value of a line (honouring ``"`` wrapping) and the text after its delimiter."""
    if not text.startswith('"'):
        value, _, rest = text.partition(delimiter)
        return value, rest
    buf: list[str] = []
    i = 1
    while True:
        j = text.find('"', i)
        if j < 0:
            return text, ""
        buf.append(text[i:j])
        if text.startswith('"', j + 1):
            buf.append('"')
            i = j + 2
            continue
        rest = text[j + 1 :]
        return "".join(buf), rest[len(delimiter) :] if rest.startswith(delimiter) else rest
