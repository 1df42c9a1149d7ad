"""The submit operator's ``input``: read as lines (validation pass), replayed as the upload (second
pass), and the rejects file of ``on_bad_record="skip"``.

**What an input value is** (the rule is explicit, never a guess that can go silently wrong):

============================================  ==============================================
value                                         read as
============================================  ==============================================
``list``/``tuple`` (of dicts)                 rows: a header from the keys, a line per row
``bytes``                                     the content of a file (gzip detected)
``ObjectStoragePath`` or ``str`` with ``://``  an object-storage file, streamed
``pathlib.Path``                              a local file, streamed
``str`` holding a line break (``\\n``/``\\r``)  inline text (also when Jinja dropped the last
                                              ``\\n`` of a literal written in the DAG)
empty ``str``                                 inline text holding no records (refused)
any other ``str``                             a local path, which must exist
============================================  ==============================================

A path that does not exist is an error that says the rule: a ``str`` with no line break is never
uploaded as text. Files are read by content, not by name: gzip data (magic bytes ``1f 8b``) is
decompressed whether or not the name ends in ``.gz``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import IO, Any

from airflow_here_batch.api.inputs import (
    KIND_LABELS,
    CheckedLine,
    InputReport,
    InputValidationError,
    iter_input_lines,
    rows_to_lines,
    sniff_format,
    split_text,
    upload_lines,
    validate_lines,
)
from airflow_here_batch.api.transfer import LineStream
from airflow_here_batch.files.atomic import AtomicWriter, atomic_open
from airflow_here_batch.files.locations import storage_path

__all__ = ["InputSource", "PreparedInput", "RejectsFile", "is_inline_text", "prepare_input"]


def is_inline_text(value: Any) -> bool:
    """Whether a ``str`` input is inline text by the rule above (it holds a line break, or is empty)."""
    return isinstance(value, str) and ("\n" in value or "\r" in value or not value.strip())


class InputSource:
    """The operator's ``input``, classified once (see the module docstring), readable many times.

    :param value: the rendered ``input``.
    :param input_columns: with rows: the columns, in order (else the first row's keys).
    :param delimiter: the input delimiter.
    :param conn_id: connection for an object-storage input.
    :param inline_text: the value was written as inline text (a ``str`` with a line break before
        template rendering, which drops a single trailing ``\\n``).
    :raises InputValidationError: for a value of another type, or a path that does not exist.
    """

    def __init__(
        self,
        value: Any,
        *,
        input_columns: str | Sequence[str] | None = None,
        delimiter: str = "|",
        conn_id: str | None = None,
        inline_text: bool = False,
    ) -> None:
        self.delimiter = delimiter
        self.rows: list[Mapping[str, Any]] | None = None
        self.text: str | None = None
        self.data: bytes | None = None
        self.local: Path | None = None
        self.remote: Any = None
        self.row_columns: list[str] | None = None
        if isinstance(value, (list, tuple)):
            self.rows = list(value)
            columns = input_columns
            if isinstance(columns, str):
                columns = columns.split(delimiter.replace("\\t", "\t"))
            self.row_columns = [str(c) for c in columns] if columns else None
        elif isinstance(value, (bytes, bytearray)):
            self.data = bytes(value)
        elif hasattr(value, "protocol"):  # ObjectStoragePath
            self.remote = value
        elif isinstance(value, PurePath):
            self.local = self._existing(Path(value).expanduser(), str(value))
        elif isinstance(value, str):
            if inline_text or is_inline_text(value):
                self.text = value
            elif "://" in value:
                self.remote = storage_path(value, conn_id)
            else:
                self.local = self._existing(Path(value).expanduser(), value)
        elif isinstance(value, os.PathLike):
            self.local = self._existing(Path(os.fspath(value)).expanduser(), os.fspath(value))
        else:
            raise InputValidationError(
                f"input of type {type(value).__name__} is not supported: pass a path, an object-storage "
                "URI, a list of dicts, text (a str with line breaks) or bytes",
                field="input",
            )

    @staticmethod
    def _existing(path: Path, given: str) -> Path:
        if path.is_file():
            return path
        shown = given if len(given) <= 120 else given[:117] + "..."
        hint = ""
        if given.lstrip().startswith(("[{", "[(", "{")):
            hint = (
                ". It looks like rows rendered as text by a template: pass the XComArg itself "
                "(input=task.output) or set render_template_as_native_obj=True on the DAG"
            )
        raise InputValidationError(
            f"input {shown!r} is not an existing file. A str is inline text only when it holds a line "
            "break: end every line with \\n (a header alone holds no records); otherwise it is a local "
            f"path, or an object-storage URI such as s3://bucket/key{hint}",
            field="input",
        )

    def label(self, number: int) -> str:
        """How line ``number`` is named in messages: ``row n`` for rows (line 1 is the header)."""
        if self.rows is None:
            return f"line {number}"
        return "header (the rows' keys)" if number == 1 else f"row {number - 1}"

    @contextlib.contextmanager
    def lines(self) -> Iterator[Iterable[str | bytes]]:
        """The input's lines, one at a time (rows: a :class:`RejectedRow` for a bad row)."""
        if self.rows is not None:
            yield rows_to_lines(
                self.rows, columns=self.row_columns, delimiter=self.delimiter, on_bad_row="mark"
            )
        elif self.text is not None:
            yield split_text(self.text)
        elif self.data is not None:
            yield iter_input_lines(io.BytesIO(self.data))
        else:
            with self._open() as handle:
                yield iter_input_lines(handle)

    @contextlib.contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        handle: IO[bytes] = self.local.open("rb") if self.local is not None else self.remote.open("rb")
        try:
            yield handle
        finally:
            handle.close()

    def _plain_local_file(self) -> bool:
        if self.local is None:
            return False
        with self.local.open("rb") as handle:
            return sniff_format(handle.read(8)) == "text"

    @contextlib.contextmanager
    def upload_data(
        self, to_upload: Callable[[Iterable[str | bytes]], Iterator[bytes]], *, unchanged: bool = False
    ) -> Iterator[Any]:
        """The upload body for the hook: the lines ``to_upload`` makes of the input, as a stream the
        hook can rewind for a retry.

        :param to_upload: e.g. ``functools.partial(upload_lines, service=..., on_bad_record=...)``.
        :param unchanged: the validation pass found nothing to strip or leave out; a plain local
            file is then streamed as it is (faster, byte for byte the same).
        """
        if unchanged and self._plain_local_file():
            yield self.local
            return

        def produce() -> Iterator[bytes]:
            with self.lines() as lines:
                yield from to_upload(lines)

        stream = LineStream(produce)
        try:
            yield stream
        finally:
            stream.close()


class RejectsFile:
    """The records left out by ``on_bad_record="skip"``, one JSON object per line.

    Each line: ``{"line": 3, "where": "line 3", "record": "<the line as read>", "problems": [{"kind",
    "field", "message"}]}`` (``record`` of a row is the row as JSON; bytes that are not UTF-8 appear as
    ``\\xNN``; the file is ASCII, other characters are JSON escapes). Written with
    :func:`~airflow_here_batch.files.atomic.atomic_open`, so a reader never sees half a file. Nothing is
    written when nothing is rejected.

    :param target: an ``ObjectStoragePath`` (see :func:`airflow_here_batch.files.locations.base_location`),
        a URI or a local path.
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self.count = 0
        self._writer: AtomicWriter | None = None
        self._handle: IO[str] | None = None

    def write(self, checked: CheckedLine) -> None:
        if self._handle is None:
            self._writer = atomic_open(self.target, "w")
            self._handle = self._writer.open()
        entry = {
            "line": checked.number,
            "where": checked.problems[0].where if checked.problems else f"line {checked.number}",
            "record": checked.text,
            "problems": [{"kind": p.kind, "field": p.field, "message": p.message} for p in checked.problems],
        }
        # ASCII JSON: a value's U+2028 or U+0085 stays escaped, so any tool splits the file right.
        self._handle.write(json.dumps(entry) + "\n")
        self.count += 1

    def commit(self) -> str | None:
        """Make the file appear at ``target``; its URI, or ``None`` when nothing was rejected."""
        if self._writer is None:
            return None
        writer, self._writer, self._handle = self._writer, None, None
        writer.commit()
        return str(self.target)

    def discard(self) -> None:
        """Leave nothing behind."""
        if self._writer is not None:
            writer, self._writer, self._handle = self._writer, None, None
            writer.discard()


class PreparedInput:
    """An input checked by the validation pass, ready to be uploaded (see :func:`prepare_input`).

    :param source: the classified input.
    :param report: what the validation pass found (``None`` when ``validate_input=False``).
    :param rejected: records left out (``on_bad_record="skip"``).
    :param rejects_path: URI of the rejects file, or ``None`` when nothing was left out.
    """

    def __init__(
        self,
        source: InputSource,
        report: InputReport | None,
        upload_args: dict[str, Any],
        rejects_path: str | None,
    ) -> None:
        self.source = source
        self.report = report
        self.rejected = report.rejected if report is not None else 0
        self.rejects_path = rejects_path
        self._upload_args = upload_args

    def upload_data(self) -> contextlib.AbstractContextManager[Any]:
        """The upload body for ``HereBatchHook.create_job`` (a path or a rewindable stream)."""
        return self.source.upload_data(
            functools.partial(upload_lines, **self._upload_args),
            unchanged=self.report is not None and self.report.unchanged,
        )


def prepare_input(
    value: Any,
    *,
    service: Any,
    input_columns: str | Sequence[str] | None,
    delimiter: str,
    conn_id: str | None = None,
    inline_text: bool = False,
    validate: bool = True,
    on_bad_record: str = "fail",
    rejects_target: Callable[[], Any] | None = None,
    log: logging.Logger | Any = None,
) -> PreparedInput:
    """Classify and check the operator's input in one streaming pass; write the rejects file.

    :param input_columns: the operator's ``input_columns`` (with rows: their order).
    :param rejects_target: returns where the rejects file goes (called only when a record is rejected).
    :raises InputValidationError: when the input cannot be uploaded as given (fail mode: any bad
        record; skip mode: a problem with the input as a whole, such as a recId on more than one
        record, or no good record left).
    """
    log = log or logging.getLogger(__name__)
    source = InputSource(
        value, input_columns=input_columns, delimiter=delimiter, conn_id=conn_id, inline_text=inline_text
    )
    descriptor = None if source.rows is not None else input_columns  # rows: the header line says it
    args: dict[str, Any] = {
        "service": service,
        "input_columns": descriptor,
        "delimiter": delimiter,
        "label": source.label,
        "on_bad_record": on_bad_record,
    }
    if not validate:
        return PreparedInput(source, None, {**args, "check": False}, None)
    rejects = RejectsFile(rejects_target()) if on_bad_record == "skip" and rejects_target else None
    try:
        with source.lines() as lines:
            report = validate_lines(
                lines, **args, on_reject=rejects.write if rejects else None, reread=source.lines
            )
        rejects_path = rejects.commit() if rejects is not None else None
    except BaseException:
        if rejects is not None:
            rejects.discard()
        raise
    for warning in report.warnings:
        log.warning("HERE Batch: %s", warning)
    if report.bom:
        log.info("HERE Batch: the input starts with a UTF-8 byte-order mark; it is not uploaded")
    if report.crlf:
        log.info("HERE Batch: the input has CRLF line endings; uploaded with LF")
    if report.rejected:
        log.warning(
            "HERE Batch: %d of %d records left out (on_bad_record='skip'): %s; written with their "
            "reasons to %s",
            report.rejected,
            report.rejected + report.records,
            ", ".join(f"{KIND_LABELS.get(k, k)}: {n}" for k, n in report.counts.items()),
            rejects_path,
        )
    log.info(
        "HERE Batch: input checked: %d records to upload, %.1f kB%s",
        report.records,
        report.bytes / 1024,
        ", URL-query form" if report.query_form else "",
    )
    return PreparedInput(source, report, args, rejects_path)
