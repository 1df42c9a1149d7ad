"""P8: incremental nightly geocoding of a PostgreSQL table: the second run sends only the changed rows.

A 1,000,000-row ``addresses`` table (quick: 20,000) in a throwaway PostgreSQL database is geocoded into
``addresses_geocoded`` through the emulator (its own process, ``records_per_second=inf``,
``queue_delay=0``), the way ``here_batch_nightly_geocode`` does it: each task of the DAG runs in its own
process, one after the other:

1. ``extract_changed``: ``SqlToBatchInputOperator.execute`` (incremental, fingerprints from the target);
2. ``submit_geocode_job`` + ``wait_for_job`` + ``download_results``: ``HereBatchHook.create_job``
   (gzip upload), ``wait_for_job``, ``download_results``/``download_errors`` (what the operators call);
3. ``write_results``: ``BatchResultsToSqlOperator.execute``.

Then 1 % of the rows get a new address (``UPDATE ... WHERE id % 100 = 0``) and the same tasks run again.

**P8-change**: the same on a second table, ``addresses_stamped``, with a change column ``updated_at``
(``TIMESTAMP WITH TIME ZONE``, indexed; one row stamped every 30 s, the newest a day old) and the extract
given ``change_column="updated_at"`` (as ``geocode_table`` passes it): its first run reads every row and
the write keeps the mark; the ``UPDATE`` also sets ``updated_at = now()``; the second run reads only the
rows at or above the mark minus the one-hour window. Its second run is measured against its own first
run.

Each task runs in a process forked from a worker that has ``airflow.sdk`` and Airflow's task supervisor
imported (as Airflow 3 runs a task: LocalExecutor and Celery workers fork the task runner through
``airflow.sdk.execution_time.supervisor``; P7 does the same); the task process imports the provider
itself, as parsing the DAG file does.

Figures: records sent by the second run / rows changed (<= 1.05x); the second run's wall time / the
first's (<= 0.1x; with the change column <= 0.05x; wall = the sum of the task processes' wall times from
fork to exit, the provider's imports included); the highest peak RSS (``VmHWM``, which includes the pages
shared with the worker) of any task process in either run (< 200 MB).

PostgreSQL: ``HERE_BATCH_BENCH_POSTGRES_URI`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
a user allowed to create databases; the database ``here_batch_p8_<random>`` is dropped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks._common import PY, ROOT, Emulator, Row, child_env, workdir

OUTPUT_COLUMNS = ["positionLat", "positionLng", "addressLabel", "addressCountryCode", "resultType"]
POSTGRES_URI_ENV = "HERE_BATCH_BENCH_POSTGRES_URI"
DB_CONN_ID = "here_batch_bench_db"
#: Seconds each task spent in its work (the operator or hook calls), without start-up: the last run's.
WORK: dict[str, float] = {}


def postgres_uri() -> str:
    return os.environ.get(POSTGRES_URI_ENV) or "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database for one benchmark; yields its URI, drops it afterwards."""
    import psycopg

    admin = postgres_uri()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(admin)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unreachable(figure: str) -> list[Row] | None:
    """An information row when no PostgreSQL server answers (outside CI), else ``None``."""
    import psycopg

    try:
        psycopg.connect(postgres_uri(), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [
            Row(
                figure,
                f"not run: no PostgreSQL at {postgres_uri()} ({reason}); set {POSTGRES_URI_ENV}",
                "-",
                "-",
                "-",
                "-",
                None,
            )
        ]
    return None


def airflow_conn(uri: str) -> str:
    """``AIRFLOW_CONN_...`` JSON of a postgres connection for a libpq URI."""
    parts = urlsplit(uri)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "login": parts.username or "postgres",
            "password": parts.password or "",
            "schema": parts.path.lstrip("/"),
        }
    )


def _seed(uri: str, rows: int, table: str = "addresses", stamped: bool = False) -> None:
    import psycopg

    stamp = ", updated_at TIMESTAMP WITH TIME ZONE" if stamped else ""
    # one row every 30 s, the newest a day old (1,000,000 rows: about a year)
    stamp_value = ", now() - interval '1 day' - interval '30 seconds' * i" if stamped else ""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, address TEXT, country_filter TEXT{stamp})"
        )
        conn.execute(
            f"INSERT INTO {table} SELECT i, "
            "(ARRAY['Hauptstraße','Invalidenstraße','Main Street','Rue de Rivoli','Via Roma'])[1 + i %% 5] "
            "|| ' ' || (1 + i %% 997) || ', ' || (10000 + i %% 89999) || ' ' "
            "|| (ARRAY['Berlin','Hamburg','London','Paris','Roma'])[1 + i %% 5], "
            "'countryCode:' || (ARRAY['DEU','DEU','GBR','FRA','ITA'])[1 + i %% 5]"
            f"{stamp_value} FROM generate_series(1, %s) AS i",
            (rows,),
        )
        if stamped:
            conn.execute(f"CREATE INDEX {table}_updated_at_idx ON {table} (updated_at)")
        conn.execute(f"ANALYZE {table}")


# --- the task processes ----------------------------------------------------------------------------


def _child(payload: dict[str, Any]) -> dict[str, Any]:
    task = payload["task"]
    if task == "extract":
        from airflow_here_batch.operators.sql import SqlToBatchInputOperator

        table = payload.get("table", "addresses")
        change = payload.get("change_column")
        op = SqlToBatchInputOperator(
            task_id="extract_changed",
            conn_id=DB_CONN_ID,
            sql=f"SELECT id, address, country_filter{', ' + change if change else ''} FROM {table}",
            key_column="id",
            columns={"q": "address", "in": "country_filter"},
            output_columns=OUTPUT_COLUMNS,
            incremental=True,
            target_table=f"{table}_geocoded",
            change_column=change,
            destination=payload["folder"],
        )
        return op.execute({"run_id": payload["run"]})  # type: ignore[arg-type]
    if task == "here":
        from airflow_here_batch.api.polling import PollSchedule
        from airflow_here_batch.api.protocol import JobOptions
        from airflow_here_batch.hooks.here_batch import HereBatchHook

        hook = HereBatchHook()
        folder = Path(payload["folder"].removeprefix("file://"))
        options = JobOptions(service="geocode", output_columns=OUTPUT_COLUMNS, input_delimiter="|")
        job = hook.create_job(folder / "input.csv", options=options, compress=True)
        schedule = PollSchedule(poll_interval=0.2, max_poll_interval=1)
        job = hook.wait_for_job(job.id, timeout=3600, schedule=schedule)
        results = hook.download_results(job.id, folder / "results.csv")
        errors = hook.download_errors(job.id, folder / "errors.txt")
        return {
            "job_id": job.id,
            "results": f"file://{folder}/results.csv" if results is not None else None,
            "errors": f"file://{folder}/errors.txt" if errors is not None else None,
        }
    if task == "write":
        from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

        op = BatchResultsToSqlOperator(
            task_id="write_results",
            conn_id=DB_CONN_ID,
            table=f"{payload.get('table', 'addresses')}_geocoded",
            output_columns=OUTPUT_COLUMNS,
            job_id=payload["job_id"],
            results=payload["results"],
            errors=payload["errors"],
            extract=payload["extract"],
        )
        return op.execute({"run_id": payload["run"]})  # type: ignore[arg-type]
    raise ValueError(task)


class _Worker:
    """A worker process (fresh interpreter, ``airflow.sdk`` and Airflow's task supervisor imported, not
    timed) that forks one process per task, as Airflow 3's supervisor does (LocalExecutor and Celery
    workers alike: ``airflow.sdk.execution_time.supervisor`` forks the task runner). The task process
    imports the provider itself (as parsing the DAG file does) and runs the operator."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._err = log.open("a")
        self._proc = subprocess.Popen(
            [PY, "-m", "benchmarks.p8_incremental", "--worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self._log = log
        self._read()  # ready

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        while line := self._proc.stdout.readline():
            if line.startswith("{"):
                return json.loads(line)
        tail = "\n".join(self._log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"the worker process ended (exit {self._proc.wait()}): {tail}")

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(payload) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._err.close()


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _worker_main() -> None:  # pragma: no cover - runs in the worker process
    import airflow.sdk  # what the worker has loaded before it forks a task
    import airflow.sdk.execution_time.supervisor  # noqa: F401

    print("{}", flush=True)
    for line in sys.stdin:
        payload = json.loads(line)
        read_end, write_end = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the task process
            os.close(read_end)
            code = 0
            try:
                t0 = time.perf_counter()
                result = _child(payload)
                out = {"result": result, "work_s": time.perf_counter() - t0, "peak_rss_mb": _vm_hwm_mb()}
            except BaseException as exc:  # reported to the parent
                out, code = {"error": repr(exc)}, 1
            with os.fdopen(write_end, "w") as fh:
                fh.write(json.dumps(out, default=str) + "\n")
            os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as fh:
            text = fh.read()
        os.waitpid(pid, 0)
        wall = time.perf_counter() - started
        out = json.loads(text) if text.strip() else {"error": "the task process died"}
        out["wall_s"] = wall
        print(json.dumps(out, default=str), flush=True)


def _run_task(payload: dict[str, Any], worker: _Worker) -> tuple[dict[str, Any], float, float]:
    """One task process; returns (its result, wall seconds, peak RSS MB); its work time goes to WORK."""
    out = worker.run(payload)
    if "error" in out:
        raise RuntimeError(f"task {payload['task']} failed: {out['error']}")
    WORK[payload["task"]] = out["work_s"]
    return out["result"], out["wall_s"], out["peak_rss_mb"]


def _dag_run(
    worker: _Worker, work: Path, run: str, table: str = "addresses", change: str | None = None
) -> dict[str, Any]:
    folder = f"file://{work / run}"
    walls: dict[str, float] = {}
    peaks: dict[str, float] = {}
    source = {"table": table, "change_column": change}
    extract, walls["extract"], peaks["extract"] = _run_task(
        {"task": "extract", "folder": folder, "run": run, **source}, worker
    )
    job: dict[str, Any] = {"job_id": None, "results": None, "errors": None}
    if extract["records_sent"]:
        here = {"task": "here", "folder": folder, "run": run}
        job, walls["here"], peaks["here"] = _run_task(here, worker)
    summary, walls["write"], peaks["write"] = _run_task(
        {"task": "write", "run": run, "extract": extract, **job, **source}, worker
    )
    result = {
        "summary": summary,
        "walls": walls,
        "peaks": peaks,
        "wall": sum(walls.values()),
        "work": dict(WORK),
    }
    WORK.clear()
    print(f"# P8 {run}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def run(quick: bool) -> list[Row]:
    skipped = unreachable("P8")
    if skipped:
        return skipped
    rows = 20_000 if quick else 1_000_000
    changed = rows // 100
    with workdir("p8-") as work, scratch_database("here_batch_p8") as uri:
        _seed(uri, rows)
        with Emulator(work / "emu", records_per_second="inf", queue_delay=0, max_running_jobs=5) as emu:
            env = child_env(emu.base_url, airflow_home=work / "airflow")
            env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"  # lets the child call execute() outside a DAG run
            env[f"AIRFLOW_CONN_{DB_CONN_ID.upper()}"] = airflow_conn(uri)
            worker = _Worker(env, work / "tasks.log")
            try:
                import psycopg

                first = _dag_run(worker, work, "first")
                with psycopg.connect(uri, autocommit=True) as conn:
                    conn.execute("UPDATE addresses SET address = address || ' Hinterhaus' WHERE id % 100 = 0")
                second = _dag_run(worker, work, "second")
                # P8-change: the same with a change column, on its own table (its own first run)
                _seed(uri, rows, "addresses_stamped", stamped=True)
                stamped_first = _dag_run(worker, work, "change-first", "addresses_stamped", "updated_at")
                with psycopg.connect(uri, autocommit=True) as conn:
                    conn.execute(
                        "UPDATE addresses_stamped SET address = address || ' Hinterhaus', updated_at = now() "
                        "WHERE id % 100 = 0"
                    )
                stamped_second = _dag_run(worker, work, "change-second", "addresses_stamped", "updated_at")
            finally:
                worker.close()
        import psycopg

        with psycopg.connect(uri) as conn:
            stored = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT rec_id) FROM addresses_geocoded"
            ).fetchone()
    assert stored is not None
    sent = second["summary"]["records_sent"]
    peak = max([*first["peaks"].values(), *second["peaks"].values()])
    wall_ratio = second["wall"] / first["wall"]
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in second["walls"].items())
    first_detail = ", ".join(f"{k} {v:.1f} s" for k, v in first["walls"].items())
    ok_rows = stored[0] == stored[1] == rows and first["summary"]["records_sent"] == rows
    return [
        Row(
            "P8",
            f"incremental rerun, {rows:,}-row PostgreSQL table, {changed:,} rows changed: records sent",
            f"{sent:,} sent ({second['summary']['records_reused']:,} reused)",
            f"{changed:,} changed",
            f"{sent / changed:.2f}x",
            "<= 1.05x",
            sent <= 1.05 * changed and ok_rows,
        ),
        Row(
            "P8",
            f"incremental rerun, {rows:,}-row PostgreSQL table: wall time of the task processes",
            f"{second['wall']:.1f} s ({detail})",
            f"{first['wall']:.1f} s first run ({first_detail})",
            f"{wall_ratio:.2f}x",
            "<= 0.1x",
            wall_ratio <= 0.1,
        ),
        Row(
            "P8",
            f"incremental rerun, {rows:,} rows: work inside the task processes (after the fork)",
            f"{sum(second['work'].values()):.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in second["work"].items())
            + ")",
            f"{sum(first['work'].values()):.1f} s first run ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in first["work"].items())
            + ")",
            f"{sum(second['work'].values()) / sum(first['work'].values()):.2f}x",
            "-",
            None,
        ),
        Row(
            "P8",
            "peak RSS of any task process, both runs",
            f"{peak:.0f} MB ("
            + ", ".join(f"{k} {v:.0f}" for k, v in first["peaks"].items())
            + " / "
            + ", ".join(f"{k} {v:.0f}" for k, v in second["peaks"].items())
            + ")",
            "-",
            f"{peak / 200:.2f}x of bound",
            "< 200 MB",
            peak < 200,
        ),
        *_change_rows(rows, changed, stamped_first, stamped_second),
    ]


def _change_rows(rows: int, changed: int, first: dict[str, Any], second: dict[str, Any]) -> list[Row]:
    """P8-change: records sent and the second run's wall time against its own first run."""
    summary = second["summary"]
    ratio = second["wall"] / first["wall"]
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in second["walls"].items())
    first_detail = ", ".join(f"{k} {v:.1f} s" for k, v in first["walls"].items())
    sent = summary["records_sent"]
    return [
        Row(
            "P8-change",
            f"change column updated_at, {rows:,}-row table, {changed:,} rows changed: records read / sent",
            f"{summary['records_total']:,} read, {sent:,} sent",
            f"{changed:,} changed",
            f"{sent / changed:.2f}x",
            "<= 1.05x",
            sent <= 1.05 * changed and first["summary"]["records_sent"] == rows,
        ),
        Row(
            "P8-change",
            f"change column updated_at, {rows:,}-row table: wall time of the task processes",
            f"{second['wall']:.1f} s ({detail})",
            f"{first['wall']:.1f} s first run ({first_detail})",
            f"{ratio:.3f}x",
            "<= 0.05x",
            ratio <= 0.05,
        ),
        Row(
            "P8-change",
            f"change column, {rows:,} rows: work inside the task processes (after the fork)",
            f"{sum(second['work'].values()):.2f} s ("
            + ", ".join(f"{k} {v:.2f} s" for k, v in second["work"].items())
            + ")",
            f"{sum(first['work'].values()):.1f} s first run",
            f"{sum(second['work'].values()) / sum(first['work'].values()):.3f}x",
            "-",
            None,
        ),
    ]


__all__ = ["airflow_conn", "postgres_uri", "run", "scratch_database"]

if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker_main()
    else:
        for row in run(quick="--quick" in sys.argv):
            print(row)
