"""Complete or nothing: write a file under a temporary name beside its destination, then rename it.

The one temp-file-and-rename rule of the provider: the hook's downloads (:class:`AtomicFile`) and the
download operator's placing of a finished file, locally or in object storage (:func:`place_file`),
both use it, so a failed or interrupted write never leaves a partial file at the destination.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from airflow_here_batch.files.locations import storage_path

__all__ = ["AtomicFile", "atomic_open", "place_file", "temporary_name"]

COPY_CHUNK = 1024 * 1024
#: Part size of object-storage uploads: what s3fs & co. hold in memory per file being written (S3's
#: minimum part is 5 MiB; s3fs's default is 50 MB).
UPLOAD_PART_SIZE = 8 * 1024 * 1024


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


def place_file(staged: str | os.PathLike[str], destination: Any, *, remote: bool) -> str:
    """Copy a complete local file to ``destination`` atomically; returns the destination as text.

    :param staged: the complete file.
    :param destination: a local path, or (``remote=True``) an ``ObjectStoragePath``: there the file is
        uploaded under a temporary name beside the destination and then renamed.
    """
    if remote:
        target = destination
        with contextlib.suppress(Exception):  # object stores without folders refuse mkdir
            target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / temporary_name(target.name)
        try:
            with Path(staged).open("rb") as source, temporary.open("wb", block_size=UPLOAD_PART_SIZE) as out:
                shutil.copyfileobj(source, out, COPY_CHUNK)
            temporary.rename(target)
        except BaseException:
            with contextlib.suppress(Exception):
                temporary.unlink()
            raise
        return str(target)
    with AtomicFile(Path(str(destination)).expanduser()) as out, Path(staged).open("rb") as source:
        while chunk := source.read(COPY_CHUNK):
            out.write(chunk)
        out.commit()
        return str(out.path)


@contextlib.contextmanager
def atomic_open(target: Any, mode: str = "wb", *, conn_id: str | None = None) -> Iterator[IO[Any]]:
    """Open ``target`` for writing, complete or nothing: the file appears at ``target`` only when the
    ``with`` block ends without an exception; otherwise nothing is left behind.

    :param target: a local path, a URI or an ``ObjectStoragePath`` (:func:`~.locations.storage_path`).
    :param mode: ``"wb"`` (bytes) or ``"w"`` (text: UTF-8, newlines written as given).
    :param conn_id: the storage connection of a URI.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes only ('wb' or 'w'), not {mode!r}")
    path = storage_path(target, conn_id)
    if path.protocol in ("file", "local"):
        with AtomicFile(path.path) as out:
            assert out.handle is not None
            if mode == "wb":
                yield out.handle
            else:
                text = io.TextIOWrapper(out.handle, encoding="utf-8", newline="")  # type: ignore[arg-type]
                yield text
                text.flush()
                text.detach()
            out.commit()
        return
    with contextlib.suppress(Exception):  # object stores without folders refuse mkdir
        path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / temporary_name(path.name)
    extra: dict[str, Any] = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
    try:
        with temporary.open(mode, block_size=UPLOAD_PART_SIZE, **extra) as out:
            yield out
        temporary.rename(path)
    except BaseException:
        with contextlib.suppress(Exception):
            temporary.unlink()
        raise
