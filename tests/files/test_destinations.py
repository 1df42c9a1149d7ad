"""Destinations checked before anything is billed (files/destinations.py, issue 19 §3): a folder that
cannot take the run's files fails the check, naming it and the problem; the check writes nothing but its
own marker, removed again, and creates no bucket and no folder. Local folders for real, S3 through moto's
HTTP server (:mod:`tests.moto_s3`)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.files.destinations import MARKER_PREFIX, DestinationError, check_folder
from tests.moto_s3 import BUCKET, CONN_ID, moto_s3, s3_client


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_local_folder_that_does_not_exist_yet_is_checked_in_its_nearest_parent(tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_text("x")
    path = check_folder(f"file://{tmp_path}/night/2026-12-06/", what="merge destination")
    assert path.path.rstrip("/").endswith("night/2026-12-06")
    assert _tree(tmp_path) == ["kept.txt"]  # no folder made, the marker gone
    check_folder(tmp_path)  # a plain path and an existing folder
    assert _tree(tmp_path) == ["kept.txt"]


def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    with pytest.raises(DestinationError) as info:
        check_folder(f"file://{tmp_path}/out/sub/", what="merge destination")
    assert str(info.value) == (
        f"merge destination file://{tmp_path}/out/sub/: {tmp_path}/out is a file, not a folder: give a "
        "folder; nothing was uploaded to HERE"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permissions cannot refuse it")
def test_a_folder_without_write_permission_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(DestinationError, match=r"cannot write in .*locked .*PermissionError"):
            check_folder(locked / "out")
    finally:
        locked.chmod(0o755)


# -- S3 -------------------------------------------------------------------------------------------

def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


needs_s3 = pytest.mark.skipif(
    not (_installed("airflow.providers.amazon") and _installed("moto.server")),
    reason="needs the amazon extra (apache-airflow-providers-amazon) and moto[server] (the test extra)",
)


@pytest.fixture
def refusing_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's server checking credentials after its first request (the test bucket's creation): the
    connection's key is no user of it, as a revoked or mistyped key."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "1")
    with moto_s3(tmp_path) as url:
        yield s3_client(url)


@needs_s3
@pytest.mark.usefixtures("refusing_s3")
def test_credentials_the_store_refuses_fail_the_check() -> None:
    # (runs before the module's s3 server starts: both set the aws_moto connection)
    with pytest.raises(DestinationError) as info:
        check_folder(f"s3://{BUCKET}/night/", CONN_ID, what="merge destination")
    message = str(info.value)
    assert message.startswith(f"merge destination s3://{BUCKET}/night/: ")
    assert "nothing was uploaded to HERE" in message
    assert "testing" not in message.replace(BUCKET, "")  # the connection's key and secret are 'testing'


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with moto_s3(tmp_path_factory.mktemp("moto")) as url:
        yield s3_client(url)


def _keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@needs_s3
def test_an_s3_folder_is_checked_by_a_marker_removed_again(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="night/old.csv", Body=b"old")
    check_folder(f"s3://{BUCKET}/night/", CONN_ID)
    assert _keys(s3) == ["night/old.csv"]  # nothing but the marker was written, and it is gone
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


@needs_s3
def test_a_missing_bucket_is_refused_and_never_created(s3: Any) -> None:
    with pytest.raises(DestinationError) as info:
        check_folder("s3://no-such-bucket-19/night/", CONN_ID, what="merge destination")
    assert str(info.value).startswith(
        "merge destination s3://no-such-bucket-19/night/: bucket 'no-such-bucket-19' of "
    )
    assert "never creates buckets" in str(info.value)
    assert "no-such-bucket-19" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not any(k.startswith(MARKER_PREFIX) for k in _keys(s3))
