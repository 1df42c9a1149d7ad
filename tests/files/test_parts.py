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


@pytest.mark.parametrize(
    ("text", "parts", "message"),
    [
        (b"", 0, None),
        (b"recId|q\n", 0, None),
        (b"\xef\xbb\xbfrecId|q\r\n", 0, None),
        (b"\n\n  \n", None, "the input holds only blank lines: it holds no records and no header"),
        (b"\n\nrecId|q\n1|Berlin\n", None, "input line 1: is blank: HERE reads the first line as the column"),
    ],
)
def test_an_input_without_records_makes_no_part_and_blank_lines_a_clear_error(
    tmp_path: Path, text: bytes, parts: int | None, message: str | None
) -> None:
    """Issue 19 §4: nothing to send (empty, a header alone) is no part; blank lines where the header
    belongs are an input error naming the problem (never a bare ValueError), and nothing is written."""
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputValidationError
    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.files.parts import binary_lines, write_parts

    folder = ObjectStoragePath(f"file://{tmp_path}/parts")
    with binary_lines(text) as lines:
        if message is None:
            assert write_parts(lines, folder, limits=SplitLimits(), service="geocode") == []
        else:
            with pytest.raises(InputValidationError) as info:
                write_parts(lines, folder, limits=SplitLimits(), service="geocode")
            assert message in str(info.value)
    assert not (tmp_path / "parts").exists()


def test_a_repeated_recid_is_refused_naming_both_lines_from_a_second_read(tmp_path: Path) -> None:
    """Issue 19 §2: the plan's validation reads the input once; a repeated recId makes it read the input
    again to confirm the repeat on the text and name both lines. Nothing is written."""
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputValidationError
    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.files.parts import binary_lines, write_parts

    source = tmp_path / "in.csv"
    source.write_bytes(b"recId|q\n" + b"".join(b"c-%d|Berlin\n" % n for n in range(1, 3001)) + b"c-17|Rome\n")
    folder = ObjectStoragePath(f"file://{tmp_path}/parts")
    reads: list[int] = []

    def reread() -> Any:
        reads.append(1)
        return binary_lines(str(source))

    with binary_lines(str(source)) as lines, pytest.raises(InputValidationError) as info:
        write_parts(lines, folder, limits=SplitLimits(max_records=1000), service="geocode", reread=reread)
    message = str(info.value)
    assert "line 18 and line 3002: both have recId 'c-17'; recIds must be unique within a job" in message
    assert reads == [1] and not (tmp_path / "parts").exists()
    # read once only (no reread given): still refused, without the lines
    with binary_lines(str(source)) as lines, pytest.raises(InputValidationError, match="1 recId is given to"):
        write_parts(lines, folder, limits=SplitLimits(max_records=1000), service="geocode")


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


def test_binary_lines_reads_text_bytes_and_files_and_names_a_missing_one(tmp_path: Path) -> None:
    import gzip

    from airflow_here_batch.api.inputs import InputValidationError
    from airflow_here_batch.files.parts import binary_lines

    (tmp_path / "in.csv").write_bytes(gzip.compress(b"recId|q\n1|Berlin"))
    for source in ("recId|q\n1|Berlin", b"recId|q\n1|Berlin", tmp_path / "in.csv", f"file://{tmp_path}/in.csv"):
        with binary_lines(source) as lines:
            assert b"".join(lines).rstrip(b"\n") == b"recId|q\n1|Berlin"
    with pytest.raises(InputValidationError, match="does not exist"), binary_lines(tmp_path / "none.csv"):
        pass


def test_parts_and_merge_in_s3_appear_whole_and_a_bad_input_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Parts and merged output in S3 (moto's server): every object written whole, nothing of a bad input
    left (no part, no open multipart upload); a missing bucket is named, never created."""
    pytest.importorskip("airflow.providers.amazon", reason="needs the amazon extra")
    pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputValidationError
    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.files.atomic import MissingBucketError
    from airflow_here_batch.files.parts import merge_files, write_parts
    from tests.moto_s3 import BUCKET, CONN_ID, moto_s3, s3_client

    text = b"recId|q\n" + b"".join(b"%d|Berlin\n" % n for n in range(1, 11))
    with moto_s3(tmp_path_factory.mktemp("moto")) as url:
        s3 = s3_client(url)
        folder = ObjectStoragePath(f"s3://{BUCKET}/split/parts", conn_id=CONN_ID)
        parts = write_parts(text.splitlines(keepends=True), folder, limits=SplitLimits(max_records=4))
        assert [p["records"] for p in parts] == [4, 4, 2] and [p["first_record"] for p in parts] == [1, 5, 9]
        inputs = [ObjectStoragePath(p["input"], conn_id=CONN_ID) for p in parts]
        merged = ObjectStoragePath(f"s3://{BUCKET}/split/merged/results.csv", conn_id=CONN_ID)
        assert merge_files(inputs, merged) == (len(text), 10)
        assert s3.get_object(Bucket=BUCKET, Key="split/merged/results.csv")["Body"].read() == text
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="split/")["Contents"]}
        parts_keys = {f"split/parts/part-{i:05d}/input.txt" for i in (1, 2, 3)}
        assert keys == parts_keys | {"split/merged/results.csv"}

        bad = text + b"11|Berlin|extra\n"
        other = ObjectStoragePath(f"s3://{BUCKET}/bad/parts", conn_id=CONN_ID)
        with pytest.raises(InputValidationError, match="input line 12"):
            write_parts(bad.splitlines(keepends=True), other, limits=SplitLimits(max_records=4))
        assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="bad/")
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET, Prefix="bad/")

        nowhere = ObjectStoragePath("s3://no-such-bucket/parts", conn_id=CONN_ID)
        with pytest.raises(MissingBucketError, match="no-such-bucket"):
            write_parts(text.splitlines(keepends=True), nowhere, limits=SplitLimits(max_records=4))
        assert "no-such-bucket" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
