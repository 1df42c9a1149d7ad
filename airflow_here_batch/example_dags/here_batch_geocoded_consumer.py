"""Runs whenever geocoded addresses are updated: a DAG scheduled on an Airflow Asset.

Producers declare the asset ``here_batch_geocoded_addresses`` (:mod:`airflow_here_batch.utils.assets`) as
an outlet: the TaskFlow example's download and the nightly pipeline's table sink (``geocode.write`` of
``here_batch_nightly_geocode``), so this DAG runs after each nightly run. Each update is an asset event
whose ``extra`` says what changed: ``DownloadBatchResultsOperator`` puts the HERE job id and, per file,
its location (a URI every worker reaches) and row count; ``BatchResultsToSqlOperator`` puts the table,
the job ids and ``records_sent`` / ``records_written`` / ``records_failed``. ``report_updates`` reads the
events that triggered this run and checks each file location it names exists. Nothing local is handed
over: only the events' small extras.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, get_current_context, task

from airflow_here_batch.utils.assets import GEOCODED_ADDRESSES, here_asset

with DAG(
    dag_id="here_batch_geocoded_consumer",
    description="Runs after each update of the geocoded addresses asset",
    schedule=[here_asset(GEOCODED_ADDRESSES)],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["here", "assets", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def report_updates() -> dict[str, Any]:
        """Summarise the triggering asset events: jobs, locations (checked to exist) and row counts."""
        from airflow.sdk import ObjectStoragePath

        events = get_current_context()["triggering_asset_events"]
        updates: list[dict[str, Any]] = []
        for asset, asset_events in events.items():
            for event in asset_events:
                extra = dict(event.extra or {})
                update: dict[str, Any] = {"asset": getattr(asset, "name", str(asset)), **extra}
                results = extra.get("results")
                if isinstance(results, dict) and results.get("location"):
                    update["results_exist"] = ObjectStoragePath(results["location"]).exists()
                print(f"update of {update['asset']}: {update}")
                updates.append(update)
        return {"updates": len(updates), "events": updates}

    report_updates()
