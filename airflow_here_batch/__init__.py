"""Apache Airflow provider for the HERE Batch API v7."""

from __future__ import annotations

__version__ = "0.2.0"

#: Airflow connection id the hook, operators and sensor use unless told otherwise.
DEFAULT_CONN_ID = "here_batch_default"

__all__ = ["DEFAULT_CONN_ID", "__version__"]
