"""Jobs and their on-disk state.

Layout below the data directory::

    jobs/<jobId>/job.json      metadata (rewritten atomically on every change)
    jobs/<jobId>/input.txt     the uploaded input, decompressed
    jobs/<jobId>/results.txt   results written so far (header first)
    jobs/<jobId>/errors.txt    errors report written so far (header first)

``job.json`` also records how far processing got (byte offset in the input, sizes of the result and
error files at that point), so an emulator restarted on the same ``--data-dir`` truncates any partial
write and resumes exactly where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_here_batch.emulator import constants as c

__all__ = ["EmulatorSettings", "Job", "JobStore", "Records", "utc_now"]


def utc_now() -> str:
    """RFC 3339 UTC timestamp with microseconds, as HERE writes them."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class EmulatorSettings:
    """Tunable behaviour. Defaults: HERE's documented limits, and pacing that makes a small demo job
    visibly pass queued -> pending -> inProgress -> completed within a few seconds."""

    records_per_second: float = 5.0  # 0 = hold (no progress); inf = as fast as possible
    queue_delay: float = 1.0  # seconds a started job stays queued (and half of it pending)
    max_running_jobs: int = 5  # pending + inProgress jobs at once; more wait in queued / start -> 429
    max_startable_jobs: int = 500  # submitted + queued + failure; more -> POST 429
    max_records: int = 1_000_000  # per job; more -> 413
    max_input_bytes: int = 500 * 1024 * 1024  # uncompressed; more -> 413
    max_line_length: int = 4096
    max_recid_length: int = 512
    token_ttl: float = 3600.0  # lifetime of OAuth access tokens, seconds
    chunk_records: int = 20_000  # records per processing step off the event loop
    # Processes that share an unpaced job of at least ``parallel_min_records`` records (1 = none: all
    # work in the emulator's process). The CLI defaults to 2 on a multi-core machine; embedded, the
    # default stays 1, because spawned workers re-import the embedding script's main module.
    workers: int = 1
    parallel_min_records: int = 100_000

    def update(self, values: dict[str, Any]) -> None:
        """Apply a partial update (admin endpoint), converting numbers; unknown keys raise KeyError."""
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(key)
            current = getattr(self, key)
            setattr(self, key, float(value) if isinstance(current, float) else int(value))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (``inf`` becomes the string "inf")."""
        return {
            k: ("inf" if isinstance(v, float) and v == float("inf") else v) for k, v in asdict(self).items()
        }


@dataclass
class Records:
    """HERE's ``records`` counters."""

    total: int = 0
    valid: int = 0
    invalid: int = 0
    processed: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0


@dataclass
class Job:
    """One batch job: HERE's visible fields plus the emulator's processing state."""

    id: str
    service_hrn: str
    created: str
    status: str = c.SUBMITTED
    tag: str | None = None
    billing_tags: list[str] = field(default_factory=list)
    notification_ids: list[str] | None = None
    started: str | None = None
    ended: str | None = None
    records: Records = field(default_factory=Records)
    estimated_total: int = 0  # raw line count at upload (header/empty lines included), shown until it runs
    output_type: str = "csv"
    input_delimiter: str = "|"
    output_delimiter: str = "|"
    input_columns: str | None = None
    output_columns: str | None = None
    output_filter: str | None = None
    # processing state
    validated: bool = False
    query_form: bool = False
    input_offset: int = 0  # byte offset of the next input line to process
    record_index: int = 0  # data records (non-empty lines after the header) seen so far
    results_size: int = 0
    errors_size: int = 0
    error_lines: int = 0
    start_requested: bool = False
    stop_requested: bool = False
    fail_requested: str | None = None
    status_since: float = 0.0  # monotonic-ish time (time.time()) of the last status change

    @property
    def service(self) -> str:
        """Short service name: geocode / revgeocode / lookup."""
        return c.SERVICES[self.service_hrn]

    def to_json(self) -> dict[str, Any]:
        """Serialise for job.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        """Inverse of :meth:`to_json`."""
        data = dict(data)
        data["records"] = Records(**data.get("records", {}))
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    # ---- HERE's response bodies -------------------------------------------------------------------
    def response(self, base: str) -> dict[str, Any]:
        """``JobResponse`` (answer of POST, start, stop, DELETE one)."""
        body: dict[str, Any] = {"id": self.id, "serviceHrn": self.service_hrn, "status": self.status}
        if self.tag is not None:
            body["tag"] = self.tag
        body["billingTags"] = list(self.billing_tags)
        body["href"] = f"{base}/batch/jobs/{self.id}"
        return body

    def detail(self, base: str, has_results: bool, has_errors: bool) -> dict[str, Any]:
        """``JobDetailResponse`` with exactly the keys HERE's examples show for the current state."""
        href = f"{base}/batch/jobs/{self.id}"
        body: dict[str, Any] = {
            "id": self.id,
            "serviceHrn": self.service_hrn,
            "billingTags": list(self.billing_tags),
            "status": self.status,
        }
        if self.tag is not None:
            body["tag"] = self.tag
        body["href"] = href
        body["created"] = self.created
        if self.started is not None:
            body["started"] = self.started
        if self.ended is not None:
            body["ended"] = self.ended
        if self.status in (c.SUBMITTED, c.QUEUED, c.PENDING) and self.started is None:
            # HERE: before the job runs, only the (estimated) total is filled in.
            body["records"] = asdict(Records(total=self.estimated_total or self.records.total))
        else:
            body["records"] = asdict(self.records)
        downloadable = self.status in (c.COMPLETED, c.STOPPED, c.FAILURE)
        results = downloadable and has_results and self.status != c.FAILURE
        body["resultsHref"] = f"{href}/results" if results else ""
        body["errorsHref"] = f"{href}/errors" if downloadable and has_errors else ""
        if self.status != c.FAILURE:
            body["outputType"] = self.output_type
        if self.notification_ids:
            body["notificationIds"] = list(self.notification_ids)
        return body


class JobStore:
    """All jobs, in memory and mirrored to ``<data_dir>/jobs``. Thread-safe for metadata writes."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        for meta in sorted(self.root.glob("*/job.json")):
            try:
                job = Job.from_json(json.loads(meta.read_text("utf-8")))
            except (ValueError, TypeError, KeyError):
                continue  # a half-written job from a crash during upload: ignore it
            # Throw away output written after the last saved checkpoint.
            for name, size in (("results.txt", job.results_size), ("errors.txt", job.errors_size)):
                path = meta.parent / name
                if path.exists() and path.stat().st_size > size:
                    with path.open("r+b") as fh:
                        fh.truncate(size)
            self.jobs[job.id] = job

    def dir(self, job_id: str) -> Path:
        """Directory of a job's files."""
        return self.root / job_id

    def input_path(self, job_id: str) -> Path:
        """Path of the decompressed input."""
        return self.dir(job_id) / "input.txt"

    def results_path(self, job_id: str) -> Path:
        """Path of the results file."""
        return self.dir(job_id) / "results.txt"

    def errors_path(self, job_id: str) -> Path:
        """Path of the errors report."""
        return self.dir(job_id) / "errors.txt"

    def add(self, job: Job) -> None:
        """Register a new job (its input must already be in place) and persist it."""
        self.jobs[job.id] = job
        self.save(job)

    def save(self, job: Job) -> None:
        """Persist a job's metadata atomically (write + rename)."""
        directory = self.dir(job.id)
        if not directory.exists():
            return
        data = json.dumps(job.to_json())
        with self._lock:
            tmp = directory / "job.json.tmp"
            tmp.write_text(data, "utf-8")
            os.replace(tmp, directory / "job.json")

    def remove_files(self, job: Job) -> None:
        """Delete input, results and errors; keep the metadata (HERE keeps it readable by id)."""
        for path in (self.input_path(job.id), self.results_path(job.id), self.errors_path(job.id)):
            path.unlink(missing_ok=True)

    def has_results(self, job: Job) -> bool:
        """Whether the results file holds at least one data line."""
        return job.status != c.DELETED and job.records.succeeded > 0 and job.results_size > 0

    def has_errors(self, job: Job) -> bool:
        """Whether the errors report holds at least one line."""
        return job.status != c.DELETED and job.error_lines > 0

    def clear(self) -> None:
        """Forget every job and delete its files (admin reset)."""
        self.jobs.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
