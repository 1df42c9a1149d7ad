"""A smoke check of your own HERE account, run once before the first night: ``here-batch-smoke``.

With your Airflow connection it checks, against the real HERE Batch API, everything a nightly run needs
and the connection's Test button cannot show: it reads ``/version`` (credentials and network), creates
a tiny geocode job of **two records** (gzip upload), waits for it, downloads its results and its errors
report, deletes the job and prints what it saw and what it cost. HERE bills every record it processes,
so the check bills two records: it refuses to run without ``--yes-bill-two-records``::

    here-batch-smoke --conn-id here_batch_default --yes-bill-two-records
    python -m airflow_here_batch.smoke --conn-id here_batch_default --yes-bill-two-records

The connection is looked up as in a task (``AIRFLOW_CONN_<ID>`` environment variable, a secrets backend
or Airflow's metadata database). Exit status: 0 when every step passed, 1 when one failed (the message
names our ``X-Request-ID`` and HERE's ``correlationId``: quote both to HERE support), 2 when refused.
The job is deleted whatever happens once it exists. See docs/conformance.md.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_here_batch import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow_here_batch.api.models import BatchJob
    from airflow_here_batch.hooks.here_batch import HereBatchHook

__all__ = [
    "CONFIRM_FLAG",
    "SMOKE_INPUT",
    "SMOKE_RECORDS",
    "SmokeCheckRefusedError",
    "SmokeReport",
    "main",
    "run_smoke_check",
]

#: The command-line flag that confirms the two billed records.
CONFIRM_FLAG = "--yes-bill-two-records"
#: Records the check sends (and HERE bills).
SMOKE_RECORDS = 2
#: The job's input: a header and two addresses HERE geocodes without trouble.
SMOKE_INPUT = (
    "recId|q\n"
    "1|Invalidenstraße 116, 10115 Berlin, Germany\n"
    "2|425 W Randolph St, Chicago, IL 60606, USA\n"
).encode()


class SmokeCheckRefusedError(ValueError):
    """The check was not confirmed (``confirm_billing=False``): nothing was sent to HERE."""


@dataclass
class SmokeReport:
    """What the check saw.

    :param steps: ``(step, ok, detail)`` in order.
    :param job_id: the job created, or None when none was.
    :param records_billed: records HERE counted as processed (``records.total``; HERE bills them),
        0 when no job ran.
    """

    base_url: str
    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    job_id: str | None = None
    records_billed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(ok for _, ok, _ in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "base_url", "job_id", "records_billed", "seconds", "steps"}``; each step is
        ``{"step", "ok", "detail"}``."""
        return {
            "ok": self.ok,
            "base_url": self.base_url,
            "job_id": self.job_id,
            "records_billed": self.records_billed,
            "seconds": round(self.seconds, 1),
            "steps": [{"step": s, "ok": ok, "detail": d} for s, ok, d in self.steps],
        }


def run_smoke_check(
    hook: HereBatchHook,
    *,
    confirm_billing: bool,
    timeout: float = 1800.0,
    poll_interval: float = 5.0,
    compress: bool = True,
    echo: Callable[[str], None] = print,
) -> SmokeReport:
    """Run the check with ``hook``'s connection; every step is echoed as it ends.

    :param confirm_billing: must be True: the job bills :data:`SMOKE_RECORDS` records.
    :param timeout: seconds to wait for the job to end (HERE queues jobs; a few minutes is usual).
    :param poll_interval: first delay between two status calls, seconds (grows to 6x, at most 60 s).
    :param compress: upload with ``Content-Encoding: gzip`` (as the nightly split path does).
    :param echo: where the lines go.
    :returns: the report; ``report.ok`` is False when a step failed (the failure is its last step).
    :raises SmokeCheckRefusedError: ``confirm_billing`` is not True (before any request).
    """
    from airflow_here_batch.api import HereBatchError, JobOptions, JobStatus, PollSchedule
    from airflow_here_batch.api.protocol import redact_url

    if confirm_billing is not True:
        raise SmokeCheckRefusedError(
            f"the smoke check creates a HERE job of {SMOKE_RECORDS} records, which HERE bills: "
            f"confirm with {CONFIRM_FLAG} (or confirm_billing=True)"
        )
    started = time.monotonic()
    report = SmokeReport(base_url=redact_url(hook.base_url))
    echo(f"HERE Batch smoke check against {report.base_url} (connection {hook.here_conn_id!r})")

    def step(name: str, ok: bool, detail: str) -> None:
        report.steps.append((name, ok, detail))
        echo(f"{'ok  ' if ok else 'FAIL'} {name:<16} {detail}")

    job: BatchJob | None = None
    current = "version"
    try:
        version = hook.get_version()
        step("version", True, f"apiVersion {version.get('apiVersion')}, serviceVersion "
             f"{version.get('serviceVersion')} (credentials and network work)")

        current = "create"
        tag = f"smoke-{uuid.uuid4().hex[:12]}"
        job = hook.create_job(
            SMOKE_INPUT, options=JobOptions(service="geocode", tag=tag), compress=compress
        )
        report.job_id = job.id
        step("create", True, f"job {job.id}, status {job.status.value}, tag {tag}, "
             f"{SMOKE_RECORDS} records{' (gzip)' if compress else ''}")

        current = "wait"
        t0 = time.monotonic()
        schedule = PollSchedule(poll_interval=poll_interval, max_poll_interval=min(60.0, 6 * poll_interval))
        done = hook.wait_for_job(job.id, schedule=schedule, timeout=timeout)
        report.records_billed = done.records.total
        counts = (
            f"total {done.records.total}, succeeded {done.records.succeeded}, "
            f"failed {done.records.failed}, invalid {done.records.invalid}"
        )
        ok = done.status is JobStatus.COMPLETED and done.records.total == SMOKE_RECORDS
        step("wait", ok, f"{done.status.value} after {time.monotonic() - t0:.0f} s ({counts})")
        if not ok:
            return report

        current = "results"
        sink = io.BytesIO()
        size = hook.download_results(job.id, sink)
        lines = sink.getvalue().decode("utf-8", "replace").splitlines()
        header = lines[0] if lines else ""
        ok = size is not None and len(lines) >= 1 + done.records.succeeded and header.startswith("recId")
        rows = max(0, len(lines) - 1)
        step("results", ok, f"{size or 0} bytes, {rows} result lines; header: {header[:80]}")
        if not ok:
            return report

        current = "errors"
        head = hook.download_errors_head(job.id, 5)
        first = f": {head[0][:80]}" if head else ""
        step("errors", True, f"{len(head)} lines in the errors report{first}")

        current = "delete"
        deleted = hook.delete_job(job.id)
        gone = hook.get_job(job.id)
        ok = gone.status is JobStatus.DELETED
        step("delete", ok, f"{deleted.status.value}; metadata still readable, status {gone.status.value}")
        job = None if ok else job
        return report
    except HereBatchError as exc:
        step(current, False, str(exc))
        return report
    finally:
        if job is not None:
            try:
                hook.delete_job(job.id)
                echo(f"     cleanup          job {job.id} deleted")
            except HereBatchError as exc:
                echo(f"     cleanup          could not delete job {job.id}: {exc}")
        report.seconds = time.monotonic() - started
        cost = "nothing billed (no job)"
        if report.job_id:
            cost = f"{report.records_billed} records billed by HERE"
        echo(f"{'PASSED' if report.ok else 'FAILED'} in {report.seconds:.0f} s; cost: {cost}")


def build_parser() -> argparse.ArgumentParser:
    """The ``here-batch-smoke`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="here-batch-smoke",
        description=(
            f"Check a HERE account end to end with a job of {SMOKE_RECORDS} records (billed by HERE): "
            "version, gzip upload, wait, results, errors report, delete."
        ),
    )
    parser.add_argument(
        "--conn-id", default=DEFAULT_CONN_ID, help=f"Airflow connection (default {DEFAULT_CONN_ID})"
    )
    parser.add_argument(
        CONFIRM_FLAG, dest="confirm", action="store_true", help="required: agree to be billed for 2 records"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the job (1800)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="first poll delay, seconds (5)")
    parser.add_argument("--no-gzip", dest="compress", action="store_false", help="upload uncompressed")
    parser.add_argument(
        "--verbose", action="store_true", help="debug log: every request's method, path and X-Request-ID"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``here-batch-smoke``; returns the exit status (0 passed, 1 failed, 2 refused)."""
    args = build_parser().parse_args(argv)
    if not args.confirm:
        print(
            f"here-batch-smoke: not run. It creates a HERE job of {SMOKE_RECORDS} records, which HERE "
            f"bills; add {CONFIRM_FLAG} to run it.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("airflow_here_batch").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    hook = HereBatchHook(args.conn_id)
    try:
        hook.settings  # noqa: B018 - resolve the connection first: a missing one is a clear message
    except Exception as exc:  # the lookup raises Airflow's, ValueError or AuthenticationError
        print(f"here-batch-smoke: connection {args.conn_id!r} is not usable: {exc}", file=sys.stderr)
        return 1
    try:
        report = run_smoke_check(
            hook,
            confirm_billing=True,
            timeout=args.timeout,
            poll_interval=args.poll_interval,
            compress=args.compress,
            echo=lambda line: print(line, flush=True),
        )
    finally:
        hook.close()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
