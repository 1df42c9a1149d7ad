"""The source side of the table pipeline: rows of a query into a HERE input file and its fingerprints."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def _location(value: Any, conn_id: str | None) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, ObjectStoragePath):
        return value
    text = str(value)
    if "://" not in text:
        text = f"file://{text}"
    return ObjectStoragePath(text, conn_id=conn_id)


class _AtomicFile:
    """A text file written under a temporary name in object storage and renamed when complete."""

    def __init__(self, target: ObjectStoragePath) -> None:
        self.target = target
        self.temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.part"
        self.stream: Any = None

    def __enter__(self) -> Any:
        with contextlib.suppress(Exception):
            self.target.parent.mkdir(parents=True, exist_ok=True)
        self.stream = self.temporary.open("w", encoding="utf-8", newline="")
        self.buffer = _BlockWriter(self.stream)
        return self.buffer

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.buffer.flush()
        finally:
            self.stream.close()
        if exc_type is None:
            self.temporary.rename(self.target)
        else:
            with contextlib.suppress(Exception):
                self.temporary.unlink()


class _BlockWriter:
    """Collects small writes and passes them on in blocks of about 1 MB (an object-storage file pays a
    wrapper call per write)."""

    def __init__(self, stream: Any, size: int = 1 << 20) -> None:
        self.stream = stream
        self.size = size
        self.parts: list[str] = []
        self.pending = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.pending += len(text)
        if self.pending >= self.size:
            self.flush()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.parts:
            self.stream.write("".join(self.parts))
            self.parts, self.pending = [], 0


def _as_seconds(value: timedelta | float | int | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
