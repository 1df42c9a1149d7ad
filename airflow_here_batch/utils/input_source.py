"""The submit operator's ``input`` as lines (validation pass) and as an upload body (second pass)."""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from airflow.sdk.exceptions import AirflowException

__all__ = ["InputSource"]


def _storage_path(location: Any, conn_id: str | None) -> Any:
    from airflow.sdk import ObjectStoragePath

    if isinstance(location, ObjectStoragePath):
        return location
    return ObjectStoragePath(str(location), conn_id=conn_id)


class InputSource:
    """The operator's ``input`` as lines (validation pass) and as an upload body (second pass)."""

    def __init__(
        self,
        value: Any,
        *,
        input_columns: str | Sequence[str] | None,
        delimiter: str,
        conn_id: str | None,
    ) -> None:
        self.delimiter = delimiter
        self.rows: list[Mapping[str, Any]] | None = None
        self.text: str | None = None
        self.local: Path | None = None
        self.remote: Any = None
        if isinstance(value, (list, tuple)):
            self.rows = list(value)
        elif isinstance(value, bytes):
            self.text = value.decode("utf-8")
        elif hasattr(value, "protocol"):  # ObjectStoragePath
            self.remote = value
        elif isinstance(value, (str, os.PathLike)):
            text = str(value)
            if "\n" in text:
                self.text = text
            elif "://" in text:
                self.remote = _storage_path(text, conn_id)
            else:
                path = Path(text).expanduser()
                if not path.is_file():
                    raise AirflowException(
                        f"input file {text!r} does not exist (inline input must contain a line break; "
                        "object storage needs a URI such as s3://bucket/key)"
                    )
                self.local = path
        else:
            raise AirflowException(
                f"input of type {type(value).__name__} is not supported: pass a path, an object-storage "
                "URI, a list of dicts or text"
            )
        if self.rows is not None:
            columns = input_columns
            if isinstance(columns, str):
                columns = columns.split(delimiter.replace("\\t", "\t"))
            self.row_columns = list(columns) if columns else None

    def _gz(self) -> bool:
        name = str(self.local or getattr(self.remote, "name", ""))
        return name.endswith(".gz")

    @contextlib.contextmanager
    def lines(self) -> Iterator[Iterable[str]]:
        from airflow_here_batch.api.inputs import iter_text_lines, rows_to_lines

        if self.rows is not None:
            yield rows_to_lines(self.rows, columns=self.row_columns, delimiter=self.delimiter)
            return
        if self.text is not None:
            yield self.text.splitlines(keepends=True)
            return
        with self._open_binary() as handle:
            yield iter_text_lines(handle)

    @contextlib.contextmanager
    def _open_binary(self) -> Iterator[IO[bytes]]:
        opened: IO[bytes] = self.local.open("rb") if self.local is not None else self.remote.open("rb")
        try:
            if self._gz():
                with gzip.open(opened, "rb") as unzipped:
                    yield unzipped  # type: ignore[misc]
            else:
                yield opened
        finally:
            opened.close()

    @contextlib.contextmanager
    def upload_data(self) -> Iterator[Any]:
        from airflow_here_batch.api.inputs import rows_to_lines

        if self.rows is not None:
            lines = rows_to_lines(self.rows, columns=self.row_columns, delimiter=self.delimiter)
            yield "".join(lines).encode("utf-8")
        elif self.text is not None:
            yield self.text.encode("utf-8")
        elif self.local is not None and not self._gz():
            yield self.local  # the hook streams (and can replay) a path
        else:
            with self._open_binary() as handle:
                yield handle
