"""Job processing: the state machine and the record pipeline.

A single asyncio task ticks every 50 ms (and at once when an unpaced job's chunk finishes) and moves
jobs along ``submitted -> queued -> pending -> inProgress -> completed | failure``. The CPU work
(validating the input, calling the fake backend, formatting output) runs in worker threads, one bounded
chunk at a time, so the event loop keeps answering status requests while a million-record job is
processed. The record pipeline itself is :mod:`airflow_here_batch.emulator.pipeline`; with
``workers`` > 1 a large unpaced job's chunk is a few byte ranges of its input processed at once in
worker processes (``spawn``ed lazily, shut down by :meth:`Engine.close`), whose output is appended in
input order, so the files are byte for byte those of a single process.

Pacing: ``records_per_second`` records per second per job (``0`` holds jobs in ``inProgress`` without
progress, ``inf`` runs as fast as the machine allows); a started job stays ``queued`` for
``queue_delay`` seconds and ``pending`` (validation) for at least half of that.

A chunk never mutates the job: it returns a :class:`ChunkResult` that the event loop applies, so a
status request never sees half-updated counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from airflow_here_batch.api.records import (
    ColumnDescriptor,
    RecordFormatError,
    format_record,
    is_query_form,
    parse_column_descriptor,
    parse_query_form,
    split_record,
)
from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.pipeline import (
    BLOCK,
    Chunk,
    JobSpec,
    RecordProcessor,
    count_records,
    decode_lines,
    error_line,
    line_blocks,
    process_range,
    warm_up,
    worker_init,
)
from airflow_here_batch.emulator.store import EmulatorSettings, Job, JobStore, utc_now

__all__ = ["ERROR_HEADER", "Engine", "InputLayout", "detect_layout"]

TICK = 0.05

#: Columns of the errors report (emulator's layout, see docs/emulator.md).
ERROR_HEADER = ("recId", "errorCode", "errorMessage")
ERR_LINE_TOO_LONG = "E6001001"
ERR_RECID_TOO_LONG = "E6001002"
ERR_RECORD_INVALID = "E6001003"

_KNOWN_PARAMS = {
    "recid",
    "q",
    "qq",
    "in",
    "at",
    "id",
    "lang",
    "limit",
    "types",
    "politicalview",
    "show",
    "showmaptypes",
    "withinbusinesshours",
}


@dataclass
class InputLayout:
    """How a job's input lines are read: descriptor (or URL-query form) and where data starts."""

    descriptor: ColumnDescriptor | None
    query_form: bool
    data_offset: int  # byte offset of the first data line (after a header line, if any)


def detect_layout(
    first_line: str, first_line_bytes: int, delimiter: str, input_columns: str | None
) -> InputLayout:
    """Decide header / descriptor / query form from the first non-empty line and the parameters.

    ``inputColumns`` wins over a header line; the first line is still skipped when it looks like a
    header (its values are the descriptor's names, or all known parameter names).

    :raises ValueError: for an unusable descriptor.
    """
    if input_columns:
        descriptor = parse_column_descriptor(input_columns, delimiter)
        try:
            values = [v.strip().lower() for v in split_record(first_line, delimiter)]
        except RecordFormatError:
            values = []
        names = {n.lower() for n in descriptor.columns}
        is_header = bool(values) and (set(values) <= names | _KNOWN_PARAMS | {v for v in values if "=" in v})
        return InputLayout(descriptor, False, first_line_bytes if is_header else 0)
    if is_query_form(first_line, delimiter):
        return InputLayout(None, True, 0)
    return InputLayout(parse_column_descriptor(first_line, delimiter), False, first_line_bytes)


@dataclass
class ChunkResult:
    """What one processing step did; applied to the job on the event loop."""

    input_offset: int
    record_index: int
    results_size: int
    errors_size: int
    error_lines: int
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    valid: int = 0
    invalid: int = 0
    eof: bool = False
    fail_reason: str | None = None
    final_failure: bool = False
    layout: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Moves jobs through their states and runs the record pipeline in worker threads."""

    def __init__(self, store: JobStore, settings: EmulatorSettings) -> None:
        self.store = store
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="here-emu")
        self.tasks: dict[str, asyncio.Future[ChunkResult]] = {}
        self._budget: dict[str, float] = {}
        self._last_tick = time.monotonic()
        self._runner: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        #: While set, ticks do nothing (admin reset: no chunk may start while files are removed).
        self.paused = False
        self._closed = False
        self._layouts: dict[str, InputLayout] = {}
        self._processors: dict[str, RecordProcessor] = {}
        self._pool: ProcessPoolExecutor | None = None  # created on the first large unpaced job
        self._pool_size = 0
        self._pool_lock = threading.Lock()
        #: Most jobs ever in a running slot at once (``GET /_emulator/stats``), to check a client's limit.
        self.peak_running = 0

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start ticking on the running loop."""
        self._wake = asyncio.Event()
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop ticking and wait for in-flight chunks (so files are consistent on disk)."""
        self._closed = True
        if self._runner:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for fut in list(self.tasks.values()):
            with contextlib.suppress(Exception):
                await fut
        self.executor.shutdown(wait=True)
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def wait_idle(self, job_id: str) -> None:
        """Wait until no chunk of this job is running (before its files are removed)."""
        fut = self.tasks.get(job_id)
        if fut is not None:
            with contextlib.suppress(Exception):
                await fut

    def running_count(self) -> int:
        """Jobs occupying a running slot (pending or inProgress)."""
        return sum(1 for j in self.store.jobs.values() if j.status in c.RUNNING_STATUSES)

    def set_status(self, job: Job, status: str) -> None:
        """Change status, stamp timestamps, persist."""
        job.status = status
        job.status_since = time.time()
        if status in c.RUNNING_STATUSES:
            self.peak_running = max(self.peak_running, self.running_count())
        if status == c.IN_PROGRESS:
            if job.started is None:
                job.started = utc_now()
            job.ended = None
            job.records.pending = job.records.valid - job.records.processed
        elif status in (c.COMPLETED, c.STOPPED, c.FAILURE):
            if status == c.FAILURE and job.started is None:
                job.started = utc_now()  # HERE's failure example always carries `started`
            job.ended = utc_now()
            job.records.pending = 0
        self.store.save(job)

    def reset_for_restart(self, job: Job) -> None:
        """Forget a failed job's progress so ``start`` runs it again from the first record."""
        job.validated = False
        job.input_offset = job.record_index = 0
        job.results_size = job.errors_size = job.error_lines = 0
        job.started = job.ended = None
        job.fail_requested = None
        total = job.records.total
        job.records = type(job.records)(total=total)
        self.store.results_path(job.id).unlink(missing_ok=True)
        self.store.errors_path(job.id).unlink(missing_ok=True)

    # ---- ticking ----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.tick()
            except Exception:  # pragma: no cover - keep the emulator alive whatever happens
                import logging

                logging.getLogger(__name__).exception("engine tick failed")
            # Sleep one tick, or less when an unpaced job's chunk finishes (its next one starts at once).
            # Not asyncio.wait_for: before Python 3.12 it can swallow the cancellation from close().
            wake.clear()
            timer = loop.call_later(TICK, wake.set)
            try:
                await wake.wait()
            finally:
                timer.cancel()

    def tick(self) -> None:
        """One pass over all jobs."""
        if self.paused or self._closed:
            return
        now_m = time.monotonic()
        dt = now_m - self._last_tick
        self._last_tick = now_m
        now = time.time()
        s = self.settings
        running = self.running_count()  # kept up to date below: one O(n) count per tick
        for job in list(self.store.jobs.values()):
            fut = self.tasks.get(job.id)
            if fut is not None:
                if not fut.done():
                    continue
                del self.tasks[job.id]
                self._apply(job, fut)
            st = job.status
            if st == c.SUBMITTED and job.start_requested:
                job.start_requested = False
                self.set_status(job, c.QUEUED)
            elif st == c.QUEUED:
                if now - job.status_since >= s.queue_delay and running < s.max_running_jobs:
                    running += 1
                    self.set_status(job, c.PENDING)
                    if not job.validated:
                        self._launch(job, self._validate)
            elif st == c.PENDING:
                if job.fail_requested:
                    self._launch(job, self._fail_rest)
                elif not job.validated:
                    self._launch(job, self._validate)  # e.g. after an emulator restart
                elif job.stop_requested:
                    job.stop_requested = False
                    running -= 1
                    self.set_status(job, c.STOPPED)
                elif now - job.status_since >= s.queue_delay / 2:
                    if job.records.valid == 0 and job.records.total > 0:
                        job.fail_requested = "No valid record in the input"
                        self._launch(job, self._fail_rest)
                    else:
                        self.set_status(job, c.IN_PROGRESS)
            elif st == c.IN_PROGRESS:
                if job.fail_requested:
                    self._launch(job, self._fail_rest)
                elif job.stop_requested:
                    job.stop_requested = False
                    self._budget.pop(job.id, None)
                    self.set_status(job, c.STOPPED)
                elif job.records.pending <= 0:
                    self._budget.pop(job.id, None)
                    self.set_status(job, c.COMPLETED)
                else:
                    self._pace(job, dt)

    def _pace(self, job: Job, dt: float) -> None:
        rps = self.settings.records_per_second
        if rps <= 0:
            self._budget[job.id] = 0.0
            return
        if rps == float("inf"):
            n = self.settings.chunk_records
        else:
            budget = min(self._budget.get(job.id, 0.0) + rps * dt, max(rps, 1.0) + 1.0)
            n = min(int(budget), self.settings.chunk_records)
            self._budget[job.id] = budget - n
        if n >= 1:
            self._launch(job, lambda j: self._process(j, n))

    def _launch(self, job: Job, fn: Callable[[Job], ChunkResult]) -> None:
        loop = asyncio.get_running_loop()
        fut = self.tasks[job.id] = loop.run_in_executor(self.executor, fn, job)
        if self.settings.records_per_second == float("inf"):
            fut.add_done_callback(self._chunk_done)

    def _chunk_done(self, _: object) -> None:
        if self._wake is not None:
            self._wake.set()

    def _apply(self, job: Job, fut: asyncio.Future[ChunkResult]) -> None:
        try:
            res = fut.result()
        except Exception as exc:  # an unexpected processing error is an internal job failure
            if job.status in (c.PENDING, c.IN_PROGRESS):
                job.fail_requested = f"Internal error: {exc}"
            return
        if job.status == c.DELETED:
            return
        r = job.records
        job.input_offset = res.input_offset
        job.record_index = res.record_index
        job.results_size = res.results_size
        job.errors_size = res.errors_size
        job.error_lines = res.error_lines
        if res.layout:
            job.query_form = bool(res.layout["query_form"])
            job.validated = True
            r.total = res.valid + res.invalid
            r.valid, r.invalid = res.valid, res.invalid
        r.processed += res.processed
        r.succeeded += res.succeeded
        r.failed += res.failed
        if job.status == c.IN_PROGRESS:
            r.pending = r.valid - r.processed
        if res.fail_reason is not None and job.status != c.FAILURE:
            job.fail_requested = res.fail_reason
        if res.final_failure:
            r.failed = r.total - r.succeeded
            r.pending = 0
            job.fail_requested = None
            self.set_status(job, c.FAILURE)
            return
        self.store.save(job)

    # ---- worker-thread functions ------------------------------------------------------------------------
    def _layout(self, job: Job) -> InputLayout:
        layout = self._layouts.get(job.id)
        if layout is None:
            path = self.store.input_path(job.id)
            offset = 0
            first = ""
            with path.open("rb") as fh:
                for raw in fh:
                    if raw.strip():
                        first = raw.decode("utf-8", "replace").rstrip("\r\n")
                        offset += len(raw)
                        break
                    offset += len(raw)
            layout = detect_layout(first, offset, job.input_delimiter, job.input_columns)
            self._layouts[job.id] = layout
        return layout

    def forget(self, job_id: str) -> None:
        """Drop cached per-job helpers (after delete / reset)."""
        self._layouts.pop(job_id, None)
        self._processors.pop(job_id, None)
        self._budget.pop(job_id, None)

    def _parse(
        self, job: Job, layout: InputLayout, line: str, index: int
    ) -> tuple[str, dict[str, str] | None, str, str]:
        """Parse one data line -> (recId, params or None, error code, error cause)."""
        s = self.settings
        if len(line) > s.max_line_length:
            return (
                str(index),
                None,
                ERR_LINE_TOO_LONG,
                f"Record line has {len(line)} characters (max {s.max_line_length})",
            )
        try:
            if layout.query_form:
                params: dict[str, str] | None = parse_query_form(line)
            else:
                assert layout.descriptor is not None
                params = layout.descriptor.bind(split_record(line, job.input_delimiter))
        except RecordFormatError as exc:
            return str(index), None, ERR_RECORD_INVALID, f"Record cannot be parsed: {exc}"
        if params is None:
            return str(index), None, ERR_RECORD_INVALID, "Record does not match the column descriptor"
        rec_id = params.pop("recId", None)
        if rec_id is None:
            rec_id = str(index)
        if len(rec_id) > s.max_recid_length:
            return (
                rec_id[:32] + "...",
                None,
                ERR_RECID_TOO_LONG,
                f"recId has {len(rec_id)} characters (max {s.max_recid_length})",
            )
        return rec_id, params, "", ""

    def _error_line(
        self, job: Job, rec_id: str, code: str, status: int, title: str, cause: str, action: str, line: str
    ) -> str:
        max_line = self.settings.max_line_length
        return error_line(job.output_delimiter, max_line, rec_id, code, status, title, cause, action, line)

    def _validate(self, job: Job) -> ChunkResult:
        """Pending phase: count valid/invalid records, report invalid ones, find where data starts.

        A block of lines with no quote, each with exactly the descriptor's number of delimiters and
        short enough for both length limits, holds only valid records: such blocks are checked with a
        few C-level passes instead of parsing each line (the pass costs ~0.3 us a record instead of ~1.3).
        """
        layout = self._layout(job)
        s = self.settings
        delim = job.input_delimiter
        valid = invalid = index = 0
        errors: list[str] = []
        descriptor = layout.descriptor
        columns = descriptor.columns if descriptor is not None else []
        seps = {len(columns) - 1}
        # Whole-block checks need: a delimiter in every line (so no blank line hides among them), and a
        # recId that is a column or generated (a default recId's length is checked per line).
        bulk = (
            not layout.query_form
            and len(columns) >= 2
            and not delim.isspace()
            and ("recId" in columns or "recId" not in (descriptor.defaults if descriptor else {}))
        )
        generated = "recId" not in columns
        # A line no longer than this is valid whatever its values (a recId column is part of the line).
        longest = s.max_line_length if generated else min(s.max_line_length, s.max_recid_length)
        with self.store.input_path(job.id).open("rb") as fh:
            fh.seek(layout.data_offset)
            for block in line_blocks(fh, BLOCK):
                lines = decode_lines(block)
                if (
                    bulk
                    and b'"' not in block
                    and set(map(str.count, lines, repeat(delim))) == seps
                    and max(map(len, lines)) <= longest
                    and (not generated or len(str(index + len(lines))) <= s.max_recid_length)
                ):
                    index += len(lines)
                    valid += len(lines)
                    continue
                for line in lines:
                    if not line.strip():
                        continue  # empty lines are not records (emulator choice)
                    index += 1
                    rec_id, params, code, cause = self._parse(job, layout, line, index)
                    if params is None:
                        invalid += 1
                        errors.append(
                            self._error_line(
                                job,
                                rec_id,
                                code,
                                400,
                                "Invalid record",
                                cause,
                                "Fix the record and submit it in a new job",
                                line,
                            )
                        )
                    else:
                        valid += 1
        errors_size = 0
        path = self.store.errors_path(job.id)
        with path.open("w", encoding="utf-8", newline="") as out:
            if errors:
                out.write(format_record(ERROR_HEADER, job.output_delimiter) + "\n")
                out.writelines(errors)
        errors_size = path.stat().st_size
        if self._parallel(job, valid):
            self._warm_pool()  # the worker processes start while the job is still pending
        return ChunkResult(
            input_offset=layout.data_offset,
            record_index=0,
            results_size=job.results_size,
            errors_size=errors_size,
            error_lines=len(errors),
            valid=valid,
            invalid=invalid,
            layout={"query_form": layout.query_form},
        )

    def _processor(self, job: Job, layout: InputLayout) -> RecordProcessor:
        s = self.settings
        descriptor = layout.descriptor
        spec = JobSpec(
            service=job.service,
            input_delimiter=job.input_delimiter,
            output_delimiter=job.output_delimiter,
            output_type=job.output_type,
            output_columns=job.output_columns,
            output_filter=job.output_filter,
            columns=None if layout.query_form or descriptor is None else tuple(descriptor.columns),
            defaults=tuple(descriptor.defaults.items()) if descriptor is not None else (),
            max_line_length=s.max_line_length,
            max_recid_length=s.max_recid_length,
        )
        proc = self._processors.get(job.id)
        if proc is None or proc.spec != spec:
            proc = self._processors[job.id] = RecordProcessor(spec)
        return proc

    def _process(self, job: Job, max_records: int, fail_reason: str | None = None) -> ChunkResult:
        """Process up to ``max_records`` valid records from ``job.input_offset``.

        With ``fail_reason`` set, every remaining valid record goes to the errors report instead (the
        job is failing). A large unpaced job is processed a few ranges at a time in worker processes
        instead (:meth:`_process_parallel`; ``max_records`` then does not apply: an unpaced chunk has no
        budget); everything else here, in this thread.
        """
        layout = self._layout(job)
        proc = self._processor(job, layout)
        path = self.store.input_path(job.id)
        chunks = None
        if fail_reason is None and self._parallel(job, job.records.valid):
            chunks = self._process_parallel(job, layout, proc, path)
        if chunks is None:
            chunks = [proc.run(path, job.input_offset, None, job.record_index, max_records, fail_reason)]
        res = ChunkResult(
            input_offset=chunks[-1].offset,
            record_index=chunks[-1].index,
            results_size=job.results_size,
            errors_size=job.errors_size,
            error_lines=job.error_lines,
            processed=sum(ch.processed for ch in chunks),
            succeeded=sum(ch.succeeded for ch in chunks),
            failed=sum(ch.failed for ch in chunks),
            eof=chunks[-1].eof,
            fail_reason=chunks[-1].fail_reason,
        )
        if any(ch.results for ch in chunks):
            out_path = self.store.results_path(job.id)
            with out_path.open("ab") as out:
                if res.results_size == 0:
                    header = proc.fmt.header()
                    if header is not None:
                        out.write((header + "\n").encode("utf-8"))
                for ch in chunks:
                    out.write(ch.results)
            res.results_size = out_path.stat().st_size
        if any(ch.errors for ch in chunks):
            err_path = self.store.errors_path(job.id)
            with err_path.open("a", encoding="utf-8", newline="") as err:
                if res.errors_size == 0:
                    err.write(format_record(ERROR_HEADER, job.output_delimiter) + "\n")
                for ch in chunks:
                    err.write(ch.errors)
            res.errors_size = err_path.stat().st_size
            res.error_lines += sum(ch.error_lines for ch in chunks)
        return res

    # ---- worker processes ---------------------------------------------------------------------------------
    def _parallel(self, job: Job, valid: int) -> bool:
        """Whether the job's records go to worker processes: only for unpaced jobs (a paced chunk is a
        budget of records, not of bytes) large enough to pay for the processes."""
        s = self.settings
        return s.workers > 1 and s.records_per_second == float("inf") and valid >= s.parallel_min_records

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            n = self.settings.workers
            if self._pool is None or self._pool_size != n:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)  # work already submitted still completes
                # spawn: never fork a process that runs an event loop and threads.
                self._pool = ProcessPoolExecutor(
                    n, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init
                )
                self._pool_size = n
            return self._pool

    def _warm_pool(self) -> None:
        pool = self._get_pool()
        try:
            for _ in range(self._pool_size):
                pool.submit(warm_up)
        except (BrokenProcessPool, OSError, RuntimeError):
            self._drop_pool(pool)  # no worker processes here: the job runs in this process

    def _drop_pool(self, pool: ProcessPoolExecutor) -> None:
        with self._pool_lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _process_parallel(
        self, job: Job, layout: InputLayout, proc: RecordProcessor, path: Path
    ) -> list[Chunk] | None:
        """One step of ``workers`` consecutive ranges of about ``chunk_records`` records each, processed
        at once in worker processes and returned in input order; ``None`` when one range is left (it is
        cheaper here) or the pool broke (the step is then done in this thread).

        Ranges end at line breaks. Where recIds are generated from the record's position, each range
        gets its start index from a count of the non-empty lines before it (the same test the
        processor applies); the step is cut after a range that stopped at a fail-job marker.
        """
        s = self.settings
        size = path.stat().st_size
        start = job.input_offset
        per_record = (size - layout.data_offset) / max(1, job.records.total)
        span = max(4096, int(s.chunk_records * per_record))
        ranges: list[tuple[int, int]] = []
        with path.open("rb") as fh:
            while start < size and len(ranges) < s.workers:
                end = min(size, start + span)
                if end < size:
                    fh.seek(end)
                    end += len(fh.readline())
                ranges.append((start, end))
                start = end
        if len(ranges) < 2:
            return None
        pool = self._get_pool()
        starts: list[int] = []
        index = job.record_index
        try:
            futures = []
            for a, b in ranges:
                starts.append(index)
                futures.append(pool.submit(process_range, proc.spec, str(path), a, b, index))
                if proc.generated_ids and b < ranges[-1][1]:
                    index += count_records(path, a, b)  # while the workers are busy
            chunks = [f.result() for f in futures]
        except (BrokenProcessPool, OSError, RuntimeError):
            self._drop_pool(pool)  # a worker died or could not start: this step runs in this thread
            return None
        done: list[Chunk] = []
        index = job.record_index
        for ch, first in zip(chunks, starts, strict=True):
            ch.index = index + (ch.index - first)  # ranges without generated ids all started at one index
            index = ch.index
            done.append(ch)
            if ch.fail_reason is not None:
                break
        return done

    def _fail_rest(self, job: Job) -> ChunkResult:
        """Fail the job: report every unprocessed valid record, then the loop sets ``failure``."""
        reason = job.fail_requested or "Internal error"
        if not job.validated:
            res = self._validate(job)
            job_copy = Job.from_json(job.to_json())
            job_copy.input_offset = res.input_offset
            job_copy.errors_size, job_copy.error_lines = res.errors_size, res.error_lines
            rest = self._process(job_copy, 1 << 62, reason)
            rest.valid, rest.invalid, rest.layout = res.valid, res.invalid, res.layout
        else:
            rest = self._process(job, 1 << 62, reason)
        rest.failed = 0  # recomputed as total - succeeded by the loop
        rest.final_failure = True
        return rest
