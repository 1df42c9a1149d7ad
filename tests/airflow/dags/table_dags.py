"""Users' own table DAGs, each a schedule and one ``geocode_table`` call (run by
tests/operators/test_geocode_table.py). ``HERE_TEST_TABLE_CONN_ID`` is the database connection (the test's
SQLite or PostgreSQL database), read when the file is parsed."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_here_batch.operators.geocode_table import geocode_table

CONN_ID = os.environ.get("HERE_TEST_TABLE_CONN_ID", "here_batch_sqlite_default")
START = pendulum.datetime(2025, 1, 1, tz="UTC")
QUICK = {"poll_interval": 0.2, "max_poll_interval": 1.0, "retries": 0, "retry_delay": timedelta(0)}

# A customers table: the query is built from templates, the country is a constant prefix.
with DAG(dag_id="test_geocode_table", schedule="@daily", start_date=START, catchup=False):
    geocode_table(
        conn_id=CONN_ID,
        source="customers",
        key_column="customer_id",
        templates={"q": "{street}, {postcode} {city}", "in": "countryCode:{country}"},
        output_columns=["positionLat", "positionLng", "addressLabel", "resultType"],
        target_table="customers_geocoded",
        tag="test-geocode-table",
        **QUICK,
    )

# A shops query with a change column: only the rows changed since the last written run are read.
with DAG(
    dag_id="test_geocode_table_changes",
    schedule="@daily",
    start_date=START,
    catchup=False,
    params={"full_refresh": Param(False, type="boolean")},
):
    geocode_table(
        group_id="shops",
        conn_id=CONN_ID,
        source="SELECT id, address, updated_at FROM shops",
        key_column="id",
        columns={"q": "address"},
        output_columns=["positionLat", "positionLng", "addressLabel"],
        target_table="shops_geocoded",
        change_column="updated_at",
        change_window=timedelta(hours=1),
        full_refresh="{{ params.full_refresh }}",
        **QUICK,
    )
