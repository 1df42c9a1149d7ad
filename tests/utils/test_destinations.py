"""Every destination of a run checked before its first HERE job (utils/destinations.py, issue 19 §3): the
tasks downstream of the one that creates jobs say where they write, with their templates rendered, and
each place is checked by its kind's rule; places that depend on XComs not pushed yet are left alone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from airflow_here_batch.utils.destinations import DestinationCheckError, check_destinations
from tests.tables.databases import Database, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]


def _pipeline(db: Database, destination: str) -> tuple[Any, Any]:
    """submit >> download, and submit >> sink (a DAG built, not run); the submit task and a context."""
    from airflow.sdk import DAG

    from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

    with DAG("t_destinations", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
        submit = SubmitBatchJobOperator(task_id="submit", input="recId|q\n1|Berlin\n", service="geocode")
        download = DownloadBatchResultsOperator(
            task_id="download", job_id="{{ ti.xcom_pull('submit')['job_id'] }}", destination=destination
        )
        sink = BatchResultsToSqlOperator(
            task_id="write", conn_id=db.conn_id, table="geo", output_columns=OUT, job_id="x"
        )
        submit >> [download, sink]
    ti = SimpleNamespace(dag_id="t_destinations", run_id="manual__1", task_id="submit", map_index=-1)
    context = {"ti": ti, "run_id": "manual__1", "ds": "2026-12-06"}
    return submit, context


def test_every_downstream_place_is_checked_with_its_templates_rendered(
    sqlite_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    submit, context = _pipeline(sqlite_db, f"file://{files}/out/{{{{ ds }}}}/results.csv")
    assert check_destinations(submit, context) == 2  # the download's folder and the sink's (new) table
    assert list(files.iterdir()) == []  # nothing made, the marker gone


def test_a_download_folder_that_is_a_file_fails_before_any_job(sqlite_db: Database, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "out").write_text("a file")
    submit, context = _pipeline(sqlite_db, f"file://{tmp_path}/out/{{{{ ds }}}}/")
    with pytest.raises(DestinationCheckError) as info:
        check_destinations(submit, context)
    assert str(info.value).startswith(
        f"destination of task 'download' file://{tmp_path}/out/2026-12-06/: {tmp_path}/out is a file"
    )


def test_a_sink_table_whose_columns_no_longer_fit_fails_before_any_job(
    sqlite_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    sqlite_db.execute("CREATE TABLE geo (rec_id INTEGER PRIMARY KEY, status TEXT)")
    submit, context = _pipeline(sqlite_db, f"file://{tmp_path}/out/")
    with pytest.raises(DestinationCheckError) as info:
        check_destinations(submit, context)
    message = str(info.value)
    assert message.startswith("target of task 'write': table geo lacks the columns ['lat', 'lng'")
    assert "has column 'rec_id' of type INTEGER, which cannot hold its values (text" in message
    assert message.endswith("nothing was uploaded to HERE")


def test_a_place_known_only_from_a_later_xcom_is_left_to_its_task(sqlite_db: Database) -> None:  # noqa: F811
    submit, context = _pipeline(sqlite_db, "{{ ti.xcom_pull('export') }}")
    context["ti"].xcom_pull = lambda *args, **kwargs: None  # not pushed yet: renders to 'None'
    assert check_destinations(submit, context) == 1  # only the sink's table


def test_a_task_without_a_dag_checks_nothing() -> None:
    from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

    task = SubmitBatchJobOperator(task_id="submit", input="recId|q\n1|Berlin\n", service="geocode")
    assert check_destinations(task, {}) == 0
