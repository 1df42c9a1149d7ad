"""The one temp-file-and-rename helper: complete or nothing, locally and in object storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_here_batch.files.atomic import AtomicFile, place_file


def test_commit_replaces_the_destination_whole(tmp_path: Path) -> None:
    target = tmp_path / "out" / "results.csv"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with AtomicFile(target) as out:
        out.write(b"new ")
        assert target.read_bytes() == b"old"  # readers see the old file until commit
        out.truncate()
        out.write(b"whole")
        out.commit()
    assert target.read_bytes() == b"whole"
    assert [p.name for p in target.parent.iterdir()] == ["results.csv"]


def test_failure_leaves_the_destination_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    with pytest.raises(RuntimeError), AtomicFile(target) as out:
        out.write(b"half")
        raise RuntimeError("download cut")
    assert list(tmp_path.iterdir()) == []


def test_place_file_locally_and_in_object_storage(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    staged = tmp_path / "staged"
    staged.write_bytes(b"recId|x\n1|a\n")
    local = place_file(staged, tmp_path / "a" / "r.csv", remote=False)
    assert Path(local).read_bytes() == staged.read_bytes()
    remote_target = ObjectStoragePath(f"file://{tmp_path}/b/r.csv")
    remote = place_file(staged, remote_target, remote=True)
    assert remote_target.read_bytes() == staged.read_bytes() and remote.endswith("r.csv")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["r.csv"]


def test_atomic_open_text_bytes_and_uri(tmp_path: Path) -> None:
    """atomic_open: text keeps the newlines given, a failed block leaves nothing, a file:// URI works."""
    from airflow_here_batch.files.atomic import atomic_open

    with atomic_open(tmp_path / "a" / "x.txt", "w") as out:
        out.write("h\u00e9llo\r\n")
    assert (tmp_path / "a" / "x.txt").read_bytes() == "h\u00e9llo\r\n".encode()
    with pytest.raises(RuntimeError), atomic_open(str(tmp_path / "y.bin")) as out:
        out.write(b"x")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    with atomic_open("file://" + str(tmp_path / "z.bin")) as out:
        out.write(b"z")
    assert (tmp_path / "z.bin").read_bytes() == b"z"
