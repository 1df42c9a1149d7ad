"""The base location: helpers, the download's default destination, and asset events naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.airflow.support import RunDag
from tests.conftest import TEST_AIRFLOW_HOME, TEST_OUTPUT_DIR


def test_to_uri_and_output_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_here_batch.files.locations import output_uri, to_uri

    assert to_uri("/data/out") == "file:///data/out"
    assert to_uri("/data/out/") == "file:///data/out/"
    assert to_uri("s3://b/k") == "s3://b/k"
    assert to_uri("rel") == f"file://{Path('rel').resolve()}"
    monkeypatch.setenv("HERE_BATCH_OUTPUT_DIR", "/srv/out/")
    assert output_uri("lookup", "2025-01-01/") == "file:///srv/out/lookup/2025-01-01"
    monkeypatch.delenv("HERE_BATCH_OUTPUT_DIR")
    monkeypatch.setenv("AIRFLOW__HERE_BATCH__BASE_LOCATION", "s3://bucket/hb/")
    assert output_uri("x") == "s3://bucket/hb/output/x"


def test_default_destination_is_under_the_base_location(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_here_batch.files.locations import default_destination

    monkeypatch.setenv("AIRFLOW__HERE_BATCH__BASE_LOCATION", "s3://bucket/hb")
    got = default_destination("dag", "manual__2025-01-01T00:00:00+00:00", "download")
    assert got == "s3://bucket/hb/output/dag/manual__2025-01-01T00_00_00_00_00/download/"
    assert default_destination("d", "r", "t", 3) == "s3://bucket/hb/output/d/r/t/3/"


def test_base_location_is_registered_config() -> None:
    from airflow.configuration import conf

    from airflow_here_batch.get_provider_info import get_provider_info

    options = get_provider_info()["config"]["here_batch"]["options"]
    assert set(options) == {
        "base_location",
        "base_location_conn_id",
        "max_records_to_send",
        "price_per_1000_records",
    }
    assert conf.get("here_batch", "base_location") == ""  # registered default: no fallback needed
    assert conf.get("here_batch", "max_records_to_send") == ""  # no bound unless set


@pytest.mark.usefixtures("here_conn")
def test_download_without_destination_writes_to_the_base_location_and_tells_the_asset(
    run_dag: RunDag,
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    result = run_dag("test_default_destination")
    files = result.xcom("download")
    run_folder = result.run_id.replace(":", "_").replace("+", "_")
    base = f"file://{TEST_AIRFLOW_HOME}/here_batch/output/test_default_destination/{run_folder}/download"
    assert files["results"]["path"] == f"{base}/results.csv"
    assert files["errors"]["path"] == f"{base}/errors.txt"
    assert Path(files["results"]["path"].removeprefix("file://")).is_file()
    assert not any(TEST_OUTPUT_DIR.rglob("test_default_destination*"))

    with create_session() as session:
        events: list[Any] = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == "test_default_destination_results")
            .where(AssetEvent.source_run_id == result.run_id)
        ).all()
        extras = [dict(e.extra) for e in events]
    assert extras == [
        {
            "job_id": result.xcom("submit")["job_id"],
            "results": {"location": files["results"]["path"], "rows": files["results"]["rows"]},
            "errors": {"location": files["errors"]["path"], "rows": files["errors"]["rows"]},
        }
    ]
