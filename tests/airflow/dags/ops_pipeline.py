"""Test DAGs for the operators and the sensor (run by tests/operators/test_batch_job.py and test_sensor.py).

Settings come from the environment (set by the tests before ``dag.test()`` parses this file):
``HERE_BATCH_OUTPUT_DIR`` (output root), ``HERE_TEST_INPUT_URI`` (an object-storage input file).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_here_batch.operators.batch_job import (
    DeleteBatchJobOperator,
    DownloadBatchResultsOperator,
    ListBatchJobsOperator,
    StopBatchJobOperator,
    SubmitBatchJobOperator,
)
from airflow_here_batch.sensors.batch_job import BatchJobSensor

OUT = os.environ.get("HERE_BATCH_OUTPUT_DIR", "/tmp/here-batch-test-output")
INPUT_URI = os.environ.get("HERE_TEST_INPUT_URI", "file:///nonexistent/input.csv")
START = pendulum.datetime(2025, 1, 1, tz="UTC")
STAMP = "{{ dag_run.run_after | ts_nodash }}"
INLINE = "recId|q\n1|Invalidenstraße 116, 10115 Berlin\n2|10 Downing Street, London\n3|Dam 1, Amsterdam\n"

with DAG(dag_id="test_ops_poke_pipeline", schedule=None, start_date=START, catchup=False):
    submit = SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input=INLINE,
        output_columns=["positionLat", "positionLng", "addressLabel"],
        tag="ops-poke",
        billing_tags=["team-geo"],
    )
    wait = BatchJobSensor(task_id="wait", job_id=submit.output["job_id"], poll_interval=0.2, timeout=60)
    both = DownloadBatchResultsOperator(
        task_id="download_both",
        job_id=submit.output["job_id"],
        destination=f"{OUT}/poke/{STAMP}/",
        what="both",
    )
    geojson = DownloadBatchResultsOperator(
        task_id="download_geojson",
        job_id=submit.output["job_id"],
        destination=f"{OUT}/poke/{STAMP}.geojson",
        output_format="geojson",
    )
    records = DownloadBatchResultsOperator(
        task_id="download_records", job_id=submit.output["job_id"], output_format="records"
    )
    listed = ListBatchJobsOperator(task_id="list", tag="ops-poke")
    stop = StopBatchJobOperator(task_id="stop_completed", job_id=submit.output["job_id"])
    delete = DeleteBatchJobOperator(task_id="delete", job_id=submit.output["job_id"])
    wait >> [both, geojson, records, listed] >> stop >> delete


with DAG(dag_id="test_ops_deferrable", schedule=None, start_date=START, catchup=False):

    @task
    def rows() -> list[dict[str, str]]:
        return [
            {"recId": "C-1", "q": "Invalidenstraße 116, Berlin", "in": "countryCode:DEU"},
            {"recId": "C-2", "q": "Plaza Mayor 1 | Madrid", "in": "countryCode:ESP"},
        ]

    submit_wait = SubmitBatchJobOperator(
        task_id="submit_wait",
        service="geocode",
        input=rows(),
        tag="ops-deferrable",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=0.2,
        timeout=120,
    )
    sensor = BatchJobSensor(
        task_id="wait_deferred",
        job_id=submit_wait.output["job_id"],
        deferrable=True,
        poll_interval=0.2,
        timeout=60,
    )
    DownloadBatchResultsOperator(
        task_id="download_to_object_storage",
        job_id=submit_wait.output["job_id"],
        destination=f"file://{OUT}/deferrable/{STAMP}/results.csv",
    ).set_upstream(sensor)


with DAG(dag_id="test_ops_sync_wait", schedule=None, start_date=START, catchup=False):
    SubmitBatchJobOperator(
        task_id="submit_sync_wait",
        service="geocode",
        input=INPUT_URI,
        compress=True,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
        timeout=120,
    )


with DAG(
    dag_id="test_ops_deferred_submit_then_sensor_reschedule", schedule=None, start_date=START, catchup=False
):
    plain = SubmitBatchJobOperator(
        task_id="submit",
        service="revgeocode",
        input="recId|at\n1|52.5308,13.3847\n2|48.8584,2.2945\n",
        output_type="jsonl",
        tag="ops-reschedule",
    )
    BatchJobSensor(
        task_id="wait_reschedule",
        job_id=plain.output["job_id"],
        mode="reschedule",
        poll_interval=0.2,
        timeout=60,
        retry_delay=timedelta(seconds=0),
    )


with DAG(dag_id="test_ops_lost_answer", schedule=None, start_date=START, catchup=False):
    SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input=INLINE,
        tag="ops-lost-answer",
        wait_for_completion=True,
        poll_interval=0.2,
        timeout=60,
    )
