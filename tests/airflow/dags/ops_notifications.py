"""Test DAG: a job submitted with a HERE notification id (run by tests/operators/test_notifications.py).

The notification id comes from the run's conf (``{"notification_id": "NOTIFICATION-..."}``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

with DAG(
    dag_id="test_ops_notifications",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input="recId|q\n1|Invalidenstraße 116, 10115 Berlin\n2|10 Downing Street, London\n",
        tag="ops-notify",
        notification_ids="{{ dag_run.conf['notification_id'] }}",
        wait_for_completion=True,
        poll_interval=0.2,
        timeout=60,
    )
