"""RejectsFile writes through atomic_open: the file appears whole at commit, nothing on discard."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_here_batch.api.inputs import CheckedLine, InputProblem
from airflow_here_batch.files.input_source import RejectsFile


def rejected(number: int) -> CheckedLine:
    problem = InputProblem(
        kind="value-count", message="3 values, 2 columns", line=number, where=f"line {number}"
    )
    return CheckedLine(number, f"{number}|Berlin|extra\u2028", problems=(problem,))


def test_the_rejects_appear_whole_at_commit(tmp_path: Path) -> None:
    target = tmp_path / "rejects" / "r.jsonl"
    rejects = RejectsFile(target)
    rejects.write(rejected(2))
    rejects.write(rejected(5))
    assert not target.exists()  # a reader never sees half the file
    assert rejects.commit() == str(target) and rejects.count == 2
    lines = target.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(line.isascii() for line in lines)
    first = json.loads(lines[0])
    assert first == {
        "line": 2,
        "where": "line 2",
        "record": "2|Berlin|extra\u2028",
        "problems": [{"kind": "value-count", "field": None, "message": "3 values, 2 columns"}],
    }
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.jsonl"]


def test_a_discarded_rejects_file_leaves_nothing(tmp_path: Path) -> None:
    rejects = RejectsFile(f"file://{tmp_path}/r.jsonl")
    rejects.write(rejected(2))
    rejects.discard()
    assert list(tmp_path.iterdir()) == []
    assert rejects.commit() is None
