"""P9: rows written per second into PostgreSQL by the sink, against a bare ``COPY`` of the same rows.

One child process (Airflow imported, as in a task), a throwaway PostgreSQL database, 1,000,000 records
(quick: 50,000):

* **sink**: ``BatchResultsToSqlOperator`` writes a HERE results file (``recId|seqNumber|seqLength|
  positionLat|positionLng|addressLabel|addressCountryCode|resultType``, one row per record) and the
  extract's fingerprints file into a new table (a first load): parse, type, merge the fingerprints and
  ``COPY`` in batches of 10,000, one transaction each, as in a DAG run; then (information row) the same
  files again into that table, which now holds every key: each batch staged and upserted (a rerun);
* **baseline**: the very rows the sink wrote (read back from its table into ``COPY`` text beforehand, not
  timed), ``COPY``'d from the same process into an empty table of the same shape (same primary key and
  index): the physical limit of getting those rows into PostgreSQL on this machine.

Figure: sink rows/s / ``COPY`` rows/s (>= 0.5x). Best of 2 runs each (the machine is shared).
PostgreSQL: ``HERE_BATCH_BENCH_POSTGRES_URI`` (see ``p8_incremental``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Row, child_env, run_child, workdir
from benchmarks.p8_incremental import DB_CONN_ID, OUTPUT_COLUMNS, airflow_conn, scratch_database, unreachable

TARGET = 0.5


def _write_inputs(folder: Path, records: int) -> tuple[Path, Path]:
    results = folder / "results.csv"
    fingerprints = folder / "fingerprints.csv"
    with results.open("w", encoding="utf-8") as out, fingerprints.open("w", encoding="utf-8") as fp:
        out.write(
            "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|addressCountryCode|resultType\n"
        )
        fp.write("rec_id|fingerprint\n")
        lines, fps = [], []
        for i in range(records):
            lat, lng = 47.0 + (i % 50_000) / 10_000, 6.0 + (i % 70_000) / 10_000
            lines.append(
                f"{i}|1|1|{lat:.5f}|{lng:.5f}|Hauptstraße {i % 997 + 1}, {10000 + i % 89999} Berlin, Germany"
                "|DEU|houseNumber\n"
            )
            fps.append(f"{i}|{i:032x}\n")
            if len(lines) >= 10_000:
                out.write("".join(lines))
                fp.write("".join(fps))
                lines, fps = [], []
        out.write("".join(lines))
        fp.write("".join(fps))
    return results, fingerprints


def _child(payload: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator, get_db_hook
    from airflow_here_batch.tables.dialect import table_dialect
    from airflow_here_batch.tables.records import target_columns

    folder = Path(payload["folder"])
    records = payload["records"]
    results, fingerprints = _write_inputs(folder, records)
    uri = payload["uri"]
    columns = target_columns(OUTPUT_COLUMNS)
    sink_s, copy_s, upsert_s = [], [], []
    for attempt in range(payload["repeat"]):
        table = f"geo_{attempt}"
        op = BatchResultsToSqlOperator(
            task_id="write_results",
            conn_id=DB_CONN_ID,
            table=table,
            output_columns=OUTPUT_COLUMNS,
            job_id="JOB-p9",
            results=f"file://{results}",
            extract={"fingerprints": f"file://{fingerprints}", "records_sent": records},
        )
        t0 = time.perf_counter()
        summary = op.execute({"run_id": "p9"})  # type: ignore[arg-type]
        sink_s.append(time.perf_counter() - t0)
        assert summary["records_written"] == records, summary
        # The same rows again into the table that now holds them: every row upserted (a rerun).
        t0 = time.perf_counter()
        summary = op.execute({"run_id": "p9-again"})  # type: ignore[arg-type]
        upsert_s.append(time.perf_counter() - t0)
        assert summary["records_written"] == records, summary

        # The same rows as COPY text, prepared untimed.
        copy_text = folder / "rows.copy"
        with (
            psycopg.connect(uri) as conn,
            copy_text.open("wb") as out,
            conn.cursor().copy(f"COPY {table} TO STDOUT") as copy,
        ):
            for chunk in copy:
                out.write(chunk)
        bare = f"bare_{attempt}"
        with psycopg.connect(uri, autocommit=True) as conn:
            for statement in table_dialect(get_db_hook(DB_CONN_ID)).create_table_sql(bare, columns):
                conn.execute(statement)
        t0 = time.perf_counter()
        with psycopg.connect(uri) as conn, copy_text.open("rb") as source:
            with conn.cursor().copy(f"COPY {bare} FROM STDIN") as copy:
                while chunk := source.read(1 << 20):
                    copy.write(chunk)
            conn.commit()
        copy_s.append(time.perf_counter() - t0)
        with psycopg.connect(uri) as conn:
            count = conn.execute(f"SELECT COUNT(*) FROM {bare}").fetchone()
        assert count is not None and count[0] == records
        copy_text.unlink()
    get_db_hook(DB_CONN_ID)  # the connection resolves (and nothing else is cached)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"sink_s": sink_s, "copy_s": copy_s, "upsert_s": upsert_s, "peak_rss_mb": peak}


def run(quick: bool) -> list[Row]:
    skipped = unreachable("P9")
    if skipped:
        return skipped
    records = 50_000 if quick else 1_000_000
    with workdir("p9-") as work, scratch_database("here_batch_p9") as uri:
        env = child_env(airflow_home=work / "airflow")
        env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"  # lets the child call execute() outside a DAG run
        env[f"AIRFLOW_CONN_{DB_CONN_ID.upper()}"] = airflow_conn(uri)
        result = run_child(
            "benchmarks.p9_sink",
            {"folder": str(work), "records": records, "uri": uri, "repeat": 1 if quick else 2},
            env,
            timeout=3600,
            log=work / "child.log",
        )
    print(f"# P9 {json.dumps(result)}", file=sys.stderr, flush=True)
    sink = records / min(result["sink_s"])
    bare = records / min(result["copy_s"])
    ratio = sink / bare
    upsert = records / min(result["upsert_s"])
    return [
        Row(
            "P9",
            f"sink into PostgreSQL, {records:,} rows into a new table (parse, COPY; 10,000 per transaction)",
            f"{sink:,.0f} rows/s ({min(result['sink_s']):.1f} s)",
            f"{bare:,.0f} rows/s (bare COPY, {min(result['copy_s']):.1f} s)",
            f"{ratio:.2f}x",
            f">= {TARGET}x",
            ratio >= TARGET,
        ),
        Row(
            "P9",
            f"sink into a table already holding the {records:,} rows (every row upserted: a rerun)",
            f"{upsert:,.0f} rows/s ({min(result['upsert_s']):.1f} s)",
            f"{bare:,.0f} rows/s (bare COPY, {min(result['copy_s']):.1f} s)",
            f"{upsert / bare:.2f}x",
            "-",
            None,
        ),
    ]


__all__ = ["run"]

if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))), flush=True)
    else:
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        for row in run(quick="--quick" in sys.argv):
            print(row)
