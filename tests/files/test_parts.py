"""The split's file-level work (files.parts): parts within both limits, merged in order, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize("with_ids", [True, False])
def test_write_parts_streams_a_file_into_parts_within_both_limits(tmp_path: Path, with_ids: bool) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.files.parts import write_parts

    header = b"recId|q\n" if with_ids else b"q\n"
    records = [
        (b"id-%d|" % n if with_ids else b"") + b"%d Main Street, Berlin\n" % n for n in range(1, 25_001)
    ]
    source = tmp_path / "in.csv"
    source.write_bytes(header + b"".join(records)[:-1])  # no line break after the last record
    limits = SplitLimits(max_records=10_000, max_bytes=300_000)
    folder = ObjectStoragePath(f"file://{tmp_path}/parts")
    with source.open("rb") as handle:
        parts = write_parts(handle, folder, limits=limits, service="geocode")
    written = [Path(p["input"].removeprefix("file://")).read_bytes() for p in parts]
    out_header = b"recId|q\n"
    assert all(w.startswith(out_header) for w in written)
    assert all(len(w) <= limits.max_bytes and w.count(b"\n") - 1 <= limits.max_records for w in written)
    assert [p["bytes"] for p in parts] == [len(w) for w in written]
    body = b"".join(w[len(out_header) :] for w in written)
    expected = records if with_ids else [b"%d|" % n + r for n, r in enumerate(records, 1)]
    assert body == b"".join(expected)  # every record once, in order, recIds kept or generated
    assert [p["first_record"] for p in parts] == [
        1 + sum(p["records"] for p in parts[:i]) for i in range(len(parts))
    ]
    assert len(parts) >= 3


def test_write_parts_leaves_nothing_behind_on_a_bad_line(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputValidationError
    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.files.parts import write_parts

    text = b"recId|q\n" + b"".join(b"%d|Berlin\n" % n for n in range(1, 5001)) + b"5001|Berlin|extra\n"
    source = tmp_path / "in.csv"
    source.write_bytes(text)
    with source.open("rb") as handle, pytest.raises(InputValidationError, match="input line 5002"):
        write_parts(
            handle, ObjectStoragePath(f"file://{tmp_path}/parts"), limits=SplitLimits(max_records=1000)
        )
    assert not (tmp_path / "parts").exists()


def test_merge_keeps_one_header_and_never_drops_a_line(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.files.parts import merge_files

    def files(*texts: bytes) -> list[Any]:
        paths = []
        for n, text in enumerate(texts):
            (tmp_path / f"f{n}").write_bytes(text)
            paths.append(ObjectStoragePath(f"file://{tmp_path}/f{n}"))
        return paths

    target = ObjectStoragePath(f"file://{tmp_path}/out/merged.csv")
    csv_parts = files(b"recId|x\n1|a\n2|b\n", b"recId|x\n3|c", b"recId|x\n4|d\n")
    assert merge_files([csv_parts[0], None, *csv_parts[1:]], target) == (
        len(b"recId|x\n1|a\n2|b\n3|c\n4|d\n"),
        4,
    )
    assert Path(target.path).read_bytes() == b"recId|x\n1|a\n2|b\n3|c\n4|d\n"
    # an errors report without a header line loses nothing
    headerless = files(b"recId|errorCode|errorMessage\n1|E1|{}\n", b"7|E1|{}\n", b"9|E1|{}\n")
    assert merge_files(headerless, target)[1] == 3
    assert Path(target.path).read_bytes().count(b"|E1|") == 3
    jsonl = files(b'{"recId": "1"}\n', b'{"recId": "2"}\n')
    assert merge_files(jsonl, target, output_type="jsonl") == (30, 2)
    assert merge_files([None, None], target) == (0, 0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["merged.csv"]  # no temporary left
