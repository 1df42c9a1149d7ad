"""The one place where the provider keeps files that tasks hand to each other.

Tasks never pass a worker-local path to another task: they pass object-storage locations
(:class:`airflow.sdk.ObjectStoragePath`) under one configurable **base location**:

- Airflow config ``[here_batch] base_location`` (env ``AIRFLOW__HERE_BATCH__BASE_LOCATION``), any fsspec URI
  such as ``s3://bucket/here-batch`` or ``file:///shared/here-batch``;
- ``[here_batch] base_location_conn_id`` (env ``AIRFLOW__HERE_BATCH__BASE_LOCATION_CONN_ID``): the Airflow
  connection for that storage (e.g. ``aws_default``), optional;
- default: ``file://$AIRFLOW_HOME/here_batch``, right for one machine (LocalExecutor) or a shared disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

SECTION = "here_batch"
BASE_LOCATION_OPTION = "base_location"
BASE_LOCATION_CONN_OPTION = "base_location_conn_id"


def base_location_uri() -> str:
    """The configured base location as a URI without a trailing ``/``."""
    from airflow.configuration import AIRFLOW_HOME, conf

    value = (conf.get(SECTION, BASE_LOCATION_OPTION, fallback="") or "").strip()
    if not value:
        value = f"file://{AIRFLOW_HOME}/here_batch"
    elif "://" not in value:
        value = f"file://{value}"
    return value.rstrip("/")


def base_location(*parts: str) -> ObjectStoragePath:
    """``base_location_uri()`` joined with ``parts``, with the configured conn id."""
    from airflow.configuration import conf
    from airflow.sdk import ObjectStoragePath

    conn_id = (conf.get(SECTION, BASE_LOCATION_CONN_OPTION, fallback="") or "").strip() or None
    uri = "/".join([base_location_uri(), *(p.strip("/") for p in parts if p)])
    return ObjectStoragePath(uri, conn_id=conn_id)
