"""Test DAG for the job options as one value (run by tests/operators/test_arguments.py)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.api.protocol import JobOptions
from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

START = pendulum.datetime(2025, 1, 1, tz="UTC")
INLINE = "recId|q\n1|Invalidenstraße 116, 10115 Berlin\n2|10 Downing Street, London\n"

with DAG(
    dag_id="test_ops_options", schedule=None, start_date=START, catchup=False, params={"service": "geocode"}
):
    # a dict with templates, and a JobOptions plus a templated keyword: both rendered at run time
    SubmitBatchJobOperator(
        task_id="submit_dict",
        input=INLINE,
        options={"service": "{{ params.service }}", "tag": "opts-{{ dag.dag_id }}", "output_columns": ["id"]},
        wait_for_completion=True,
        poll_interval=0.2,
    )
    SubmitBatchJobOperator(
        task_id="submit_object",
        input=INLINE,
        options=JobOptions(output_type="jsonl", output_delimiter=","),
        service="{{ params.service }}",
        tag="opts-object",
        reattach=False,
        start_job=False,
    )
