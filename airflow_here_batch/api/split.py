"""Splitting an input beyond HERE's per-job limits into parts, and merging their results: the rules, sans I/O.

HERE caps one job at 1,000,000 records and 500 MB of uncompressed input (shared doc
``here-batch-api-v7.md`` §8 and §11; more is refused with 413). A larger input is cut into *parts*, one
job each, and the parts' results are merged back in input order. This module holds only the rules;
reading, writing and HERE calls live in :mod:`airflow_here_batch.operators.split`.

Rules:

* **where to cut**: records are kept in input order and a part is closed when the next record would
  take it over ``max_records`` records or ``max_bytes`` bytes, the part's header line included (every
  part repeats the input's header, so each job is self-describing). A record is never split or dropped.
* **recIds**: a ``recId`` column given by the user is kept as it is. Without one, HERE would number
  each job's records from its own start (HERE does not document the generated ids' format: §8 [gap]),
  so ids would repeat across parts. The split therefore writes an explicit ``recId`` column holding the
  record's ordinal in the *whole* input, from 1: unique across parts, joinable back to the input, and
  equal to the ids a single job numbering its records from 1 would have produced.
* **merging**: CSV results and errors reports start with a header line (§9); the merged file keeps the
  first part's header and drops the others'. JSON-lines results have no header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_here_batch.api.inputs import MAX_INPUT_BYTES, MAX_RECORDS
from airflow_here_batch.api.records import (
    decode_delimiter,
    is_query_form,
    parse_column_descriptor,
    parse_query_form,
)

__all__ = [
    "DEFAULT_MAX_ACTIVE_JOBS",
    "PartPlanner",
    "SplitLayout",
    "SplitLimits",
    "detect_layout",
    "has_header",
    "part_name",
    "safe_segment",
]

#: Default number of a split's jobs running at once. HERE does not publish its limit of concurrently
#: running jobs per account (§11); 3 stays well clear of it and of HERE's "one job per minute" advice.
DEFAULT_MAX_ACTIVE_JOBS = 3


@dataclass(frozen=True)
class SplitLimits:
    """How big one part may be.

    :param max_records: records per part (HERE: at most 1,000,000; lower it for smaller jobs).
    :param max_bytes: uncompressed bytes per part, header line included (HERE: at most 500 MB).
    :raises ValueError: for a value below 1 or above HERE's limit.
    """

    max_records: int = MAX_RECORDS
    max_bytes: int = MAX_INPUT_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.max_records <= MAX_RECORDS:
            raise ValueError(
                f"max_records_per_job={self.max_records}: use 1..{MAX_RECORDS:,} (HERE's per-job limit)"
            )
        if not 1 <= self.max_bytes <= MAX_INPUT_BYTES:
            raise ValueError(
                f"max_bytes_per_job={self.max_bytes}: use 1..{MAX_INPUT_BYTES:,} (HERE's 500 MB per job)"
            )


@dataclass(frozen=True)
class SplitLayout:
    """How the parts are written.

    :param header: the header line every part starts with (``\\n``-terminated UTF-8 bytes), or ``b""``
        for URL-query-form input, which has none.
    :param input_has_header: whether the input's first line is a header (else it is a record).
    :param generate_recids: whether the split writes the ``recId`` column (the input has none).
    :param query_form: records are URL query strings (``q=Berlin&limit=1``).
    :param delimiter: the input delimiter character.
    """

    header: bytes
    input_has_header: bool
    generate_recids: bool
    query_form: bool
    delimiter: str

    def record(self, line: bytes, ordinal: int) -> bytes:
        """One record line as written to its part: ``\\n``-terminated, with the generated recId if any.

        :param line: the input line (UTF-8 bytes, with or without its line break).
        :param ordinal: the record's 1-based position in the whole input (header not counted).
        """
        if not line.endswith(b"\n"):
            line += b"\n"
        if not self.generate_recids:
            return line
        if self.query_form:
            if b"recId=" in line and "recId" in parse_query_form(line.decode("utf-8").rstrip("\r\n")):
                return line  # this record carries its own id
            body = line.rstrip(b"\r\n")
            return body + b"&recId=%d" % ordinal + line[len(body) :]
        return b"%d" % ordinal + self.delimiter.encode("utf-8") + line


def detect_layout(first_line: str, *, input_columns: str | None, delimiter: str = "|") -> SplitLayout:
    """Decide, from the input's first line, how the parts are written (see :class:`SplitLayout`).

    :param first_line: the input's first line (a BOM and the line break are ignored).
    :param input_columns: the column descriptor given instead of a header (joined with the
        delimiter), or ``None`` when the first line is the header or the input is in URL query form.
    :param delimiter: the input delimiter (one character or ``\\t``).
    :raises ValueError: for a descriptor that cannot be parsed (the input validation reports the
        same problem with the line number; call it first).
    """
    delim = decode_delimiter(delimiter)
    text = first_line.lstrip("\ufeff").rstrip("\r\n")
    if input_columns is None and is_query_form(text, delim):
        return SplitLayout(b"", False, True, True, delim)
    descriptor_text = input_columns if input_columns is not None else text
    descriptor = parse_column_descriptor(descriptor_text, delim)
    has_recid = any(c.strip().lower() == "recid" for c in descriptor.columns)
    header = descriptor_text if has_recid else "recId" + delim + descriptor_text
    header += "\n"
    return SplitLayout(header.encode("utf-8"), input_columns is None, not has_recid, False, delim)


class PartPlanner:
    """Where to cut: feed record sizes in input order, get the part each record belongs to.

    >>> planner = PartPlanner(SplitLimits(max_records=2), header_bytes=8)
    >>> [planner.place(10) for _ in range(5)]
    [0, 0, 1, 1, 2]

    :param limits: records and bytes allowed per part.
    :param header_bytes: size of the header line each part starts with.
    """

    def __init__(self, limits: SplitLimits, header_bytes: int = 0) -> None:
        if header_bytes >= limits.max_bytes:
            raise ValueError(
                f"a {header_bytes}-byte header leaves no room under max_bytes={limits.max_bytes}"
            )
        self.limits = limits
        self.header_bytes = header_bytes
        self.part = -1
        self.records = 0  # in the current part
        self.bytes = 0  # in the current part, header included
        self.total_records = 0

    def place(self, record_bytes: int) -> int:
        """The 0-based part of the next record of ``record_bytes`` bytes (its line break included).

        :raises ValueError: when one record and the header alone exceed ``max_bytes`` (HERE's 4096-character
            line limit makes this impossible with HERE's limits).
        """
        if self.header_bytes + record_bytes > self.limits.max_bytes:
            raise ValueError(
                f"record {self.total_records + 1} ({record_bytes} bytes) and the header do not fit in "
                f"max_bytes={self.limits.max_bytes}"
            )
        if (
            self.part < 0
            or self.records >= self.limits.max_records
            or self.bytes + record_bytes > self.limits.max_bytes
        ):
            self.part += 1
            self.records = 0
            self.bytes = self.header_bytes
        self.records += 1
        self.bytes += record_bytes
        self.total_records += 1
        return self.part

    def take(self, records: int, nbytes: int) -> bool:
        """Add ``records`` records of ``nbytes`` bytes in all to the current part if they all fit.

        Returns False, changing nothing, when there is no part yet or they do not all fit: then place
        them one by one with :meth:`place`.
        """
        if (
            self.part < 0
            or self.records + records > self.limits.max_records
            or self.bytes + nbytes > self.limits.max_bytes
        ):
            return False
        self.records += records
        self.bytes += nbytes
        self.total_records += records
        return True

    @property
    def parts(self) -> int:
        """Parts started so far."""
        return self.part + 1


def part_name(index: int) -> str:
    """The folder name of part ``index`` (0-based): ``part-00001`` for the first, so names sort in order."""
    return f"part-{index + 1:05d}"


def has_header(first_line: bytes, *, output_type: str = "csv") -> bool:
    """Whether a results or errors file's first line is a header to keep only once when merging.

    CSV results and every errors report start with a header (``recId…``, shared doc §9); JSON-lines
    results start with a record (``{``).
    """
    return output_type != "jsonl" or not first_line.lstrip().startswith(b"{")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_segment(text: str) -> str:
    """``text`` made safe as one object-storage path segment (run ids hold ``:`` and ``+``)."""
    return _UNSAFE.sub("_", text).strip("._") or "_"
