"""``notification_ids`` on SubmitBatchJobOperator, in real Airflow against the session emulator, with a
real webhook receiver; argument checks at DAG parse; Delete/List filter arguments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.airflow.support import RunDag
from tests.webhook_receiver import WebhookReceiver


def test_submit_with_notification_id_calls_the_webhook_when_the_job_ends(run_dag: RunDag, emu: Any) -> None:
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    with WebhookReceiver() as receiver:
        hook = HereBatchHook()
        notification = hook.create_notification(receiver.url + "/done/${JOB_ID}?status=${JOB_STATUS}")
        try:
            result = run_dag("test_ops_notifications", run_conf={"notification_id": notification.id})
            assert set(result.task_states.values()) == {"success"}, result.describe()
            job_id = result.xcom("submit")["job_id"]
            assert hook.get_job(job_id).notification_ids == (notification.id,)
            (_, path, query), *_ = receiver.wait_for(1)
            assert path == f"/done/{job_id}" and query == {"status": ["completed"]}
        finally:
            hook.delete_notification(notification.id)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([f"NOTIFICATION-{i}" for i in range(6)], "at most 5"),
        (["NOTIFICATION-1", "NOTIFICATION-1"], "twice"),
        (["NOTIFICATION-1", ""], "notification_ids[1]"),
        ("NOTIFICATION-1,,NOTIFICATION-2", "notification_ids[1]"),
        ("['NOTIFICATION-1', 'NOTIFICATION-2']", "not to a Python list"),
    ],
)
def test_notification_ids_are_checked_at_dag_parse(ids: Any, message: str) -> None:
    from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SubmitBatchJobOperator(task_id="t", service="geocode", input="x\n", notification_ids=ids)


def test_five_notification_ids_and_templates_are_accepted() -> None:
    from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

    ids = [f"NOTIFICATION-{i}" for i in range(5)]
    op = SubmitBatchJobOperator(
        task_id="t", service="geocode", input="x\n", notification_ids=ids, reattach=False
    )
    assert list(op._job_options({}).notification_ids or []) == ids  # type: ignore[arg-type]
    templated = SubmitBatchJobOperator(
        task_id="u", service="geocode", input="x\n", notification_ids="{{ params.ids }}", reattach=False
    )
    assert "options" in templated.template_fields  # the job options, notification_ids among them
    templated.render_template_fields({"params": {"ids": ",".join(ids)}})  # type: ignore[arg-type]
    assert list(templated._job_options({}).notification_ids or []) == ids  # type: ignore[arg-type]


@pytest.mark.parametrize("older_than", [timedelta(0), timedelta(days=-1), 7])
def test_older_than_must_be_a_positive_timedelta(older_than: Any) -> None:
    from airflow_here_batch.operators.batch_job import DeleteBatchJobOperator, ListBatchJobsOperator

    with pytest.raises(ValueError, match="older_than"):
        DeleteBatchJobOperator(task_id="d", status="completed", older_than=older_than)
    with pytest.raises(ValueError, match="older_than"):
        ListBatchJobsOperator(task_id="l", older_than=older_than)


def test_delete_filters_do_not_apply_to_one_job() -> None:
    from airflow_here_batch.operators.batch_job import DeleteBatchJobOperator

    with pytest.raises(ValueError, match="not to job_id"):
        DeleteBatchJobOperator(task_id="d", job_id="JOB-1", older_than=timedelta(days=1))
