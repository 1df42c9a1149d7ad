"""Airflow names the tests need that moved between the supported versions (3.0-3.3), in one place.

The provider's own names are in :mod:`airflow_here_batch.version_compat`. Import this module lazily
(inside a fixture or test): importing it imports airflow, which ``tests/conftest.py`` configures first.
"""

from __future__ import annotations

from airflow_here_batch.version_compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS

if AIRFLOW_V_3_2_PLUS:
    from airflow.dag_processing.dagbag import DagBag
else:
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

if AIRFLOW_V_3_1_PLUS:
    from airflow.sdk.log import redact
else:
    from airflow.sdk.execution_time.secrets_masker import redact  # type: ignore[no-redef]

__all__ = ["DagBag", "redact"]
