"""P4: status calls made while waiting for a job, with the trigger's poll schedule on a fake clock.

The schedule is the core's ``PollSchedule`` + ``ProgressTracker`` with ``BatchJobTrigger``'s default
``poll_interval``/``max_poll_interval``, used exactly as ``BatchJobTrigger.run()`` uses them. The job
behaves like HERE's: ``queued`` then ``pending`` for a short queue time, then ``inProgress`` with
linear progress, then ``completed``. Baseline: fixed 30 s polling of the same job.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from benchmarks._common import Row

TOTAL_RECORDS = 250_000
QUEUE_SECONDS = 15.0
BASELINE_INTERVAL = 30.0
MAX_CALLS_1H = 25
MAX_POLLS = 10_000  # bound on every simulated wait


def _job_at(t: float, duration: float) -> object:
    from airflow_here_batch.api.models import BatchJob

    if t < QUEUE_SECONDS * 0.7:
        status, records = "queued", {"total": TOTAL_RECORDS}
    elif t < QUEUE_SECONDS:
        status, records = "pending", {"total": TOTAL_RECORDS}
    elif t < duration:
        done = int(TOTAL_RECORDS * (t - QUEUE_SECONDS) / (duration - QUEUE_SECONDS))
        status = "inProgress"
        records = {
            "total": TOTAL_RECORDS,
            "valid": TOTAL_RECORDS,
            "processed": done,
            "pending": TOTAL_RECORDS - done,
            "succeeded": done,
        }
    else:
        status = "completed"
        records = {"total": TOTAL_RECORDS, "valid": TOTAL_RECORDS, "processed": TOTAL_RECORDS,
                   "succeeded": TOTAL_RECORDS}
    return BatchJob.from_dict({"id": "JOB-sim", "serviceHrn": "hrn:here:service::olp-here:search-v7-geocode",
                               "status": status, "records": records})


def simulate(duration: float, next_delay: Callable[[float, object], float]) -> tuple[int, float]:
    """Status calls until completion is seen, and when it was seen (fake seconds since start)."""
    now = 0.0
    for calls in range(1, MAX_POLLS + 1):
        job = _job_at(now, duration)
        if getattr(job, "status").value == "completed":  # noqa: B009
            return calls, now
        now += next_delay(now, job)
    raise RuntimeError(f"no completion after {MAX_POLLS} polls")


def trigger_defaults() -> tuple[float, float]:
    """``BatchJobTrigger.__init__``'s defaults, read from its source (importing Airflow takes seconds)."""
    import airflow_here_batch

    source = Path(airflow_here_batch.__file__).parent / "triggers" / "batch_job.py"
    for node in ast.walk(ast.parse(source.read_text("utf-8"))):
        if isinstance(node, ast.ClassDef) and node.name == "BatchJobTrigger":
            init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
            args = init.args.args[-len(init.args.defaults):]
            defaults = {a.arg: ast.literal_eval(d) for a, d in zip(args, init.args.defaults, strict=True)}
            return float(defaults["poll_interval"]), float(defaults["max_poll_interval"])
    raise RuntimeError("BatchJobTrigger.__init__ not found")


def run(quick: bool) -> list[Row]:
    from airflow_here_batch.api.polling import PollSchedule, ProgressTracker

    poll_interval, max_poll_interval = trigger_defaults()
    rows: list[Row] = []
    for label, duration in (("1 min", 60.0), ("10 min", 600.0), ("1 h", 3600.0)):
        schedule = PollSchedule(poll_interval, max_poll_interval)
        tracker = ProgressTracker()

        def product(now: float, job: object, schedule: PollSchedule = schedule,
                    tracker: ProgressTracker = tracker) -> float:
            tracker.observe(job, now)  # type: ignore[arg-type]
            return schedule.next_delay(now, eta=tracker.eta(job))  # type: ignore[arg-type]

        calls, seen = simulate(duration, product)
        base_calls, base_seen = simulate(duration, lambda now, job: BASELINE_INTERVAL)
        late = seen - duration
        allowed = max(0.1 * duration, poll_interval)
        ok = late <= allowed
        target = f"late <= {allowed:.0f} s"
        if duration >= 3600:
            ok = ok and calls <= MAX_CALLS_1H
            target = f"<= {MAX_CALLS_1H} calls, {target}"
        rows.append(
            Row(
                "P4",
                f"status calls, {label} job (poll {poll_interval:g}-{max_poll_interval:g} s)",
                f"{calls} calls, late {late:.0f} s",
                f"{base_calls} calls, late {base_seen - duration:.0f} s",
                f"{calls / base_calls:.2f}x calls",
                target,
                ok,
            )
        )
    return rows


__all__ = ["run", "simulate"]

if __name__ == "__main__":  # pragma: no cover
    for row in run(quick=False):
        print(row)
