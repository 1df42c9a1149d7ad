"""Complete or nothing: the provider's one way to write a file, locally or in object storage.

:func:`atomic_open` is the entry point: a file appears at its destination whole, when the write ends
without an exception, or not at all. How depends on where the destination is:

- a local path or ``file://`` URI: written under a temporary name beside the destination, flushed to
  disk, then renamed over it (:class:`AtomicFile`; a rename within one folder is atomic);
- an object store whose fsspec file commits on request (:data:`COMMITTING_PROTOCOLS`: S3, GCS, Azure
  Blob): opened with ``autocommit=False``; the object is created by the file's ``commit()`` (S3's
  multipart upload is completed only then) and ``discard()`` leaves nothing;
- any other fsspec filesystem: a temporary name beside the destination, renamed when complete.

No bucket or container is ever created: a write below a bucket that does not exist raises
:class:`MissingBucketError`. :func:`place_file` (a finished local file to its destination) is
:func:`atomic_open` too; the hook's downloads use :class:`AtomicFile` directly (a retried download
starts over with :meth:`AtomicFile.truncate`).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Any

from airflow_here_batch.files.locations import storage_path

__all__ = [
    "COMMITTING_PROTOCOLS",
    "AtomicFile",
    "AtomicWriter",
    "MissingBucketError",
    "atomic_open",
    "place_file",
    "temporary_name",
]

COPY_CHUNK = 1024 * 1024
#: Part size of object-storage uploads: what s3fs & co. hold in memory per file being written (S3's
#: minimum part is 5 MiB; s3fs's default is 50 MB).
UPLOAD_PART_SIZE = 8 * 1024 * 1024

#: Local filesystems: :class:`AtomicFile`. (fsspec's own ``autocommit=False`` for them writes to the
#: system's temporary folder and moves the file at commit: a copy, not atomic, across filesystems.)
LOCAL_PROTOCOLS = frozenset({"file", "local"})

#: Object stores whose fsspec file makes the object appear only when asked (checked in s3fs, gcsfs and
#: adlfs 2026.x):
#:
#: - ``s3``, ``s3a`` (s3fs ``S3File``): ``autocommit=False`` always uses a multipart upload;
#:   ``commit()`` completes it, ``discard()`` aborts it;
#: - ``gs``, ``gcs`` (gcsfs ``GCSFile``): a resumable upload, finalised by ``commit()``, cancelled by
#:   ``discard()``;
#: - ``abfs``, ``abfss``, ``az`` (adlfs ``AzureBlobFile``): ignores ``autocommit`` and commits the block
#:   list when the file is closed; the writer closes it only on success and drops a failed one
#:   unclosed, so its staged blocks are never committed (Azure deletes them after a week).
#:
#: Every other filesystem gets the fallback, a temporary name beside the destination and a rename,
#: because its ``autocommit=False`` is no commit: ``memory`` ignores it outside a transaction (the file
#: is visible from the open on); ``sftp``, ``ftp``, ``smb`` and ``webhdfs`` write to a temporary folder
#: of the server (``/tmp`` by default) and move the file at commit (not atomic across filesystems);
#: ``arrow``/``hdfs`` ignores it; ``http`` cannot write at all.
COMMITTING_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"})


def temporary_name(name: str) -> str:
    """A hidden, unique name beside ``name``: ``.<name>.<32 hex>.part``."""
    return f".{name}.{uuid.uuid4().hex}.part"


class AtomicFile:
    """A local file written under a temporary name, renamed over ``path`` by :meth:`commit`.

    Use as a context manager; leaving it without :meth:`commit` removes the temporary file::

        with AtomicFile(path) as out:
            out.write(b"...")
            out.commit()      # fsync, then os.replace: readers see the old file or the whole new one

    :param path: the destination; its folder is created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp: Path | None = self.path.with_name(temporary_name(self.path.name))
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> AtomicFile:
        assert self.tmp is not None
        self.handle = self.tmp.open("wb")
        return self

    def write(self, data: bytes) -> None:
        assert self.handle is not None
        self.handle.write(data)

    def truncate(self) -> None:
        """Start over (a retried download)."""
        assert self.handle is not None
        self.handle.seek(0)
        self.handle.truncate()

    def commit(self) -> None:
        """Flush to disk and rename over the destination."""
        if self.tmp is None or self.handle is None:
            return
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        self.tmp = None

    def discard(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        if self.handle is not None:
            self.handle.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None

    def __exit__(self, *exc_info: object) -> None:
        self.discard()


class MissingBucketError(FileNotFoundError):
    """The bucket (or container) of a destination does not exist, or the connection cannot see it.

    The provider never creates one: create it first, or fix the location or the connection.

    :ivar bucket: the bucket's name.
    """

    def __init__(self, bucket: str, location: str) -> None:
        super().__init__(
            f"bucket {bucket!r} of {location} does not exist (or the connection cannot see it): the "
            "provider never creates buckets or containers; create it, or fix the location or connection"
        )
        self.bucket = bucket


def _check_bucket(path: Any) -> None:
    """Raise :class:`MissingBucketError` unless the bucket of ``path`` (an object store's) exists."""
    bucket = str(path.path).strip("/").split("/", 1)[0]
    if not bucket or not path.fs.exists(bucket):
        raise MissingBucketError(bucket, str(path))


class AtomicWriter:
    """A write that is complete or nothing, to any location: what :func:`atomic_open` returns.

    As a context manager it yields the open file and commits when the block ends without an exception
    (discards otherwise). A write that spans calls (a file filled bit by bit) calls :meth:`open`, then
    :meth:`commit` or :meth:`discard` itself.

    :param target: a local path, a URI or an ``ObjectStoragePath`` (:func:`~.locations.storage_path`).
    :param mode: ``"wb"`` (bytes) or ``"w"`` (text: UTF-8, newlines written as given).
    :param conn_id: the storage connection of a URI.
    :raises ValueError: for another mode.
    """

    def __init__(self, target: Any, mode: str = "wb", *, conn_id: str | None = None) -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"atomic_open writes only ('wb' or 'w'), not {mode!r}")
        self.path = storage_path(target, conn_id)
        self.mode = mode
        self._local: AtomicFile | None = None
        self._committing: Any = None  # the fsspec file of a COMMITTING_PROTOCOLS store
        self._temporary: Any = None  # the fallback's temporary ObjectStoragePath
        self._raw: Any = None
        self._text: io.TextIOWrapper | None = None

    def open(self) -> IO[Any]:
        """Open the temporary file (or the uncommitted object) and return it for writing.

        :raises MissingBucketError: when the destination's bucket or container does not exist.
        """
        if self._raw is not None:
            raise RuntimeError(f"{self.path} is open already")
        protocol = self.path.protocol
        if protocol in LOCAL_PROTOCOLS:
            self._local = AtomicFile(self.path.path).__enter__()
            self._raw = self._local.handle
        elif protocol in COMMITTING_PROTOCOLS:
            _check_bucket(self.path)  # and no mkdir: object stores have no folders to create
            self._raw = self._committing = self.path.fs.open(
                self.path.path, "wb", block_size=UPLOAD_PART_SIZE, autocommit=False
            )
        else:
            with contextlib.suppress(Exception):  # stores without folders refuse mkdir
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._temporary = self.path.parent / temporary_name(self.path.name)
            self._raw = self._temporary.open("wb", block_size=UPLOAD_PART_SIZE)
        if self.mode == "wb":
            return self._raw  # type: ignore[no-any-return]
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")
        return self._text

    def commit(self) -> None:
        """Make the file appear, whole, at the destination; when that fails, discard it and raise."""
        try:
            if self._text is not None:  # the wrapper's last characters, then let go of the file
                self._text.flush()
                self._text.detach()
                self._text = None
            if self._local is not None:
                self._local.commit()
                self._local = None
            elif self._committing is not None:
                self._committing.close()  # uploads the last part (adlfs: commits the blob)
                self._committing.commit()
                self._committing = None
            elif self._temporary is not None:
                self._raw.close()
                self._temporary.rename(self.path)
                self._temporary = None
            self._raw = None
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Leave the destination as it was and nothing else behind; never raises."""
        if self._local is not None:
            self._local.discard()
            self._local = None
        if self._committing is not None:
            handle, self._committing = self._committing, None
            try:
                with contextlib.suppress(Exception):  # a failed abort leaves an upload, never an object
                    handle.discard()  # s3fs aborts the multipart upload, gcsfs cancels the resumable one
            finally:
                handle.closed = True  # never close it: a close writes the object (adlfs commits it)
        if self._temporary is not None:
            temporary, self._temporary = self._temporary, None
            with contextlib.suppress(Exception):
                self._raw.close()
            with contextlib.suppress(Exception):
                temporary.unlink()
        # The text wrapper goes last: the file below it is closed now, so it never writes again.
        self._raw = self._text = None

    def __enter__(self) -> IO[Any]:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_open(target: Any, mode: str = "wb", *, conn_id: str | None = None) -> AtomicWriter:
    """Open ``target`` for writing, complete or nothing: the file appears at ``target`` only when the
    ``with`` block ends without an exception; otherwise nothing is left behind::

        with atomic_open("s3://bucket/out/results.csv", conn_id="aws_default") as out:
            out.write(b"...")

    :param target: a local path (``~`` expanded), a URI or an ``ObjectStoragePath``
        (:func:`~.locations.storage_path`).
    :param mode: ``"wb"`` (bytes) or ``"w"`` (text: UTF-8, newlines written as given).
    :param conn_id: the storage connection of a URI.
    :returns: an :class:`AtomicWriter`: a context manager yielding the open file (its ``open``,
        ``commit`` and ``discard`` serve a write that spans calls).
    :raises ValueError: for another mode.
    :raises MissingBucketError: (at the open) the destination's bucket or container does not exist.
    """
    return AtomicWriter(target, mode, conn_id=conn_id)


def place_file(staged: str | os.PathLike[str], destination: Any, *, remote: bool) -> str:
    """Copy a complete local file to ``destination`` with :func:`atomic_open`; returns where it went.

    :param staged: the complete file.
    :param destination: a local path (``remote=False``; ``~`` expanded), or (``remote=True``) a URI or
        an ``ObjectStoragePath``.
    :returns: the local path, or (``remote=True``) the destination's URI.
    :raises MissingBucketError: when the destination's bucket or container does not exist.
    """
    target = destination if remote else Path(os.fspath(destination)).expanduser()
    with Path(staged).open("rb") as source, atomic_open(target) as out:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    return str(destination) if remote else str(target)
