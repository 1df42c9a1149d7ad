"""Destinations checked before anything is billed: a folder the run will write to can take a file.

A run writes its outputs (a split's merged results and errors, downloads, rejects) only after HERE's jobs
ran, and so after they were billed. :func:`check_folder` is called before any job is created, so a
destination that cannot take the files fails the run first.

What is checked, per kind of location (a rule table; the check writes nothing but its own marker,
removed again, and creates no bucket, container or folder):

=====================  =========================================================================
location               check
=====================  =========================================================================
local / ``file://``    the folder, or its nearest existing parent (the write creates the rest), is
                       a folder, and a marker file ``.here-batch-check-<random>`` can be created
                       and removed in it
object store           the bucket (container) exists and the connection sees it; a marker object
(``s3://`` ...)        ``<folder>/.here-batch-check-<random>`` can be written (committed, as every
                       file of the provider, :func:`~airflow_here_batch.files.atomic.atomic_open`)
                       and removed: bad credentials and missing permissions show here
=====================  =========================================================================
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_here_batch.files.atomic import LOCAL_PROTOCOLS, MissingBucketError, _check_bucket, atomic_open
from airflow_here_batch.files.locations import storage_path

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = ["MARKER_PREFIX", "DestinationError", "check_folder"]

#: Name prefix of the marker a check writes and removes (nothing else is ever written by a check).
MARKER_PREFIX = ".here-batch-check-"


class DestinationError(ValueError):
    """A destination cannot take the run's files; raised before any HERE job is created.

    :ivar location: the destination, as given (no credentials: a connection id at most).
    """

    def __init__(self, what: str, location: str, problem: str) -> None:
        super().__init__(f"{what} {location}: {problem}; nothing was uploaded to HERE")
        self.location = location


def _reason(exc: BaseException) -> str:
    """An error's kind and first line, e.g. ``PermissionError: Access Denied`` (never a credential: the
    storage libraries name the key id at most, and the connection's secret is not in their messages)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _check_local(path: Path, what: str, location: str) -> None:
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise DestinationError(what, location, f"{existing} is a file, not a folder: give a folder")
    marker = existing / f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise DestinationError(
            what, location, f"cannot write in {existing} ({_reason(exc)}): fix the folder's permissions"
        ) from None
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(marker)


def check_folder(
    location: Any, conn_id: str | None = None, *, what: str = "destination"
) -> ObjectStoragePath:
    """Check that files can be written into the folder ``location``, before anything is billed.

    :param location: a folder: URI, local path or ``ObjectStoragePath``.
    :param conn_id: the storage connection of a URI.
    :param what: how messages name the folder (``merge destination``, ``rejects folder`` ...).
    :returns: the folder as an ``ObjectStoragePath``.
    :raises DestinationError: naming the folder and the problem (a missing bucket, credentials the store
        refuses, no permission to write, a file where the folder should be).
    """
    shown = str(location)
    try:
        path = storage_path(location, conn_id)
    except Exception as exc:
        raise DestinationError(what, shown, f"cannot be opened ({_reason(exc)})") from None
    if path.protocol in LOCAL_PROTOCOLS:
        _check_local(Path(path.path), what, shown)
        return path
    marker = path / f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    try:
        _check_bucket(path)
        with atomic_open(marker) as out:
            out.write(b"")
    except MissingBucketError as exc:
        raise DestinationError(what, shown, str(exc)) from None
    except Exception as exc:
        raise DestinationError(
            what, shown, f"cannot write there ({_reason(exc)}): check the connection's credentials and "
            "its permission to write and delete objects"
        ) from None
    try:
        marker.unlink()
    except Exception as exc:
        raise DestinationError(
            what, shown, f"a file can be written but not removed ({_reason(exc)}): the run replaces its "
            f"files, so it needs permission to delete; remove the marker {marker.name} too"
        ) from None
    return path
