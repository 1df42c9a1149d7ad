"""TaskFlow style: records produced by an upstream task are geocoded and consumed downstream.

``extract_customers`` stands for any upstream step (a database query, an API call) and returns a list
of dicts; ``SubmitBatchJobOperator`` takes that list straight from XCom as its ``input`` (the keys
become the column header; ``recId`` links results back to the records). The job is awaited by the
deferrable sensor, the results come back as parsed rows (``output_format="records"``, fine for small
jobs: the operator refuses above its size cap; a copy goes to ``<output>/taskflow/``, a URI every worker
reaches, and the asset ``here_batch_geocoded_addresses`` is updated), and ``enrich`` joins them to the
customers. Only rows, the job id and URIs cross XCom.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_here_batch.files.locations import output_uri
from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.sensors.batch_job import BatchJobSensor
from airflow_here_batch.utils.assets import GEOCODED_ADDRESSES, here_asset

# A URI every worker reaches ($HERE_BATCH_OUTPUT_DIR, else <[here_batch] base_location>/output).
OUTPUT_DIR = output_uri()
POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30"))
# The submit task returns {"job_id", "status", "records", "results_href"}.
JOB_ID = "{{ ti.xcom_pull(task_ids='submit_geocode_job')['job_id'] }}"
RUN_STAMP = "{{ dag_run.run_after | ts_nodash }}"


@dag(
    dag_id="here_batch_taskflow_records",
    description="Geocode records handed over by an upstream TaskFlow task",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    tags=["here", "geocoding", "taskflow", "example"],
)
def here_batch_taskflow_records() -> None:
    @task
    def extract_customers() -> list[dict[str, str]]:
        """Stand-in for a query: customer id, free-text address, country filter."""
        rows = [
            ("C-1001", "Invalidenstraße 116, 10115 Berlin", "DEU"),
            ("C-1002", "10 Downing Street, London SW1A 2AA", "GBR"),
            ("C-1003", "5 Avenue Anatole France, 75007 Paris", "FRA"),
            ("C-1004", "Plaza Mayor 1, 28012 Madrid", "ESP"),
            ("C-1005", "350 5th Ave, New York, NY 10118", "USA"),
            ("C-1006", "Piazza del Colosseo 1, 00184 Roma", "ITA"),
            ("C-1007", "Dam 1, 1012 JS Amsterdam", "NLD"),
            ("C-1008", "東京都千代田区千代田1-1", "JPN"),
            ("C-1009", "", "DEU"),  # no address on file: lands in the errors report
        ]
        return [{"recId": rec_id, "q": q, "in": f"countryCode:{cc}"} for rec_id, q, cc in rows]

    customers = extract_customers()

    submit = SubmitBatchJobOperator(
        task_id="submit_geocode_job",
        service="geocode",
        input=customers,
        output_columns=["positionLat", "positionLng", "addressLabel"],
        tag=f"taskflow-customers-{RUN_STAMP}",
    )

    wait = BatchJobSensor(
        task_id="wait_for_job",
        job_id=JOB_ID,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=60 * 60,
        retries=3,  # apache/airflow#67287
        retry_delay=timedelta(seconds=10),
    )

    rows = DownloadBatchResultsOperator(
        task_id="fetch_rows",
        job_id=JOB_ID,
        destination=f"{OUTPUT_DIR}/taskflow/{RUN_STAMP}.csv",
        what="results",
        output_format="records",
        outlets=[here_asset(GEOCODED_ADDRESSES)],
    )
    submit >> wait >> rows

    @task
    def enrich(customers: list[dict[str, str]], downloaded: dict[str, Any]) -> dict[str, Any]:
        """Join the best result of each record back to its customer."""
        best = {}
        for row in downloaded.get("rows") or []:
            if str(row.get("seqNumber", "1")) == "1":
                best[row["recId"]] = row
        enriched = [
            {**c, **{k: v for k, v in best.get(c["recId"], {}).items() if k != "recId"}} for c in customers
        ]
        for item in enriched:
            print(item["recId"], item.get("positionLat"), item.get("positionLng"), item.get("addressLabel"))
        return {"customers": len(customers), "geocoded": len(best), "missing": len(customers) - len(best)}

    enrich(customers, rows.output)


here_batch_taskflow_records()
