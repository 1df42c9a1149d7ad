"""Test DAGs for bad inputs (issue 10 §1), run by tests/operators/test_inputs.py."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator

START = pendulum.datetime(2025, 1, 1, tz="UTC")
WAIT = {"wait_for_completion": True, "poll_interval": 0.2, "timeout": 120}

with DAG(dag_id="test_ops_inputs_skip", schedule=None, start_date=START, catchup=False):

    @task
    def rows() -> list[dict[str, object]]:
        return [
            {"recId": "R-1", "q": "Invalidenstraße 116, Berlin"},
            {"recId": "R-2", "q": "Invalidenstr. 116\n10115 Berlin"},  # a line break: left out
            {"recId": "R-3", "q": None},  # None: left out
            {"recId": "R-4", "q": "Dam 1, Amsterdam"},
        ]

    SubmitBatchJobOperator(
        task_id="submit_skip", service="geocode", input=rows(), on_bad_record="skip", tag="ops-skip", **WAIT
    )

    bom = SubmitBatchJobOperator(
        task_id="submit_bom",
        service="geocode",
        input="\ufeffrecId|q\n7|Invalidenstraße 116, Berlin\n9|Dam 1, Amsterdam\n",
        tag="ops-bom",
        **WAIT,
    )
    bom_records = DownloadBatchResultsOperator(
        task_id="bom_records", job_id=bom.output["job_id"], output_format="records"
    )
    bom >> bom_records


with DAG(dag_id="test_ops_inputs_refused", schedule=None, start_date=START, catchup=False):
    SubmitBatchJobOperator(task_id="header_only", service="geocode", input="recId|q\n", tag="ops-refused")
    SubmitBatchJobOperator(
        task_id="many_bad_positions",
        service="revgeocode",
        input="recId|at\n" + "".join(f"{i}|95.0,200.0\n" for i in range(30)) + "30|abc\n31|52.5,13.4\n",
        tag="ops-refused",
    )
