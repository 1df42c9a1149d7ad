"""Job processing: the state machine and the record pipeline.

A single asyncio task ticks every 50 ms and moves jobs along
``submitted -> queued -> pending -> inProgress -> completed | failure``. The CPU work (validating the
input, calling the fake backend, formatting output) runs in worker threads, one bounded chunk at a
time, so the event loop keeps answering status requests while a million-record job is processed.

Pacing: ``records_per_second`` records per second per job (``0`` holds jobs in ``inProgress`` without
progress, ``inf`` runs as fast as the machine allows); a started job stays ``queued`` for
``queue_delay`` seconds and ``pending`` (validation) for at least half of that.

A chunk never mutates the job: it returns a :class:`ChunkResult` that the event loop applies, so a
status request never sees half-updated counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from airflow_here_batch.emulator.fastpath import GeocodeFastPath
from airflow_here_batch.emulator.geocoder import BackendError, call_backend
from airflow_here_batch.emulator.output import CsvFormatter, JsonlFormatter
from airflow_here_batch.emulator.store import EmulatorSettings, Job, JobStore, utc_now

__all__ = ["ERROR_HEADER", "Engine", "InputLayout", "detect_layout"]

TICK = 0.05
_ANSWER_CACHE = 200_000  # per-job cached answers (values without recId -> formatted payload)

#: Columns of the errors report (emulator's layout, see docs/emulator.md).
ERROR_HEADER = ("recId", "errorCode", "errorMessage")
ERR_LINE_TOO_LONG = "E6001001"
ERR_RECID_TOO_LONG = "E6001002"
ERR_RECORD_INVALID = "E6001003"
ERR_BACKEND = "E6001004"
ERR_JOB_FAILED = "E6001005"

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
        self._layouts: dict[str, InputLayout] = {}
        self._formatters: dict[str, CsvFormatter | JsonlFormatter] = {}
        self._answers: dict[str, dict[tuple[str, ...], tuple[bool, Any]]] = {}
        self._fast: dict[str, GeocodeFastPath] = {}
        self._cache_counts: dict[str, list[int]] = {}

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start ticking on the running loop."""
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop ticking and wait for in-flight chunks (so files are consistent on disk)."""
        if self._runner:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for fut in list(self.tasks.values()):
            with contextlib.suppress(Exception):
                await fut
        self.executor.shutdown(wait=True)

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
        while True:
            try:
                self.tick()
            except Exception:  # pragma: no cover - keep the emulator alive whatever happens
                import logging

                logging.getLogger(__name__).exception("engine tick failed")
            await asyncio.sleep(TICK)

    def tick(self) -> None:
        """One pass over all jobs."""
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
        self.tasks[job.id] = loop.run_in_executor(self.executor, fn, job)

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

    def _formatter(self, job: Job) -> CsvFormatter | JsonlFormatter:
        fmt = self._formatters.get(job.id)
        if fmt is None:
            if job.output_type == "jsonl":
                fmt = JsonlFormatter(job.output_filter)
            else:
                cols = split_record(job.output_columns, job.output_delimiter) if job.output_columns else None
                fmt = CsvFormatter(job.service, cols, job.output_delimiter)
            self._formatters[job.id] = fmt
        return fmt

    def forget(self, job_id: str) -> None:
        """Drop cached per-job helpers (after delete / reset)."""
        self._layouts.pop(job_id, None)
        self._formatters.pop(job_id, None)
        self._answers.pop(job_id, None)
        self._fast.pop(job_id, None)
        self._cache_counts.pop(job_id, None)
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
        message = json.dumps(
            {
                "status": status,
                "recordId": rec_id,
                "title": title,
                "cause": cause,
                "action": action,
                "jobRecord": line[: self.settings.max_line_length],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return format_record([rec_id, code], job.output_delimiter) + job.output_delimiter + message + "\n"

    def _validate(self, job: Job) -> ChunkResult:
        """Pending phase: count valid/invalid records, report invalid ones, find where data starts."""
        layout = self._layout(job)
        valid = invalid = index = 0
        errors: list[str] = []
        with self.store.input_path(job.id).open("rb") as fh:
            fh.seek(layout.data_offset)
            for raw in fh:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
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

    def _process(self, job: Job, max_records: int, fail_reason: str | None = None) -> ChunkResult:
        """Process up to ``max_records`` valid records from ``job.input_offset``.

        With ``fail_reason`` set, every remaining valid record goes to the errors report instead (the
        job is failing). Hot path: answers are cached per job by the record's values without its recId,
        so a record costs a split, a dict lookup and a string concatenation when its query repeats.
        """
        layout = self._layout(job)
        fmt = self._formatter(job)
        cache = self._answers.setdefault(job.id, {})
        s = self.settings
        results: list[str] = []
        errors: list[str] = []
        res = ChunkResult(
            input_offset=job.input_offset,
            record_index=job.record_index,
            results_size=job.results_size,
            errors_size=job.errors_size,
            error_lines=job.error_lines,
        )
        service = job.service
        delim = job.input_delimiter
        max_line, max_recid = s.max_line_length, s.max_recid_length
        descriptor = layout.descriptor
        query_form = layout.query_form
        columns = descriptor.columns if descriptor is not None else []
        ncols = len(columns)
        rec_idx = columns.index("recId") if "recId" in columns else None
        marker = c.FAIL_JOB_MARKER
        lean = bool(getattr(fmt, "lean", False))
        fast = self._fast.get(job.id)
        counts = self._cache_counts.setdefault(job.id, [0, 0])
        hits, misses = counts
        if fast is None and GeocodeFastPath.applies(service, fmt):
            fast = self._fast[job.id] = GeocodeFastPath(fmt)  # type: ignore[arg-type]
        offset = job.input_offset
        index = job.record_index
        processed = succeeded = failed = 0
        res.eof = True
        with self.store.input_path(job.id).open("rb") as fh:
            fh.seek(offset)
            for raw in fh:
                if processed >= max_records:
                    res.eof = False
                    break
                size = len(raw)
                offset += size
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line or line.isspace():
                    continue
                index += 1
                if len(line) > max_line:
                    continue  # invalid: reported by validation
                if query_form:
                    params = parse_query_form(line)
                    rec = params.pop("recId", None)
                    if rec is None:
                        rec = str(index)
                    values = list(params.values())
                    key: tuple[str, ...] = tuple(sorted(params.items()))  # type: ignore[arg-type]
                else:
                    if '"' in line:
                        try:
                            values = split_record(line, delim)
                        except RecordFormatError:
                            continue
                    else:
                        values = line.split(delim)
                    if len(values) != ncols:
                        continue
                    if rec_idx is None:
                        rec = str(index)
                        key = tuple(values)
                    else:
                        rec = values[rec_idx]
                        key = tuple(values[:rec_idx] + values[rec_idx + 1 :])
                if len(rec) > max_recid:
                    continue
                if fail_reason is not None:
                    failed += 1
                    errors.append(
                        self._error_line(
                            job,
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
                if marker in values:
                    offset -= size
                    index -= 1
                    res.fail_reason = f"Record {rec} asked the emulator to fail the job"
                    res.eof = False
                    break
                answer = cache.get(key)
                if answer is None:
                    if query_form:
                        call_params = dict(key)
                    else:
                        assert descriptor is not None
                        call_params = descriptor.bind(values) or {}
                        call_params.pop("recId", None)
                    tails = fast.payload(call_params) if fast is not None else None
                    if tails is not None:
                        answer = (True, tuple(tails))
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
                    results.extend(fmt.render(rec, answer[1]))
                else:
                    failed += 1
                    exc = answer[1]
                    errors.append(
                        self._error_line(
                            job, rec, ERR_BACKEND, exc.status, exc.title, exc.cause, exc.action, line
                        )
                    )
        counts[0], counts[1] = hits, misses
        res.processed, res.succeeded, res.failed = processed, succeeded, failed
        if results:
            path = self.store.results_path(job.id)
            with path.open("a", encoding="utf-8", newline="") as out:
                if res.results_size == 0:
                    header = fmt.header()
                    if header is not None:
                        out.write(header + "\n")
                out.writelines(results)
            res.results_size = path.stat().st_size
        if errors:
            path = self.store.errors_path(job.id)
            with path.open("a", encoding="utf-8", newline="") as out:
                if res.errors_size == 0:
                    out.write(format_record(ERROR_HEADER, job.output_delimiter) + "\n")
                out.writelines(errors)
            res.errors_size = path.stat().st_size
            res.error_lines += len(errors)
        res.input_offset = offset
        res.record_index = index
        return res

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
