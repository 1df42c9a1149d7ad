"""atomic_open in object storage: S3 for real (moto's HTTP server, :mod:`tests.moto_s3`), where the object
appears only when fsspec's file commits, and the fallback (temporary name, rename) of a filesystem whose
``autocommit=False`` is no commit (``memory://``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.files.atomic import MissingBucketError, atomic_open, place_file
from tests.moto_s3 import BUCKET, CONN_ID, moto_s3, s3_client

pytest.importorskip(
    "airflow.providers.amazon", reason="needs the amazon extra (apache-airflow-providers-amazon)"
)
pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")

BIG = 9 * 1024 * 1024  # above the 8 MiB part size: one part is uploaded while the block still runs


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A boto3 client of moto's server; the ``aws_moto`` connection points at the same server."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as url:
        yield s3_client(url)


def keys(s3: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def uploads(s3: Any, prefix: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])]


def test_the_object_appears_whole_at_commit_and_no_temporary_object_is_written(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="commit/results.csv", Body=b"old")
    with atomic_open(f"s3://{BUCKET}/commit/results.csv", conn_id=CONN_ID) as out:
        out.write(b"x" * BIG)
        assert uploads(s3, "commit/") == ["commit/results.csv"]  # a part is up, the upload still open
        assert s3.get_object(Bucket=BUCKET, Key="commit/results.csv")["Body"].read() == b"old"
        out.write(b"end\n")
    body = s3.get_object(Bucket=BUCKET, Key="commit/results.csv")["Body"].read()
    assert len(body) == BIG + 4 and body.endswith(b"end\n")
    assert keys(s3, "commit/") == ["commit/results.csv"] and uploads(s3, "commit/") == []


def test_a_failed_write_leaves_the_old_object_and_no_upload(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="fail/results.csv", Body=b"old")
    with pytest.raises(RuntimeError), atomic_open(f"s3://{BUCKET}/fail/results.csv", conn_id=CONN_ID) as out:
        out.write(b"x" * BIG)
        assert uploads(s3, "fail/") == ["fail/results.csv"]
        raise RuntimeError("download cut")
    assert s3.get_object(Bucket=BUCKET, Key="fail/results.csv")["Body"].read() == b"old"
    assert keys(s3, "fail/") == ["fail/results.csv"] and uploads(s3, "fail/") == []  # aborted


def test_small_and_text_writes_and_place_file(s3: Any, tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    with atomic_open(f"s3://{BUCKET}/small/a.txt", "w", conn_id=CONN_ID) as out:
        out.write("h\u00e9\r\n")
    assert s3.get_object(Bucket=BUCKET, Key="small/a.txt")["Body"].read() == "h\u00e9\r\n".encode()
    with atomic_open(ObjectStoragePath(f"s3://{BUCKET}/small/empty", conn_id=CONN_ID)):
        pass
    assert s3.get_object(Bucket=BUCKET, Key="small/empty")["Body"].read() == b""
    staged = tmp_path / "staged"
    staged.write_bytes(b"recId|x\n1|a\n")
    target = ObjectStoragePath(f"s3://{BUCKET}/small/placed.csv", conn_id=CONN_ID)
    assert place_file(staged, target, remote=True) == str(target)  # s3://aws_moto@here-batch-test/...
    assert s3.get_object(Bucket=BUCKET, Key="small/placed.csv")["Body"].read() == staged.read_bytes()
    assert keys(s3, "small/") == ["small/a.txt", "small/empty", "small/placed.csv"]


def test_a_missing_bucket_is_named_and_never_created(s3: Any) -> None:
    writer = atomic_open("s3://no-such-bucket/out/results.csv", conn_id=CONN_ID)
    with pytest.raises(MissingBucketError, match="'no-such-bucket'") as caught, writer:
        pass
    assert caught.value.bucket == "no-such-bucket" and isinstance(caught.value, FileNotFoundError)
    assert "no-such-bucket" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_the_fallback_renames_a_complete_file_and_leaves_nothing_on_failure() -> None:
    """memory:// ignores autocommit=False (its file is visible from the open on): temporary name + rename."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach(protocol="memory", fs=MemoryFileSystem())  # Airflow registers no memory:// of its own
    folder = ObjectStoragePath("memory://here-batch-atomic/out")
    target = folder / "results.csv"
    with atomic_open(target) as out:
        out.write(b"whole")
        assert not target.exists() and len(list(folder.iterdir())) == 1  # the temporary file only
    assert target.read_bytes() == b"whole"
    with pytest.raises(RuntimeError), atomic_open(folder / "other.csv") as out:
        out.write(b"half")
        raise RuntimeError
    assert [p.name for p in folder.iterdir()] == ["results.csv"]
