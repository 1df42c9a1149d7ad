"""Duplicate recIds: what the check costs (memory per record, time of the validation pass).

``python -m benchmarks.recids [records]`` (default 1,000,000). Not part of ``python -m benchmarks``:
a one-off figure for ``benchmarks/README.md`` ("Duplicate recIds").

* memory: ``tracemalloc`` peak of :class:`UniqueRecIds` fed ``records`` recIds (first pass and
  :meth:`finish`), per record; against a ``set`` of the same hashes (the obvious alternative);
* time: :func:`validate_lines` over the same in-memory file (``recId|q``, read as a file is, line by
  line as bytes: the checker's fast path), with the check (the default) and without (``unique_recids=
  False``); CPU time of the process, best of 5 each, interleaved;
* the duplicate case: the same file with its last record's recId equal to the first's (second pass
  and the error message), timed once.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
import tracemalloc
from collections.abc import Iterator

from airflow_here_batch.api.inputs import (
    InputChecker,
    InputValidationError,
    iter_input_lines,
    validate_lines,
)
from airflow_here_batch.api.recids import UniqueRecIds


def _file(records: int, duplicate: bool = False) -> bytes:
    lines = [b"recId|q\n"] + [b"C-%07d|%d Invalidenstrasse, Berlin\n" % (i, i % 200) for i in range(records)]
    if duplicate:
        lines[-1] = b"C-0000000|last\n"
    return b"".join(lines)


def _pass(data: bytes, unique: bool) -> float:
    started = time.process_time()  # CPU time: the machine is shared
    checker = InputChecker(service="geocode", unique_recids=unique)
    for _ in checker.check(iter_input_lines(io.BytesIO(data))):
        pass
    checker.duplicate_recids()
    return time.process_time() - started


def main(records: int) -> None:
    ids = [f"C-{i:07d}" for i in range(records)]
    tracemalloc.start()
    finder = UniqueRecIds()
    for number, rec_id in enumerate(ids, start=2):
        finder.add(rec_id, number)
    held = tracemalloc.get_traced_memory()[0]
    finder.finish()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tracemalloc.start()
    hashes = set()
    for rec_id in ids:
        hashes.add(hash(rec_id))
    set_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del hashes, ids
    print(f"records: {records:,}")
    print(f"UniqueRecIds: held {held / records:.2f} B/record, peak with finish {peak / records:.2f} B/record")
    print(f"set of hashes: peak {set_peak / records:.2f} B/record")

    data = _file(records)
    with_check, without = [], []
    for _ in range(5):
        without.append(_pass(data, False))
        with_check.append(_pass(data, True))
    best_with, best_without = min(with_check), min(without)
    print(
        f"validation pass ({len(data) / 1e6:.0f} MB): with the check {best_with:.2f} s, without "
        f"{best_without:.2f} s: +{(best_with / best_without - 1) * 100:.0f} %"
    )

    dup = _file(records, duplicate=True)

    @contextlib.contextmanager
    def reread() -> Iterator[Iterator[bytes]]:
        yield iter_input_lines(io.BytesIO(dup))

    started = time.perf_counter()
    try:
        validate_lines(iter_input_lines(io.BytesIO(dup)), service="geocode", reread=reread)
    except InputValidationError as exc:
        elapsed = time.perf_counter() - started
        print(f"with one repeated recId (two passes): {elapsed:.2f} s: {exc}")
    else:
        raise AssertionError("the repeated recId was not found")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
