"""Split an input into parts and merge the parts' outputs: the file-level work of the split path, with no
task context (:mod:`airflow_here_batch.operators.split` drives it).

- :func:`binary_lines` reads an input by the submit operator's rules, streamed;
- :func:`write_parts` validates it and writes it as parts, in one streamed pass;
- :func:`merge_files` concatenates the parts' results (or errors) into one file, in order.

Every file is written with :func:`~airflow_here_batch.files.atomic.atomic_open` (complete or nothing).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any

from airflow_here_batch.api.inputs import InputValidationError, iter_input_lines, validate_lines
from airflow_here_batch.api.records import decode_delimiter
from airflow_here_batch.api.split import PartPlanner, SplitLayout, detect_layout, has_header, part_name
from airflow_here_batch.files.atomic import atomic_open
from airflow_here_batch.files.input_source import is_inline_text
from airflow_here_batch.files.locations import storage_path

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.split import SplitLimits

__all__ = ["binary_lines", "merge_files", "write_parts"]

_BUFFER = 1 << 20  # bytes gathered before one write to object storage
_COPY = 1 << 20  # bytes per read when merging
_BOM = b"\xef\xbb\xbf"


@contextlib.contextmanager
def binary_lines(source: Any, conn_id: str | None = None) -> Iterator[Iterator[bytes]]:
    """The input's lines as UTF-8 bytes, streamed, by the submit operator's reading rules
    (:mod:`~airflow_here_batch.files.input_source`): a ``str`` is inline text when it holds a line
    break; lines are split at ``\\n`` only; gzip is recognised by its magic bytes.

    :param source: inline text, ``bytes``, a local path, a URI or an ``ObjectStoragePath``.
    :param conn_id: the storage connection of a URI.
    :raises InputValidationError: when the file does not exist.
    """
    if isinstance(source, (bytes, bytearray)) or is_inline_text(source):
        data = source.encode("utf-8") if isinstance(source, str) else bytes(source)
        yield iter_input_lines(io.BytesIO(data))
        return
    path = storage_path(source, conn_id)
    if not path.exists():
        raise InputValidationError(f"input {path} does not exist", field="input")
    with path.open("rb") as handle:
        yield iter_input_lines(handle)


class _PartFile:
    """One part's input file: written in large blocks, appears whole at :meth:`commit`."""

    def __init__(self, path: ObjectStoragePath, header: bytes) -> None:
        self._writer = atomic_open(path)
        self._handle: IO[bytes] = self._writer.open()
        self._buffer = bytearray(header)

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _BUFFER:
            self._handle.write(self._buffer)
            self._buffer.clear()

    def commit(self) -> None:
        if self._buffer:
            self._handle.write(self._buffer)
            self._buffer.clear()
        self._writer.commit()

    def discard(self) -> None:
        self._writer.discard()


class _PartsWriter:
    """The state of :func:`write_parts`: the parts written so far and the part being written.

    :meth:`validated` is the line stream handed to the validation: it writes each batch of lines once
    the validation has passed all of them, so nothing of a bad input reaches a part that survives.
    """

    def __init__(
        self, folder: ObjectStoragePath, limits: SplitLimits, columns: str | None, delimiter: str
    ) -> None:
        self.folder = folder
        self.limits = limits
        self.columns = columns
        self.delimiter = delimiter
        self.conn_id = getattr(folder, "conn_id", None)
        self.parts: list[dict[str, Any]] = []
        self.current: _PartFile | None = None
        self.ordinal = 0  # records written so far (the 1-based ordinal of the last one)

    def validated(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """Yield every line for the validation; after each batch (then validated), write it."""
        batches = _batches(lines)
        head = next(batches, None)
        if not head:
            return
        first = head[0][len(_BOM) :] if head[0].startswith(_BOM) else head[0]
        yield first
        if self.columns is None and not first.strip():
            # No header where HERE reads it: the validation refuses the input (blank lines before the
            # header, or only blank lines); nothing is written, and no layout is guessed from a blank.
            yield from head[1:]
            for batch in batches:
                yield from batch
            return
        layout = detect_layout(first.decode("utf-8"), input_columns=self.columns, delimiter=self.delimiter)
        planner = PartPlanner(self.limits, len(layout.header))
        rest = head[1:] if layout.input_has_header else [first, *head[1:]]
        for index, batch in enumerate(itertools.chain([rest], batches)):
            yield from batch[1:] if index == 0 and not layout.input_has_header else batch
            self._write_batch(batch, layout, planner)  # the validation asked for more: it passed them

    def _write_batch(self, batch: list[bytes], layout: SplitLayout, planner: PartPlanner) -> None:
        if not batch:
            return
        if not batch[-1].endswith(b"\n"):
            batch[-1] += b"\n"
        size = sum(map(len, batch))
        if not layout.generate_recids and planner.take(len(batch), size):  # the whole batch fits
            self.ordinal += len(batch)
            self._append(b"".join(batch), len(batch), size)
            return
        for raw in batch:  # near a cut, or recIds to write: record by record
            self.ordinal += 1
            line = layout.record(raw, self.ordinal)
            if planner.place(len(line)) == len(self.parts):
                self._next_part(layout.header)
            self._append(line, 1, len(line))

    def _next_part(self, header: bytes) -> None:
        """Commit the part being written and start the next one with ``header``."""
        if self.current is not None:
            self.current.commit()
            self.current = None
        index = len(self.parts)
        path = self.folder / part_name(index) / "input.txt"
        self.current = _PartFile(path, header)
        self.parts.append(
            {
                "index": index,
                "input": str(path),
                "conn_id": self.conn_id,
                "records": 0,
                "bytes": len(header),
                "first_record": self.ordinal,
            }
        )

    def _append(self, data: bytes, records: int, nbytes: int) -> None:
        assert self.current is not None  # take() refuses a batch before the first part
        self.current.write(data)
        self.parts[-1]["records"] += records
        self.parts[-1]["bytes"] += nbytes

    def commit(self) -> None:
        if self.current is not None:
            self.current.commit()
            self.current = None

    def discard(self) -> None:
        """Remove the part being written and the parts folder."""
        if self.current is not None:
            self.current.discard()
            self.current = None
        with contextlib.suppress(Exception):
            if self.folder.exists():
                self.folder.rmdir(recursive=True)


def write_parts(
    lines: Iterable[bytes],
    folder: ObjectStoragePath,
    *,
    limits: SplitLimits,
    service: str | None = None,
    input_columns: str | Sequence[str] | None = None,
    delimiter: str = "|",
    reread: Callable[[], AbstractContextManager[Iterable[bytes]]] | None = None,
) -> list[dict[str, Any]]:
    """Validate ``lines`` and write them as parts ``<folder>/part-NNNNN/input.txt``, in one streamed pass.

    An input without records (empty, or a header alone) makes no part: ``[]`` (nothing to send). An
    input of blank lines only is refused (it has no header: a broken export, not an empty one).

    :param lines: the input's lines as UTF-8 bytes (a binary file object will do).
    :param folder: where the parts go (object storage; nothing is kept in memory but one line and a
        1 MB write buffer). Each part file appears whole (:func:`~.atomic.atomic_open`).
    :param limits: records and bytes per part (see :class:`~airflow_here_batch.api.split.SplitLimits`).
    :param service: enables the service's key-column check of the validation.
    :param input_columns: the column descriptor when the input has no header.
    :param delimiter: the input delimiter.
    :param reread: opens the same input again (e.g. ``functools.partial(binary_lines, source)``): read
        only when two recIds' hashes are equal, to confirm the repeat on the text and name both lines.
        Without it such an input is still refused, without the lines.
    :returns: one dict per part, in input order: ``{"index", "input", "conn_id", "records", "bytes",
        "first_record"}`` (``input`` is the part file's URI; ``first_record`` the 1-based ordinal of its
        first record in the whole input).
    :raises airflow_here_batch.api.inputs.InputValidationError: on the first bad line (line number,
        field and fix), or a recId on more than one record (both lines and the recId); the parts written
        so far are removed.
    :raises UnicodeDecodeError: when the first line is not UTF-8.
    :raises airflow_here_batch.files.atomic.MissingBucketError: when ``folder``'s bucket does not exist.
    """
    columns = input_columns
    if columns is not None and not isinstance(columns, str):
        columns = decode_delimiter(delimiter).join(columns)
    writer = _PartsWriter(folder, limits, columns, delimiter)
    try:
        validate_lines(
            writer.validated(lines),
            service=service,
            input_columns=columns,
            delimiter=delimiter,
            max_records=sys.maxsize,
            max_bytes=sys.maxsize,
            reread=reread,
            allow_empty=True,
        )
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    return writer.parts


def _batches(source: Iterable[bytes], size: int = 1 << 20) -> Iterator[list[bytes]]:
    """Lines in lists of about ``size`` bytes; a binary file is read in blocks and cut at ``\\n`` only."""
    read = getattr(source, "read", None)
    if read is None:
        batch: list[bytes] = []
        total = 0
        for line in source:
            batch.append(line)
            total += len(line)
            if total >= size:
                yield batch
                batch, total = [], 0
        if batch:
            yield batch
        return
    carry = b""
    while block := read(size):
        pieces = (carry + block).split(b"\n")
        carry = pieces.pop()
        if pieces:
            yield [piece + b"\n" for piece in pieces]
    if carry:
        yield [carry]


class _Merged:
    """What :func:`merge_files` wrote so far: bytes, data rows, and the first file's header."""

    def __init__(self, out: IO[bytes], output_type: str) -> None:
        self.out = out
        self.output_type = output_type
        self.bytes = 0
        self.rows = 0
        self.header: bytes | None = None  # the first file's header, kept once
        self.started = False

    def write(self, data: bytes, rows: int) -> None:
        self.out.write(data)
        self.bytes += len(data)
        self.rows += rows

    def append(self, handle: IO[bytes]) -> None:
        """One source file: its first line (kept, or dropped as a repeated header), then the rest."""
        first = handle.readline()
        if not self.started and first:
            self.started = True
            if has_header(first, output_type=self.output_type):
                self.header = first.rstrip(b"\r\n")
                self.write(first if first.endswith(b"\n") else first + b"\n", 0)
                first = b""
        elif self.header is not None and first.rstrip(b"\r\n") == self.header:
            first = b""  # the same header again: dropped; anything else is data, kept
        if first:
            self.write(first if first.endswith(b"\n") else first + b"\n", 1)
        last = b"\n"
        while chunk := handle.read(_COPY):
            self.write(chunk, chunk.count(b"\n"))
            last = chunk[-1:]
        if last != b"\n":  # keep one record per line across the boundary
            self.write(b"\n", 1)


def merge_files(
    sources: Sequence[ObjectStoragePath | None], target: ObjectStoragePath, *, output_type: str = "csv"
) -> tuple[int, int]:
    """Concatenate ``sources`` into ``target`` in order, keeping only the first header; atomically
    (:func:`~.atomic.atomic_open`).

    The first file's first line is kept as the header when it looks like one; a later file's first
    line is dropped only when it is that same header (a line that differs is data and is kept, so a
    file without a header loses nothing). Streams 1 MB at a time; ``None`` sources (a part without
    such a file) are skipped. Returns ``(bytes, data rows)`` written; writes nothing and returns
    ``(0, 0)`` when every source is None.

    :raises airflow_here_batch.files.atomic.MissingBucketError: when ``target``'s bucket does not exist.
    """
    present = [s for s in sources if s is not None]
    if not present:
        return 0, 0
    with atomic_open(target) as out:
        merged = _Merged(out, output_type)
        for source in present:
            with source.open("rb") as handle:
                merged.append(handle)
    return merged.bytes, merged.rows
