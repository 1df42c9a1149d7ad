"""P9-mysql: rows written per second into MariaDB/MySQL by the sink, against a bare ``LOAD DATA LOCAL
INFILE`` of the same rows.

One child process (Airflow imported, as in a task), a throwaway database on the MariaDB/MySQL server,
1,000,000 records (quick: 50,000):

* **sink**: ``BatchResultsToSqlOperator`` (``MySqlHook``, client mysql-connector-python) writes a HERE
  results file and the extract's fingerprints file (the files of P9) into a new table (a first load):
  parse, type, merge the fingerprints and ``LOAD DATA LOCAL INFILE`` in batches of 10,000, one
  transaction each, as in a DAG run; then (information row) the same files again into that table, which
  now holds every key: each batch staged and upserted (``ON DUPLICATE KEY UPDATE``: a rerun);
* **baseline**: the very rows the sink wrote (read back from its table into the server's tab-separated
  text beforehand, not timed, in the order the sink got them: the results file's), loaded from the same
  process by one ``LOAD DATA LOCAL INFILE`` into an empty table of the same shape (same primary key and
  index), one commit: the server's own bulk path.

Figure: sink rows/s / ``LOAD DATA`` rows/s (>= 0.5x). Best of 2 runs each (the machine is shared).
Server: ``HERE_BATCH_BENCH_MYSQL_URI`` (default ``mysql://root@127.0.0.1:3306/test``, a user allowed to
create databases).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks._common import Row, child_env, run_child, workdir
from benchmarks.p8_incremental import DB_CONN_ID, OUTPUT_COLUMNS
from benchmarks.p9_sink import _write_inputs

TARGET = 0.5
MYSQL_URI_ENV = "HERE_BATCH_BENCH_MYSQL_URI"


def mysql_uri() -> str:
    return os.environ.get(MYSQL_URI_ENV) or "mysql://root@127.0.0.1:3306/test"


def _connect(uri: str, **kwargs: Any) -> Any:
    import mysql.connector

    parts = urlsplit(uri)
    return mysql.connector.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or None,
        charset="utf8mb4",
        **kwargs,
    )


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new database for one benchmark; yields its URI, drops it afterwards."""
    admin = mysql_uri()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = _connect(admin, autocommit=True)
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    try:
        yield urlsplit(admin)._replace(path=f"/{name}").geturl()
    finally:
        conn = _connect(admin, autocommit=True)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def unreachable(figure: str) -> list[Row] | None:
    """An information row when no server answers (outside CI), else ``None``."""
    try:
        import mysql.connector

        _connect(mysql_uri(), connection_timeout=3).close()
    except (ImportError, mysql.connector.Error) as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Row(figure, f"not run: no MariaDB/MySQL at {mysql_uri()} ({reason}); set {MYSQL_URI_ENV}",
                    "-", "-", "-", "-", None)]
    return None


def airflow_conn(uri: str) -> str:
    """``AIRFLOW_CONN_...`` JSON of a mysql connection (client mysql-connector-python) for a URI."""
    parts = urlsplit(uri)
    return json.dumps(
        {
            "conn_type": "mysql",
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "login": parts.username or "root",
            "password": parts.password or "",
            "schema": parts.path.lstrip("/"),
            "extra": {"client": "mysql-connector-python"},
        }
    )


def _child(payload: dict[str, Any]) -> dict[str, Any]:
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator, get_db_hook
    from airflow_here_batch.tables.dialect import copy_line, table_dialect
    from airflow_here_batch.tables.records import target_columns

    folder = Path(payload["folder"])
    records = payload["records"]
    results, fingerprints = _write_inputs(folder, records)
    uri = payload["uri"]
    columns = target_columns(OUTPUT_COLUMNS)
    names = ", ".join(f"`{c.name}`" for c in columns)
    sink_s, load_s, upsert_s = [], [], []
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
        t0 = time.perf_counter()
        summary = op.execute({"run_id": "p9-again"})  # type: ignore[arg-type]
        upsert_s.append(time.perf_counter() - t0)
        assert summary["records_written"] == records, summary

        # The same rows as the server's tab-separated text, prepared untimed, in the order the sink got
        # them (the results file's: recIds 0, 1, 2, ...; InnoDB inserts rows in key order faster).
        text = folder / "rows.tsv"
        conn = _connect(uri)
        cursor = conn.cursor(buffered=False)
        cursor.execute(f"SELECT {names} FROM `{table}` ORDER BY CAST(`rec_id` AS UNSIGNED)")
        with text.open("w", encoding="utf-8", newline="") as out:
            while batch := cursor.fetchmany(20_000):
                out.write("".join(copy_line(row) for row in batch))
        cursor.close()
        conn.close()
        bare = f"bare_{attempt}"
        conn = _connect(uri, autocommit=True)
        for statement in table_dialect(get_db_hook(DB_CONN_ID)).create_table_sql(bare, columns):
            conn.cursor().execute(statement)
        conn.close()
        conn = _connect(uri, allow_local_infile_in_path=str(folder))
        cursor = conn.cursor()
        t0 = time.perf_counter()
        cursor.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{bare}` CHARACTER SET utf8mb4 ({names})", (str(text),)
        )
        conn.commit()
        load_s.append(time.perf_counter() - t0)
        cursor.execute(f"SELECT COUNT(*) FROM `{bare}`")
        (count,) = cursor.fetchone()
        assert count == records, count
        conn.close()
        text.unlink()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"sink_s": sink_s, "load_s": load_s, "upsert_s": upsert_s, "peak_rss_mb": peak}


def run(quick: bool) -> list[Row]:
    skipped = unreachable("P9-mysql")
    if skipped:
        return skipped
    records = 50_000 if quick else 1_000_000
    with workdir("p9m-") as work, scratch_database("here_batch_p9m") as uri:
        env = child_env(airflow_home=work / "airflow")
        env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"  # lets the child call execute() outside a DAG run
        env[f"AIRFLOW_CONN_{DB_CONN_ID.upper()}"] = airflow_conn(uri)
        result = run_child(
            "benchmarks.p9_mysql",
            {"folder": str(work), "records": records, "uri": uri, "repeat": 1 if quick else 2},
            env,
            timeout=3600,
            log=work / "child.log",
        )
    print(f"# P9-mysql {json.dumps(result)}", file=sys.stderr, flush=True)
    sink = records / min(result["sink_s"])
    bare = records / min(result["load_s"])
    ratio = sink / bare
    upsert = records / min(result["upsert_s"])
    baseline = f"{bare:,.0f} rows/s (bare LOAD DATA LOCAL INFILE, {min(result['load_s']):.1f} s)"
    return [
        Row(
            "P9-mysql",
            f"sink into MariaDB/MySQL, {records:,} rows into a new table (parse, LOAD DATA; 10,000 per "
            "transaction)",
            f"{sink:,.0f} rows/s ({min(result['sink_s']):.1f} s)",
            baseline,
            f"{ratio:.2f}x",
            f">= {TARGET}x",
            ratio >= TARGET,
        ),
        Row(
            "P9-mysql",
            f"sink into a table already holding the {records:,} rows (every row upserted: a rerun)",
            f"{upsert:,.0f} rows/s ({min(result['upsert_s']):.1f} s)",
            baseline,
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
