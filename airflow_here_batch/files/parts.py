"""Split an input into parts and merge the parts' outputs: the file-level work of the split path, with no
task context (:mod:`airflow_here_batch.operators.split` drives it)."""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from airflow_here_batch.api.split import has_header, part_name
from airflow_here_batch.files.atomic import temporary_name
from airflow_here_batch.files.locations import storage_path
from airflow_here_batch.version_compat import AirflowException

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.split import SplitLimits

__all__ = ["merge_files", "write_parts"]

_BUFFER = 1 << 20  # bytes gathered before one write to object storage
_COPY = 1 << 20  # bytes per read when merging


def _binary_lines(source: Any, conn_id: str | None) -> contextlib.AbstractContextManager[Iterator[bytes]]:
    """The input's lines as UTF-8 bytes, streamed: a path, a URI, an ObjectStoragePath, rows or text."""

    @contextlib.contextmanager
    def opened() -> Iterator[Iterator[bytes]]:
        # The submit operator's reading rules (files.input_source, api.inputs): a str is inline text
        # when it holds a line break; lines split at \n only; gzip recognised by its magic bytes.
        from airflow_here_batch.api.inputs import iter_input_lines
        from airflow_here_batch.files.input_source import is_inline_text

        if isinstance(source, (bytes, bytearray)) or is_inline_text(source):
            data = source.encode("utf-8") if isinstance(source, str) else bytes(source)
            yield iter_input_lines(io.BytesIO(data))
            return
        path = storage_path(source, conn_id)
        if not path.exists():
            raise AirflowException(f"input {path} does not exist")
        with path.open("rb") as handle:
            yield iter_input_lines(handle)

    return opened()


class _PartWriter:
    """Writes one part's input file in large blocks."""

    def __init__(self, path: ObjectStoragePath, header: bytes) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[bytes] = path.open("wb")
        self._buffer = bytearray(header)

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _BUFFER:
            self._handle.write(self._buffer)
            self._buffer.clear()

    def close(self) -> None:
        if self._buffer:
            self._handle.write(self._buffer)
            self._buffer.clear()
        self._handle.close()


def write_parts(
    lines: Iterable[bytes],
    folder: ObjectStoragePath,
    *,
    limits: SplitLimits,
    service: str | None = None,
    input_columns: str | Sequence[str] | None = None,
    delimiter: str = "|",
) -> list[dict[str, Any]]:
    """Validate ``lines`` and write them as parts ``<folder>/part-NNNNN/input.txt``, in one streamed pass.

    :param lines: the input's lines as UTF-8 bytes (a binary file object will do).
    :param folder: where the parts go (object storage; nothing is kept in memory but one line and a
        1 MB write buffer).
    :param limits: records and bytes per part (see :class:`~airflow_here_batch.api.split.SplitLimits`).
    :param service: enables the service's key-column check of the validation.
    :param input_columns: the column descriptor when the input has no header.
    :param delimiter: the input delimiter.
    :returns: one dict per part, in input order: ``{"index", "input", "conn_id", "records", "bytes",
        "first_record"}`` (``input`` is the part file's URI; ``first_record`` the 1-based ordinal of its
        first record in the whole input).
    :raises airflow_here_batch.api.inputs.InputValidationError: on the first bad line (line number,
        field and fix); the parts written so far are removed.
    """
    from airflow_here_batch.api.inputs import validate_lines
    from airflow_here_batch.api.records import decode_delimiter
    from airflow_here_batch.api.split import PartPlanner, detect_layout

    columns = input_columns
    if columns is not None and not isinstance(columns, str):
        columns = decode_delimiter(delimiter).join(columns)
    parts: list[dict[str, Any]] = []
    conn_id = getattr(folder, "conn_id", None)

    writer: _PartWriter | None = None

    def open_part(index: int, header: bytes, ordinal: int) -> _PartWriter:
        nonlocal writer
        if writer is not None:
            writer.close()
        path = folder / part_name(index) / "input.txt"
        writer = _PartWriter(path, header)
        parts.append(
            {
                "index": index,
                "input": str(path),
                "conn_id": conn_id,
                "records": 0,
                "bytes": len(header),
                "first_record": ordinal,
            }
        )
        return writer

    def tee() -> Iterator[bytes]:
        """Hands every line to the validation, then (once it passed) writes it to its part."""
        batches = _batches(lines)
        head = next(batches, None)
        if not head:
            return
        first = head[0][3:] if head[0].startswith(b"\xef\xbb\xbf") else head[0]
        yield first
        layout = detect_layout(first.decode("utf-8"), input_columns=columns, delimiter=delimiter)
        planner = PartPlanner(limits, len(layout.header))
        ordinal = 0
        rest = head[1:] if layout.input_has_header else [first, *head[1:]]
        for index, batch in enumerate(itertools.chain([rest], batches)):
            yield from batch[1:] if index == 0 and not layout.input_has_header else batch
            # the whole batch passed validation
            if not batch:
                continue
            if not batch[-1].endswith(b"\n"):
                batch[-1] += b"\n"
            size = sum(map(len, batch))
            if not layout.generate_recids and planner.take(len(batch), size):
                assert writer is not None
                writer.write(b"".join(batch))
                parts[-1]["records"] += len(batch)
                parts[-1]["bytes"] += size
                ordinal += len(batch)
                continue
            for raw in batch:  # near a cut, or recIds to write: record by record
                ordinal += 1
                line = layout.record(raw, ordinal)
                part = planner.place(len(line))
                target = writer if part < len(parts) else open_part(part, layout.header, ordinal)
                assert target is not None
                target.write(line)
                parts[-1]["records"] += 1
                parts[-1]["bytes"] += len(line)

    try:
        validate_lines(
            tee(),
            service=service,
            input_columns=columns,
            delimiter=delimiter,
            max_records=sys.maxsize,
            max_bytes=sys.maxsize,
        )
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        with contextlib.suppress(Exception):
            if folder.exists():
                folder.rmdir(recursive=True)
        raise
    if writer is not None:
        writer.close()
    return parts


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


def merge_files(
    sources: Sequence[ObjectStoragePath | None], target: ObjectStoragePath, *, output_type: str = "csv"
) -> tuple[int, int]:
    """Concatenate ``sources`` into ``target`` in order, keeping only the first header; atomically.

    The first file's first line is kept as the header when it looks like one; a later file's first
    line is dropped only when it is that same header (a line that differs is data and is kept, so a
    file without a header loses nothing). Streams 1 MB at a time; ``None`` sources (a part without
    such a file) are skipped. Returns ``(bytes, data rows)`` written; writes nothing and returns
    ``(0, 0)`` when every source is None.
    """
    present = [s for s in sources if s is not None]
    if not present:
        return 0, 0
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / temporary_name(target.name)  # the provider's temp-name rule (files.atomic)
    written = rows = 0
    header: bytes | None = None  # the first file's header, kept once
    started = False
    try:
        with temporary.open("wb") as out:
            for source in present:
                with source.open("rb") as handle:
                    first = handle.readline()
                    if not started and first:
                        started = True
                        if has_header(first, output_type=output_type):
                            header = first.rstrip(b"\r\n")
                            kept = first if first.endswith(b"\n") else first + b"\n"
                            out.write(kept)
                            written += len(kept)
                            first = b""
                    elif header is not None and first.rstrip(b"\r\n") == header:
                        first = b""  # the same header again: dropped; anything else is data, kept
                    if first:
                        if not first.endswith(b"\n"):
                            first += b"\n"
                        out.write(first)
                        written += len(first)
                        rows += 1
                    last = first[-1:] if first else b"\n"
                    while chunk := handle.read(_COPY):
                        out.write(chunk)
                        written += len(chunk)
                        rows += chunk.count(b"\n")
                        last = chunk[-1:]
                    if last != b"\n":  # keep one record per line across the boundary
                        out.write(b"\n")
                        written += 1
                        rows += 1
        temporary.rename(target)
    except BaseException:
        with contextlib.suppress(Exception):
            temporary.unlink()
        raise
    return written, rows
