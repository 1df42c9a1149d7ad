"""Test DAG for the quality verdict end to end (run by tests/operators/test_quality_pipeline.py).

A small address table (some ambiguous, some matching only a town) goes through the extract, one HERE job
on the emulator (3 candidates per record), both downloads (records with the verdict and a review file)
and the sink with its match-rate gate.

Settings come from the environment (set by the tests before ``dag.test()`` parses this file):
``HERE_TEST_QUALITY_CONN`` (the database connection), ``HERE_TEST_QUALITY_SHARE`` (the gate's bound),
``HERE_TEST_QUALITY_ON_LOW`` (``fail`` or ``warn``), ``HERE_BATCH_OUTPUT_DIR`` (output root).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.operators.sql import BatchResultsToSqlOperator, SqlToBatchInputOperator

CONN = os.environ.get("HERE_TEST_QUALITY_CONN", "here_batch_sqlite_default")
SHARE = float(os.environ.get("HERE_TEST_QUALITY_SHARE", "0.5"))
ON_LOW = os.environ.get("HERE_TEST_QUALITY_ON_LOW", "fail")
OUT = os.environ.get("HERE_BATCH_OUTPUT_DIR", "/tmp/here-batch-test-output")
COLUMNS = ["positionLat", "positionLng", "addressLabel", "resultType"]
STAMP = "{{ dag_run.run_after | ts_nodash }}"
#: id -> (address, country filter): 4 accepted, 3 not (2 ambiguous, 1 town for a house), 1 failed.
ADDRESSES = {
    "Q1": ("Chausseestraße 166, 10115 Berlin", "countryCode:DEU"),
    "Q2": ("Limmatquai 19, 8001 Zürich", "countryCode:CHE"),
    "Q3": ("Zürich", "countryCode:CHE"),
    "Q4": ("Helvetiaplatz, Bern", "countryCode:CHE"),
    "Q5": ("Helvetiaplatz", "countryCode:CHE"),
    "Q6": ("Hauptstraße 12", "countryCode:DEU"),
    "Q7": ("Rua Augusta 157, 1100-148 Lisboa", "countryCode:PRT"),
    "Q8": ("", "countryCode:DEU"),
}

with DAG(dag_id="test_quality_gate", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):

    @task
    def seed() -> int:
        from airflow_here_batch.operators.sql import get_db_hook

        hook = get_db_hook(CONN)
        hook.run("DROP TABLE IF EXISTS places")
        hook.run("CREATE TABLE places (id VARCHAR(64) PRIMARY KEY, address TEXT, country TEXT)")
        rows = [(key, address, country) for key, (address, country) in ADDRESSES.items()]
        hook.insert_rows("places", rows, target_fields=["id", "address", "country"])
        return len(rows)

    extract = SqlToBatchInputOperator(
        task_id="extract",
        conn_id=CONN,
        sql="SELECT id, address, country FROM places",
        key_column="id",
        columns={"q": "address", "in": "country"},
        constants={"limit": "3"},
        output_columns=COLUMNS,
        incremental=True,
        target_table="places_geocoded",
    )
    submit = SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input="{{ ti.xcom_pull(task_ids='extract')['input'] }}",
        output_columns=COLUMNS,
        wait_for_completion=True,
        poll_interval=0.2,
        timeout=120,
    )
    download = DownloadBatchResultsOperator(
        task_id="download",
        job_id=submit.output["job_id"],
        destination=f"{OUT}/quality/{STAMP}/",
        what="both",
    )
    records = DownloadBatchResultsOperator(
        task_id="records",
        job_id=submit.output["job_id"],
        output_format="records",
        review_destination=f"{OUT}/quality/{STAMP}/review.csv",
    )
    write = BatchResultsToSqlOperator(
        task_id="write",
        conn_id=CONN,
        table="places_geocoded",
        output_columns=COLUMNS,
        job_id=submit.output["job_id"],
        results="{{ ti.xcom_pull(task_ids='download')['results']['path'] }}",
        errors="{{ ti.xcom_pull(task_ids='download')['errors']['path'] }}",
        extract=extract.output,
        min_accepted_share=SHARE,
        on_low_match_rate=ON_LOW,
    )
    seed() >> extract >> submit >> [download, records]
    download >> write
