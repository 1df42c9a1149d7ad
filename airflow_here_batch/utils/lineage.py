"""Data lineage of HERE Batch tasks: Airflow asset-event extras and OpenLineage datasets and facets.

The chain a run reports is *input file or table -> HERE job -> results location or table*:

- ``SubmitBatchJobOperator``: inputs = the input location (when the input is a file or an object-storage
  URI; rows from XCom and inline text have no dataset), outputs = the HERE job;
- ``DownloadBatchResultsOperator``: inputs = the HERE job, outputs = the files it wrote.

The HERE job is a dataset with namespace ``here-batch://<HERE host>`` and name ``jobs/<job id>``. Both
operators add a run facet ``hereBatch`` with the job id, the service, the job status and HERE's record
counts. Nothing in a dataset or facet carries a key, a token or a URL query (the host comes from the
connection's base URL with user info, query and path dropped).

OpenLineage is optional: this module imports ``openlineage`` / ``airflow.providers.openlineage`` only
inside :func:`submit_lineage` and :func:`download_lineage`, which the OpenLineage provider's listener
calls through the operators' ``get_openlineage_facets_on_complete``. Without the provider nobody calls
them and nothing is imported. Dataset names follow the OpenLineage naming spec
(https://openlineage.io/docs/spec/naming): ``file`` + absolute path, ``s3://<bucket>`` + key,
``<scheme>://<authority>`` + path for any other fsspec scheme.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: Name of the run facet (``run.facets.hereBatch``).
FACET_NAME = "hereBatch"
HERE_NAMESPACE_SCHEME = "here-batch"


def dataset_name(location: Any) -> tuple[str, str] | None:
    """``(namespace, name)`` of a file or object-storage location, or ``None`` when it is not one.

    ``location`` is a path, a URI or an ``ObjectStoragePath``. ``s3://bucket/a/b.csv`` ->
    ``("s3://bucket", "a/b.csv")``; ``/data/x.csv`` or ``file:///data/x.csv`` -> ``("file", "/data/x.csv")``.
    """
    if location is None:
        return None
    if hasattr(location, "protocol") and hasattr(location, "path"):  # ObjectStoragePath
        protocol = location.protocol if isinstance(location.protocol, str) else location.protocol[0]
        if protocol in ("file", "local", ""):
            return "file", os.path.abspath(str(location.path))
        bucket, _, key = str(location.path).partition("/")
        return f"{protocol}://{bucket}", key
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str) or not location or "\n" in location:
        return None
    if "://" not in location:
        return "file", os.path.abspath(os.path.expanduser(location))
    parts = urlsplit(location)
    if parts.scheme in ("file", "local"):
        return "file", parts.path
    host = parts.hostname or ""  # drops user info (an ObjectStoragePath puts the conn id there)
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}", parts.path.lstrip("/")


def here_namespace(base_url: str | None) -> str:
    """``here-batch://<host[:port]>`` of a HERE base URL (no user info, path or query)."""
    parts = urlsplit(base_url or "")
    host = parts.hostname or "batch.search.hereapi.com"
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{HERE_NAMESPACE_SCHEME}://{host}"


def job_facet_fields(job: Any) -> dict[str, Any]:
    """The ``hereBatch`` facet's fields from a :class:`~airflow_here_batch.api.models.BatchJob`."""
    records = getattr(job, "records", None)
    counts = {
        key: getattr(records, key, None) for key in ("total", "processed", "succeeded", "failed", "invalid")
    }
    service = getattr(job, "service", None)
    status = getattr(job, "status", None)
    return {
        "jobId": str(job.id),
        "service": getattr(service, "value", service),
        "status": getattr(status, "value", status),
        "records": {k: v for k, v in counts.items() if v is not None},
    }


def asset_event_extra(job_id: str | None, result: Mapping[str, Any]) -> dict[str, Any]:
    """Extra of a download's asset event: job id, where each file went and its row count.

    ``result`` is :class:`~airflow_here_batch.operators.batch_job.DownloadBatchResultsOperator`'s return
    value (one file, or ``{"results": ..., "errors": ...}``). Rows themselves never go in.
    """
    extra: dict[str, Any] = {"job_id": job_id}
    files = result if "results" in result or "errors" in result else {"results": result}
    for kind, info in files.items():
        if not isinstance(info, Mapping):
            continue
        rows = info.get("rows")
        extra[kind] = {
            "location": info.get("path"),
            "rows": info.get("count", len(rows)) if isinstance(rows, list) else rows,
        }
    return extra


# -- OpenLineage (only called by the OpenLineage provider's listener) --------------------------------


def _facet(fields: Mapping[str, Any]) -> Any:
    import attr
    from openlineage.client.facet_v2 import RunFacet

    @attr.define
    class HereBatchRunFacet(RunFacet):
        """HERE Batch job of this run: id, service, status, record counts."""

        jobId: str
        service: str | None = None
        status: str | None = None
        records: dict[str, int] = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            # The provider publishes no JSON schema of its own; the facet is a plain RunFacet whose
            # fields are documented in docs/distributed.md.
            return "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet"

    return HereBatchRunFacet(**fields)


def _dataset(namespace_name: tuple[str, str]) -> Any:
    from openlineage.client.event_v2 import Dataset

    return Dataset(namespace=namespace_name[0], name=namespace_name[1])


def _job_dataset(operator: Any, job_id: str) -> tuple[str, str]:
    try:
        base_url = operator.hook.base_url
    except Exception:
        base_url = None
    return here_namespace(base_url), f"jobs/{job_id}"


def _job(operator: Any, job_id: str) -> Any:
    try:
        return operator.hook.get_job(job_id)
    except Exception:  # lineage must never fail a task
        return None


def submit_lineage(operator: Any) -> Any:
    """``OperatorLineage`` of a finished ``SubmitBatchJobOperator``: input location -> HERE job."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    job_id = getattr(operator, "job_id", None)
    if not job_id:
        return OperatorLineage()
    inputs = []
    source = operator.input
    named = None if isinstance(source, (list, tuple, bytes)) else dataset_name(source)
    if named is not None:
        inputs.append(_dataset(named))
    job = _job(operator, job_id)
    service = operator.options.get("service")
    fields = job_facet_fields(job) if job is not None else {"jobId": job_id, "service": service}
    return OperatorLineage(
        inputs=inputs,
        outputs=[_dataset(_job_dataset(operator, job_id))],
        run_facets={FACET_NAME: _facet(fields)},
    )


def download_lineage(operator: Any, result: Mapping[str, Any] | None) -> Any:
    """``OperatorLineage`` of a finished ``DownloadBatchResultsOperator``: HERE job -> written files."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    job_id = getattr(operator, "job_id", None)
    if not job_id:
        return OperatorLineage()
    outputs = []
    for info in (asset_event_extra(job_id, result or {})).values():
        if isinstance(info, Mapping) and info.get("location"):
            named = dataset_name(info["location"])
            if named is not None:
                outputs.append(_dataset(named))
    job = _job(operator, job_id)
    fields = job_facet_fields(job) if job is not None else {"jobId": job_id}
    return OperatorLineage(
        inputs=[_dataset(_job_dataset(operator, job_id))],
        outputs=outputs,
        run_facets={FACET_NAME: _facet(fields)},
    )
