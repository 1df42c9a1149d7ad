"""Issue 10 §1 through the emulator: what reaches HERE is exactly what the user gave, or nothing does.

The input goes the operator's way (``prepare_input``: one validation pass, then the upload made from
the same lines) through the real hook to the emulator over loopback HTTP; the test then reads what
the emulator stored and what it answered.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_here_batch.api import JobOptions, JobStatus, PollSchedule
from airflow_here_batch.api.inputs import InputValidationError
from airflow_here_batch.api.records import split_record
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.files.input_source import PreparedInput, prepare_input

API_KEY = "test-key-input-upload"
FAST = PollSchedule(poll_interval=0.02, max_poll_interval=0.1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(api_key=API_KEY, queue_delay=0, records_per_second=float("inf")) as emu:
        yield emu


@pytest.fixture(scope="module")
def hook(emulator: EmulatorServer) -> Iterator[Any]:
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    name = "AIRFLOW_CONN_HERE_INPUT_UPLOAD"
    os.environ[name] = json.dumps({"conn_type": "here_batch", "host": emulator.base_url, "password": API_KEY})
    hook = HereBatchHook("here_input_upload")
    yield hook
    hook.close()
    del os.environ[name]


def _first_field(line: str) -> tuple[str, str]:
    """The first ``|``-separated value of an output line (quote-aware) and the rest after it."""
    if not line.startswith('"'):
        head, _, rest = line.partition("|")
        return head, rest
    i, value = 1, []
    while True:
        j = line.index('"', i)
        value.append(line[i:j])
        if line[j + 1 : j + 2] == '"':
            value.append('"')
            i = j + 2
            continue
        return "".join(value), line[j + 2 :]


def _run(hook: Any, emulator: EmulatorServer, prepared: PreparedInput, tmp: Path) -> dict[str, Any]:
    """Upload, wait, and return what came back: stored input lines, result and error recIds."""
    with prepared.upload_data() as data:
        job = hook.create_job(data, options=JobOptions(service="geocode"))
    done = hook.wait_for_job(job.id, schedule=FAST, timeout=60)
    assert done.status in (JobStatus.COMPLETED, JobStatus.FAILURE), done
    stored = emulator.emulator.store.input_path(job.id).read_bytes()
    results, errors = tmp / f"{job.id}-r.csv", tmp / f"{job.id}-e.txt"
    result_ids: set[str] = set()
    if hook.download_results(job.id, results) is not None:
        for line in results.read_text(encoding="utf-8").split("\n")[1:]:
            if line:
                result_ids.add(_first_field(line)[0])
    error_ids: set[str] = set()
    if hook.download_errors(job.id, errors) is not None:
        for line in errors.read_text(encoding="utf-8").split("\n")[1:]:
            if line:
                error_ids.add(json.loads(_first_field(_first_field(line)[1])[1])["recordId"])
    hook.delete_job(job.id)
    return {"stored": stored, "results": result_ids, "errors": error_ids, "total": done.records.total}


# -- the BOM case ----------------------------------------------------------------------------

BODY = "recId|q\n7|Invalidenstraße 116, 10115 Berlin\n9|Dam 1, Amsterdam\n"


@pytest.mark.parametrize("form", ["file", "gz", "text"])
def test_bom_input_brings_back_the_given_recids(
    form: str, hook: Any, emulator: EmulatorServer, tmp_path: Path
) -> None:
    raw = b"\xef\xbb\xbf" + BODY.encode()
    value: Any
    if form == "file":
        value = tmp_path / "in.csv"
        value.write_bytes(raw)
    elif form == "gz":
        value = tmp_path / "in.csv.gz"
        value.write_bytes(gzip.compress(raw))
    else:
        value = "\ufeff" + BODY
    prepared = prepare_input(value, service="geocode", input_columns=None, delimiter="|")
    got = _run(hook, emulator, prepared, tmp_path)
    assert got["stored"] == BODY.encode()  # the BOM never reached HERE
    assert got["results"] == {"7", "9"} and got["total"] == 2


def test_crlf_input_is_uploaded_as_lf_and_every_record_comes_back(
    hook: Any, emulator: EmulatorServer, tmp_path: Path
) -> None:
    value = tmp_path / "windows.csv"
    value.write_bytes(BODY.replace("\n", "\r\n").encode())
    got = _run(
        hook, emulator, prepare_input(value, service="geocode", input_columns=None, delimiter="|"), tmp_path
    )
    assert got["stored"] == BODY.encode() and got["results"] == {"7", "9"}


def _cell(value: Any) -> str:
    """A value as a user writes it in a file: quoted when it holds the delimiter or starts with a
    quote, nothing else changed (``format_record`` would also blank line breaks)."""
    text = repr(value) if isinstance(value, float) else str(value)
    if "|" in text or text.startswith('"'):
        return '"' + text.replace('"', '""') + '"'
    return text


# -- the property ------------------------------------------------------------------------------------

# Characters that have broken inputs: delimiters, quotes, BOM, CR/LF, Unicode line separators, NUL,
# plus any printable text.
_TRICKY = st.sampled_from(
    ["|", '"', ";", ",", "\t", "\ufeff", "\r", "\n", "\r\n", "\u2028", "\x85", "\x00", " ", "ß", "北京"]
)
_TEXT = st.lists(st.one_of(_TRICKY, st.text(max_size=4)), max_size=6).map("".join)
_VALUE = st.one_of(_TEXT, st.none(), st.integers(-5, 10**6), st.floats(allow_nan=True))
_ROWS = st.lists(
    st.fixed_dictionaries({"recId": st.one_of(_TEXT, st.integers(0, 10**6)), "q": _VALUE}),
    min_size=1,
    max_size=8,
    unique_by=lambda r: str(r["recId"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_ROWS, form=st.sampled_from(["rows", "text", "bytes"]), bom=st.booleans(), crlf=st.booleans())
def test_every_record_comes_back_or_was_refused_before_upload(
    rows: list[dict[str, Any]],
    form: str,
    bom: bool,
    crlf: bool,
    hook: Any,
    emulator: EmulatorServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    rejects_file = tmp / "rejects.jsonl"
    if form != "rows":
        # Inline text: one line per row (a line is a record by definition, so values hold no LF).
        rows = [
            {k: (v.replace("\n", "") if isinstance(v, str) else "" if v is None else v) for k, v in r.items()}
            for r in rows
        ]
        ending = "\r\n" if crlf else "\n"
        given_records = [f"{_cell(r['recId'])}|{_cell(r['q'])}" for r in rows]
        value: Any = ("\ufeff" if bom else "") + ending.join(["recId|q", *given_records]) + ending
        if form == "bytes":  # read as a file is: line by line from bytes (the checker's fast path)
            value = value.encode("utf-8")
    else:
        value = rows
        given_records = None
    before = emulator.admin.stats()["requests"].get("create_job", 0)
    try:
        prepared = prepare_input(
            value,
            service="geocode",
            input_columns=None,
            delimiter="|",
            on_bad_record="skip",
            rejects_target=lambda: rejects_file,
        )
    except InputValidationError:
        # Refused as a whole before upload: nothing reached HERE.
        assert emulator.admin.stats()["requests"].get("create_job", 0) == before
        return
    rejected = (
        [json.loads(line) for line in rejects_file.read_text(encoding="utf-8").split("\n")[:-1]]
        if rejects_file.exists()
        else []
    )
    assert len(rejected) == prepared.rejected
    rejected_lines = {r["line"] for r in rejected}
    got = _run(hook, emulator, prepared, tmp)
    stored = got["stored"].decode("utf-8").split("\n")
    header = split_record(stored[0], "|")
    assert sorted(header) == ["q", "recId"] and stored[-1] == ""
    uploaded = stored[1:-1]
    kept = [i for i in range(len(rows)) if i + 2 not in rejected_lines]
    # Every record that was not refused reached HERE unchanged, in order, and came back by its recId.
    assert len(uploaded) == len(kept) == got["total"]
    for line, i in zip(uploaded, kept, strict=True):
        row = rows[i]
        if given_records is not None:
            assert line == given_records[i]
        values = dict(zip(header, split_record(line, "|"), strict=True))
        recid, q = values["recId"], values["q"]
        assert recid == (row["recId"] if isinstance(row["recId"], str) else str(row["recId"]))
        assert q == (
            row["q"]
            if isinstance(row["q"], str)
            else repr(row["q"])
            if isinstance(row["q"], float)
            else str(row["q"])
        )
        assert recid in got["results"] | got["errors"]
    assert len(got["results"] | got["errors"]) == len(kept)


# -- issue 19: a recId on more than one record -------------------------------------------------------


@pytest.mark.parametrize("form", ["file", "gz", "rows", "text"])
@pytest.mark.parametrize("mode", ["fail", "skip"])
def test_repeated_recid_is_refused_before_upload_naming_both_records(
    form: str, mode: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    body = "recId|q\nA-1|Invalidenstr. 116, Berlin\nB-2|Dam 1, Amsterdam\nA-1|Rome\n"
    value: Any = body
    where = "line 2 and line 4"
    if form == "file":
        value = tmp_path / "in.csv"
        value.write_text(body, encoding="utf-8")
    elif form == "gz":
        value = tmp_path / "in.csv.gz"
        value.write_bytes(gzip.compress(body.encode()))
    elif form == "rows":
        value = [
            {"recId": "A-1", "q": "Berlin"},
            {"recId": "B-2", "q": "Amsterdam"},
            {"recId": "A-1", "q": "Rome"},
        ]
        where = "row 1 and row 3"
    rejects = tmp_path / "rejects.jsonl"
    before = emulator.admin.stats()["requests"].get("create_job", 0)
    with pytest.raises(InputValidationError) as info:
        prepare_input(
            value,
            service="geocode",
            input_columns=None,
            delimiter="|",
            on_bad_record=mode,
            rejects_target=lambda: rejects,
        )
    assert f"{where}: both have recId 'A-1'; recIds must be unique within a job" in str(info.value)
    assert emulator.admin.stats()["requests"].get("create_job", 0) == before
    assert not rejects.exists() and list(tmp_path.glob(".rejects*")) == []
