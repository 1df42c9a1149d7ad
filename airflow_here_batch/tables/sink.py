"""The target side of the table pipeline: a job's results and errors report into the target table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_STAGE = "here_batch_stage"
#: Fingerprint entries the sink keeps while matching results that come back out of order (~6 MB).
MERGE_WINDOW = 20_000
_FINGERPRINTS = "here_batch_fingerprints"


def layout_split(header: str, delimiter: str) -> list[str]:
    """The results header's column names."""
    from airflow_here_batch.api.records import split_record

    return split_record(header, delimiter)


def _no_fingerprint(rec_id: str) -> tuple[None, None]:
    return None, None


def _lines(stream: Any, size: int = 1 << 20) -> Iterator[str]:
    """The lines of a text stream, each with its ``\\n``, read in blocks of ``size`` characters.

    Only ``\\n`` ends a line (as for HERE); ``str.splitlines`` would also split at other characters.
    """
    carry = ""
    while block := stream.read(size):
        parts = (carry + block).split("\n")
        carry = parts.pop()
        for part in parts:
            yield part + "\n"
    if carry:
        yield carry
