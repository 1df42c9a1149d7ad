"""The record pipeline: one byte range of a job's input -> its result lines and error lines.

Runs in the engine's worker threads and, for large unpaced jobs, in worker processes started with the
``spawn`` method (see :mod:`airflow_here_batch.emulator.engine`). So this module does no I/O at import,
holds no event-loop state, and takes everything a job's records depend on as one hashable, picklable
:class:`JobSpec`; a processor's caches only ever change how fast an answer is found, never the answer,
so a range gives the same bytes whichever thread or process processes it.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.process
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from airflow_here_batch.api.records import (
    ColumnDescriptor,
    RecordFormatError,
    format_record,
    parse_query_form,
    split_record,
)
from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.fastpath import FastLayout, GeocodeFastPath
from airflow_here_batch.emulator.geocoder import BackendError, call_backend
from airflow_here_batch.emulator.output import CsvFormatter, JsonlFormatter

__all__ = [
    "ERR_BACKEND",
    "ERR_JOB_FAILED",
    "Chunk",
    "JobSpec",
    "RecordProcessor",
    "count_records",
    "decode_lines",
    "error_line",
    "line_blocks",
    "process_range",
    "warm_up",
    "worker_init",
]

_MARKER_BYTES = c.FAIL_JOB_MARKER.encode("ascii")
ERR_BACKEND = "E6001004"  # the backend rejected the record
ERR_JOB_FAILED = "E6001005"  # the job failed before the record was processed
BLOCK = 1 << 20  # bytes of input read and decoded at a time
_ANSWER_CACHE = 200_000  # per-job cached answers (values without recId -> formatted payload)
_PROCESSORS = 4  # processors (with their caches) a worker process keeps for its latest jobs


def line_blocks(fh: BinaryIO, size: int, end: int | None = None) -> Iterator[bytes]:
    """``fh`` from its position up to ``end`` (EOF if ``None``) in blocks of about ``size`` bytes, each
    ending after a ``\\n`` (the last one may end at ``end`` / EOF instead)."""
    rest = b""
    pos = fh.tell()
    while True:
        n = size if end is None else min(size, end - pos)
        data = fh.read(n) if n > 0 else b""
        pos += len(data)
        if not data:
            if rest:
                yield rest
            return
        if rest:
            data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data  # one line longer than the block: read on
            continue
        rest = data[cut:]
        yield data[:cut] if rest else data


def decode_lines(block: bytes) -> list[str]:
    """A block's lines without their line breaks, exactly as decoding line by line gives them.

    Decoding the block at once is equivalent: ``\\n`` is never part of a multi-byte sequence, so an
    invalid sequence cannot span lines and every line gets the same replacement characters.
    """
    text = block.decode("utf-8", "replace")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    return lines


def count_records(path: Path, start: int, end: int) -> int:
    """Non-empty lines in ``[start, end)``: how far the generated recIds advance over that range."""
    n = 0
    with path.open("rb") as fh:
        fh.seek(start)
        for block in line_blocks(fh, BLOCK, end):
            lines = decode_lines(block)
            n += len(lines) - lines.count("") - sum(map(str.isspace, lines))
    return n


def error_line(
    delimiter: str,
    max_line_length: int,
    rec_id: str,
    code: str,
    status: int,
    title: str,
    cause: str,
    action: str,
    line: str,
) -> str:
    """One line of the errors report (layout in docs/emulator.md)."""
    message = json.dumps(
        {
            "status": status,
            "recordId": rec_id,
            "title": title,
            "cause": cause,
            "action": action,
            "jobRecord": line[:max_line_length],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return format_record([rec_id, code], delimiter) + delimiter + message + "\n"


@dataclass(frozen=True)
class JobSpec:
    """Everything a job's result and error lines depend on, besides the input itself."""

    service: str
    input_delimiter: str
    output_delimiter: str
    output_type: str
    output_columns: str | None
    output_filter: str | None
    columns: tuple[str, ...] | None  # the column descriptor; None = URL-query form
    defaults: tuple[tuple[str, str], ...]  # the descriptor's ``name=value`` entries
    max_line_length: int
    max_recid_length: int


@dataclass
class Chunk:
    """What processing a range produced (picklable: comes back from worker processes)."""

    results: bytes = b""  # result lines, encoded, no header
    errors: str = ""  # error-report lines, no header
    error_lines: int = 0
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    offset: int = 0  # byte offset where the next range starts
    index: int = 0  # record index after the last line consumed
    eof: bool = True  # the range was consumed to its end
    fail_reason: str | None = None  # a record asked to fail the job (it is not consumed)


def _no_key(values: list[str]) -> tuple[()]:
    return ()


class RecordProcessor:
    """Processes records of one job; keeps the job's formatter, fast path and answer cache."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        if spec.output_type == "jsonl":
            self.fmt: CsvFormatter | JsonlFormatter = JsonlFormatter(spec.output_filter)
        else:
            od = spec.output_delimiter
            cols = split_record(spec.output_columns, od) if spec.output_columns else None
            self.fmt = CsvFormatter(spec.service, cols, od)
        columns = list(spec.columns or ())
        self.descriptor = None if spec.columns is None else ColumnDescriptor(columns, dict(spec.defaults))
        self.ncols = len(columns)
        self.rec_idx = columns.index("recId") if "recId" in columns else None  # first one, as always
        others = [i for i in range(len(columns)) if i != self.rec_idx]
        # The answer-cache key: every value but the recId.
        self.key: Callable[[list[str]], Any]
        if not others:
            self.key = _no_key
        elif self.rec_idx is None:
            self.key = tuple
        else:
            self.key = itemgetter(*others)  # a tuple for 2+ columns, the value itself for one
        self.fast: GeocodeFastPath | None = None
        if GeocodeFastPath.applies(spec.service, self.fmt):
            self.fast = GeocodeFastPath(self.fmt)  # type: ignore[arg-type]
        self.fast_layout: FastLayout | None = None
        if self.fast is not None and self.descriptor is not None:
            self.fast_layout = FastLayout.build(columns, self.descriptor.defaults)
        self.cache: dict[Any, tuple[bool, Any]] = {}
        self.hits = self.misses = 0

    @property
    def generated_ids(self) -> bool:
        """Whether result lines can depend on a record's position (a generated recId)."""
        return self.spec.columns is None or self.rec_idx is None

    def run(
        self,
        path: Path,
        offset: int,
        end: int | None,
        index: int,
        max_records: int,
        fail_reason: str | None = None,
    ) -> Chunk:
        """Process up to ``max_records`` valid records of ``path`` from ``offset`` (to ``end``).

        ``index`` counts the non-empty data lines before ``offset``. With ``fail_reason`` set, every
        valid record goes to the errors report instead (the job is failing). Invalid records are
        skipped: validation reported them. Hot path: input is read and decoded in blocks, answers are
        cached by the record's values without its recId (while the cache pays off), geocode records
        take the fast path's per-shape template.
        """
        spec = self.spec
        fmt = self.fmt
        cache = self.cache
        results: list[str] = []
        errors: list[str] = []
        out = Chunk()
        service = spec.service
        delim = spec.input_delimiter
        out_delim = spec.output_delimiter
        csv_out = isinstance(fmt, CsvFormatter)
        max_line, max_recid = spec.max_line_length, spec.max_recid_length
        descriptor = self.descriptor
        query_form = descriptor is None
        ncols, rec_idx, keyget = self.ncols, self.rec_idx, self.key
        fast, fast_layout = self.fast, self.fast_layout
        marker = c.FAIL_JOB_MARKER
        lean = bool(getattr(fmt, "lean", False))
        hits, misses = self.hits, self.misses
        processed = succeeded = failed = 0
        add = results.append
        block_size = max(1 << 16, min(max_records * 256, BLOCK))
        with path.open("rb") as fh:
            fh.seek(offset)
            for block in line_blocks(fh, block_size, end):
                lines = decode_lines(block)
                quoted = b'"' in block
                check_marker = query_form or _MARKER_BYTES in block
                stop = -1
                for i, line in enumerate(lines):
                    if processed >= max_records:
                        out.eof = False
                        stop = i
                        break
                    if not line or line.isspace():
                        continue  # empty lines are not records (emulator choice)
                    index += 1
                    if len(line) > max_line:
                        continue
                    if query_form:
                        params = parse_query_form(line)
                        rec = params.pop("recId", None)
                        if rec is None:
                            rec = str(index)
                        values = list(params.values())
                        key: Any = tuple(sorted(params.items()))
                    else:
                        if quoted and '"' in line:
                            try:
                                values = split_record(line, delim)
                            except RecordFormatError:
                                continue
                        else:
                            values = line.split(delim)
                        if len(values) != ncols:
                            continue
                        rec = str(index) if rec_idx is None else values[rec_idx]
                        key = keyget(values)
                    if len(rec) > max_recid:
                        continue
                    if fail_reason is not None:
                        failed += 1
                        errors.append(
                            error_line(
                                out_delim,
                                max_line,
                                rec,
                                ERR_JOB_FAILED,
                                500,
                                "Job failed",
                                fail_reason,
                                "Fix the cause and start the job again",
                                line,
                            )
                        )
                        continue
                    if check_marker and marker in values:
                        index -= 1
                        out.fail_reason = f"Record {rec} asked the emulator to fail the job"
                        out.eof = False
                        stop = i
                        break
                    answer = cache.get(key)
                    if answer is None:
                        tails: tuple[str, ...] | None = None
                        if fast_layout is not None:
                            tail = fast_layout.tail(fast, values)  # type: ignore[arg-type]
                            if tail is not None:
                                tails = (tail,)
                        if tails is None:
                            if query_form:
                                call_params = dict(key)
                            else:
                                assert descriptor is not None
                                call_params = descriptor.bind(values) or {}
                                call_params.pop("recId", None)
                            if fast is not None and fast_layout is None:
                                payload = fast.payload(call_params)
                                tails = None if payload is None else tuple(payload)
                        if tails is not None:
                            answer = (True, tails)
                        else:
                            try:
                                payload = fmt.payload(call_backend(service, call_params, lean))
                                answer = (True, tuple(payload) if isinstance(payload, list) else payload)
                            except BackendError as exc:
                                answer = (False, exc)
                        misses += 1
                        # Fast-path answers are cached only while the cache pays off: on mostly distinct
                        # input, filling it costs more than recomputing (memory churn, GC).
                        if tails is None or misses < 20_000 or hits * 10 >= misses:
                            if len(cache) >= _ANSWER_CACHE:
                                cache.clear()
                            cache[key] = answer
                    else:
                        hits += 1
                    processed += 1
                    if answer[0]:
                        succeeded += 1
                        if csv_out:
                            if out_delim in rec or rec.startswith('"'):
                                prefix = format_record([rec], out_delim) + out_delim
                            else:
                                prefix = rec + out_delim
                            for tail in answer[1]:
                                add(prefix + tail)
                        else:
                            results.extend(fmt.render(rec, answer[1]))
                    else:
                        failed += 1
                        exc = answer[1]
                        errors.append(
                            error_line(
                                out_delim,
                                max_line,
                                rec,
                                ERR_BACKEND,
                                exc.status,
                                exc.title,
                                exc.cause,
                                exc.action,
                                line,
                            )
                        )
                if stop < 0:
                    offset += len(block)
                    continue
                # Stopped before line `stop`: the next chunk starts there.
                offset += sum(map(len, block.split(b"\n", stop)[:stop])) + stop
                break
        self.hits, self.misses = hits, misses
        out.results = "".join(results).encode("utf-8")
        out.errors = "".join(errors)
        out.error_lines = len(errors)
        out.processed, out.succeeded, out.failed = processed, succeeded, failed
        out.offset, out.index = offset, index
        return out


# ---- worker processes ---------------------------------------------------------------------------------
_cached: dict[JobSpec, RecordProcessor] = {}


def process_range(spec: JobSpec, path: str, start: int, end: int, index: int) -> Chunk:
    """Worker-process entry point: every record of ``[start, end)``, keeping the job's caches warm."""
    proc = _cached.pop(spec, None) or RecordProcessor(spec)
    _cached[spec] = proc  # most recent last
    while len(_cached) > _PROCESSORS:
        del _cached[next(iter(_cached))]
    return proc.run(Path(path), start, end, index, 1 << 62)


def worker_init() -> None:
    """Worker-process initializer. Ctrl-C in a terminal reaches the whole process group, but only the
    emulator's own process should react (it stops the workers); and a worker must not outlive an
    emulator that was killed (its task queue would never report the end), so a thread waits for the
    parent's death."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="here-emu-parent", daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # returns when the parent process is gone
    os._exit(1)


def warm_up() -> None:
    """No-op task: makes the pool start its processes (and import this module) ahead of the work."""
