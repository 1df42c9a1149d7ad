"""Airflow Assets of the HERE Batch example DAGs: one name per dataset, one place.

A task that writes a dataset declares it as an outlet (``outlets=[here_asset(GEOCODED_ADDRESSES)]``);
``DownloadBatchResultsOperator`` then puts the job id, each file's location and row count on the asset
event (``extra``), ``BatchResultsToSqlOperator`` the table, job ids and record counts. A DAG scheduled on
the asset (``schedule=[here_asset(GEOCODED_ADDRESSES)]``) runs after each update and reads those extras
from ``triggering_asset_events``. ``airflow assets list`` shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Asset

#: Geocoded addresses: "geocoded addresses updated" is an event of this asset. Emitted by the nightly
#: pipeline's table sink (``here_batch_nightly_geocode``'s ``geocode.write``) and the TaskFlow example's
#: download; ``here_batch_geocoded_consumer`` is scheduled on it.
GEOCODED_ADDRESSES = "here_batch_geocoded_addresses"
#: Addresses found for positions (reverse geocoding example).
REVERSE_GEOCODED_POSITIONS = "here_batch_reverse_geocoded_positions"
#: Place details refreshed by HERE id (lookup example).
LOOKED_UP_PLACES = "here_batch_looked_up_places"

GROUP = "here_batch"


def here_asset(name: str) -> Asset:
    """The Asset ``name`` with URI ``here-batch://<name>`` in the group ``here_batch``."""
    from airflow.sdk import Asset

    return Asset(name=name, uri=f"here-batch://{name.removeprefix('here_batch_')}", group=GROUP)
