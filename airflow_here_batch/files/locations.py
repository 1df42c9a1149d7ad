"""The one place where the provider keeps files that tasks hand to each other.

Tasks never pass a worker-local path to another task: they pass object-storage locations
(:class:`airflow.sdk.ObjectStoragePath`) under one configurable **base location**:

- Airflow config ``[here_batch] base_location`` (env ``AIRFLOW__HERE_BATCH__BASE_LOCATION``), any fsspec URI
  such as ``s3://bucket/here-batch`` or ``file:///shared/here-batch``;
- ``[here_batch] base_location_conn_id`` (env ``AIRFLOW__HERE_BATCH__BASE_LOCATION_CONN_ID``): the Airflow
  connection for that storage (e.g. ``aws_default``), optional;
- default: ``file://$AIRFLOW_HOME/here_batch``, right for one machine (LocalExecutor) or a shared disk.

The options are registered in the provider's config section, so ``airflow config list`` shows them.
A download with no ``destination`` writes under :func:`default_destination`; the example DAGs write under
:func:`output_uri`. On several machines (CeleryExecutor) set the base location to storage every worker
reaches (``s3://...``, or ``file://`` on a shared mount); see ``docs/distributed.md``.
"""

from __future__ import annotations

import os
import re
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


#: Environment variable of the example DAGs: where their outputs go (default ``<base location>/output``).
OUTPUT_DIR_ENV = "HERE_BATCH_OUTPUT_DIR"


def to_uri(location: str | os.PathLike[str]) -> str:
    """``location`` as a URI: a plain filesystem path becomes ``file:///abs/path``; a URI is kept.

    A trailing ``/`` (a folder) is kept.
    """
    text = os.fspath(location)
    if "://" in text:
        return text
    folder = text.endswith("/")
    uri = "file://" + os.path.abspath(os.path.expanduser(text))
    return uri + "/" if folder and not uri.endswith("/") else uri


def output_uri(*parts: str) -> str:
    """Where the example DAGs write: ``$HERE_BATCH_OUTPUT_DIR`` (as a URI) or ``<base location>/output``,
    joined with ``parts``; never a bare local path, so it can go through XCom to any worker."""
    configured = (os.environ.get(OUTPUT_DIR_ENV) or "").strip()
    root = to_uri(configured).rstrip("/") if configured else f"{base_location_uri()}/output"
    return "/".join([root, *(p.strip("/") for p in parts if p)])


_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def default_destination(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The folder URI (ending in ``/``) a download writes to when it is given no destination:
    ``<base location>/output/<dag_id>/<run_id>/<task_id>[/<map_index>]/``, characters other than
    letters, digits and ``._=-`` in the run id replaced by ``_`` (run ids carry ``:`` and ``+``)."""
    parts = [dag_id, _UNSAFE.sub("_", run_id), task_id]
    if map_index is not None and map_index >= 0:
        parts.append(str(map_index))
    return base_location_uri() + "/output/" + "/".join(parts) + "/"


def rejects_location(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> ObjectStoragePath:
    """Where a task's ``on_bad_record="skip"`` writes the records it leaves out:
    ``<base location>/<dag_id>/<run_id>/<task_id>[-<map_index>]/rejects.jsonl`` (``docs/operators.md``)."""
    task = task_id if map_index in (None, -1) else f"{task_id}-{map_index}"
    return base_location(dag_id, run_id, task, "rejects.jsonl")


def storage_path(
    location: str | os.PathLike[str] | ObjectStoragePath, conn_id: str | None = None
) -> ObjectStoragePath:
    """The one rule from a user's location to an :class:`~airflow.sdk.ObjectStoragePath`.

    An ``ObjectStoragePath`` is kept as it is; a URI (``s3://…``, ``file://…``) is opened with
    ``conn_id``; a plain path becomes ``file://`` + the absolute path with ``~`` expanded (:func:`to_uri`).
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(location, ObjectStoragePath):
        return location
    return ObjectStoragePath(to_uri(location), conn_id=conn_id)


def is_local_path(value: object) -> bool:
    """Whether ``value`` looks like a worker-local filesystem path: a ``PathLike``, or a one-line string
    without a URI scheme that starts with ``/``, ``~``, ``./``, ``../`` or a drive letter. URIs
    (``file://`` included: it names a location on purpose) are not local here. The tests use it to check
    that no task hands a local path to another through XCom."""
    if isinstance(value, os.PathLike) and not hasattr(value, "protocol"):
        return True
    if not isinstance(value, str) or "\n" in value or "://" in value:
        return False
    return value.startswith(("/", "~", "./", "../")) or (len(value) > 2 and value[1:3] in (":\\", ":/"))
