"""storage_path: the one rule from a user's location to an ObjectStoragePath."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_here_batch.files.locations import storage_path


def test_a_home_path_a_relative_path_and_a_path_object_become_absolute_file_uris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    home = storage_path("~/out/results.csv")
    assert (home.protocol, home.path) == ("file", f"{tmp_path}/out/results.csv")
    relative = storage_path("out/../out/results.csv")
    assert str(relative) == f"file://{tmp_path}/out/results.csv"
    assert storage_path(tmp_path / "r.csv").path == f"{tmp_path}/r.csv"
    assert storage_path(os.fspath(tmp_path) + "/folder/").path.rstrip("/") == f"{tmp_path}/folder"


def test_a_uri_gets_the_connection_and_an_object_storage_path_is_kept() -> None:
    from airflow.sdk import ObjectStoragePath

    uri = storage_path("s3://bucket/key.csv", "aws_x")
    assert (uri.protocol, uri.path, uri.conn_id) == ("s3", "bucket/key.csv", "aws_x")
    assert storage_path("file:///data/in.csv").path == "/data/in.csv"
    given = ObjectStoragePath("s3://bucket/key.csv", conn_id="aws_y")
    assert storage_path(given, "ignored") is given  # its own connection stays
