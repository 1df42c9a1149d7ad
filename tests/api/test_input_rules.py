"""Issue 10 §1: what reaches HERE is exactly what the user gave, or the input is refused before upload.

Each failing case of the issue is a test here, with the right value; the emulator round trips are in
tests/hooks/test_input_upload.py and the operator in tests/operators/test_inputs.py.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_here_batch.api.inputs import (
    MAX_PROBLEMS_SHOWN,
    InputChecker,
    InputValidationError,
    at_problem,
    here_id_problem,
    iter_input_lines,
    rows_to_lines,
    split_text,
    upload_lines,
    validate_lines,
)
from airflow_here_batch.api.transfer import LineStream
from airflow_here_batch.files.input_source import InputSource, RejectsFile, prepare_input

BOM = b"\xef\xbb\xbf"
BODY = b"recId|q\n7|Invalidenstr. 116, Berlin\n9|Dam 1, Amsterdam\n"
ROW_LABEL = {"label": lambda n: "header" if n == 1 else f"row {n - 1}"}


def _upload(source: InputSource, **kwargs: object) -> bytes:
    prepared = prepare_input(
        source_value(source), service="geocode", input_columns=None, delimiter="|", **kwargs
    )
    with prepared.upload_data() as data:
        return data.read_bytes() if isinstance(data, Path) else data.read()


def source_value(source: InputSource) -> object:
    return source.rows if source.rows is not None else source.text or source.data or source.local


def _refused(value: object, **kwargs: object) -> InputValidationError:
    with pytest.raises(InputValidationError) as info:
        prepare_input(
            value, service=kwargs.pop("service", "geocode"), input_columns=None, delimiter="|", **kwargs
        )
    return info.value


def _uploaded(value: object, service: str = "geocode", **kwargs: object) -> bytes:
    prepared = prepare_input(value, service=service, input_columns=None, delimiter="|", **kwargs)
    with prepared.upload_data() as data:
        return data.read_bytes() if isinstance(data, Path) else data.read()


# -- BOM ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["file", "gz", "bytes", "text"])
def test_a_utf8_bom_is_stripped_and_never_uploaded(form: str, tmp_path: Path) -> None:
    if form == "file":
        value: object = tmp_path / "in.csv"
        value.write_bytes(BOM + BODY)  # type: ignore[attr-defined]
    elif form == "gz":
        value = tmp_path / "in.csv.gz"
        value.write_bytes(gzip.compress(BOM + BODY))  # type: ignore[attr-defined]
    elif form == "bytes":
        value = BOM + BODY
    else:
        value = "\ufeff" + BODY.decode()
    prepared = prepare_input(value, service="geocode", input_columns=None, delimiter="|")
    assert prepared.report is not None and prepared.report.bom and prepared.report.columns == ["recId", "q"]
    with prepared.upload_data() as data:
        body = data.read_bytes() if isinstance(data, Path) else data.read()
    assert body == BODY


def test_a_bom_inside_the_input_is_refused() -> None:
    error = _refused("recId|q\n1|a\n\ufeff2|b\n")
    assert error.line == 3 and "byte-order mark" in str(error)


# -- XCom rows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"recId": "1", "q": "Invalidenstr. 116\n10115 Berlin"}, "q", "line break"),
        ({"recId": "1", "q": "Invalidenstr. 116\r10115 Berlin"}, "q", "line break"),
        ({"recId": "1", "q": None}, "q", "None"),
        ({"recId": "1"}, "q", "has no 'q'"),
        ({"recId": "1", "q": {"city": "Berlin"}}, "q", "dict"),
        ({"recId": "1", "q": ["Berlin"]}, "q", "list"),
        ({"recId": "1", "q": b"Berlin"}, "q", "bytes"),
        ({"recId": True, "q": "Berlin"}, "recId", "bool"),
        ({"recId": "1", "q": float("nan")}, "q", "nan"),
    ],
)
def test_bad_xcom_rows_are_refused_naming_row_and_field(row: dict, field: str, words: str) -> None:
    rows = [{"recId": "0", "q": "Berlin"}, row]
    error = _refused(rows)
    assert error.line == 3 and error.field == field
    text = str(error)
    assert text.startswith("input row 2: ") and words in text
    assert "1|" not in text.split(":", 1)[1][:3]
    assert "{'city'" not in text  # never a Python repr of the value as data


def test_rows_never_upload_a_repr_or_an_empty_placeholder() -> None:
    rows = [{"recId": "1", "q": None}, {"recId": "2", "q": {"a": 1}}, {"recId": "3", "q": "ok"}]
    with pytest.raises(InputValidationError) as info:
        list(rows_to_lines(rows))
    assert "row 1" in str(info.value)
    lines = list(rows_to_lines(rows, on_bad_row="mark"))
    assert lines[0] == "recId|q\n" and lines[3] == "3|ok\n"
    assert json.loads(lines[1]) == {"recId": "1", "q": None}  # a RejectedRow: for the rejects file


def test_all_bad_rows_are_reported_at_once() -> None:
    rows = [{"recId": str(i), "q": None} for i in range(30)]
    with pytest.raises(InputValidationError) as info:
        validate_lines(rows_to_lines(rows, on_bad_row="mark"), service="geocode", **ROW_LABEL)
    assert len(info.value.problems) == MAX_PROBLEMS_SHOWN and info.value.counts == {"row": 30}


def test_a_value_holding_the_delimiter_or_quotes_round_trips() -> None:
    rows = [{"recId": "a|b", "q": '"quoted" | piped'}, {"recId": "2", "q": "say hi"}]
    body = _uploaded(rows)
    assert body == b'recId|q\n"a|b"|"""quoted"" | piped"\n2|say hi\n'


# -- path or text ------------------------------------------------------------------------------------


def test_a_header_only_text_is_text_not_a_path() -> None:
    assert "holds no records (only a header)" in str(_refused("recId|q\n"))
    # Jinja dropped the trailing newline of the literal written in the DAG: the operator remembers it.
    assert "holds no records (only a header)" in str(_refused("recId|q", inline_text=True))


def test_a_str_without_a_line_break_is_a_path_and_says_the_rule(tmp_path: Path) -> None:
    error = _refused("recId|q")
    assert "is not an existing file" in str(error) and "line break" in str(error)
    error = _refused(str(tmp_path / "missing.csv"))
    assert "is not an existing file" in str(error)


@pytest.mark.parametrize("form", ["str", "blank-str", "bytes", "rows", "file", "gz", "blank-lines", "bom"])
def test_empty_input_of_any_form_says_it_holds_no_records(form: str, tmp_path: Path) -> None:
    value: object = {
        "str": "",
        "blank-str": "  \n\n",
        "bytes": b"",
        "rows": [],
        "blank-lines": b"\n\n\n",
        "bom": BOM,
    }.get(form)
    if form in ("file", "gz"):
        value = tmp_path / f"in.{form}"
        value.write_bytes(b"" if form == "file" else gzip.compress(b""))  # type: ignore[attr-defined]
    assert "holds no records" in str(_refused(value)) or "is empty: it holds no records" in str(
        _refused(value)
    )


# -- encoding and compression ------------------------------------------------------------------------

LATIN1 = b"recId|q\n1|Berlin\n2|M\xfcnchen\n"


@pytest.mark.parametrize("gz", [False, True])
def test_latin1_names_the_line_and_the_fix(gz: bool, tmp_path: Path) -> None:
    path = tmp_path / ("in.csv.gz" if gz else "in.csv")
    path.write_bytes(gzip.compress(LATIN1) if gz else LATIN1)
    error = _refused(path)
    assert error.line == 3 and error.field == "encoding"
    assert str(error).startswith("input line 3: is not UTF-8 (byte 0xFC") and "save the file as UTF-8" in str(
        error
    )


def test_gzip_content_is_read_whatever_the_file_name(tmp_path: Path) -> None:
    # Choice: detect gzip by its magic bytes and read it decompressed. 1f 8b cannot start UTF-8 text,
    # so this never misreads a text file, and the records are exactly the user's.
    path = tmp_path / "in.csv"
    path.write_bytes(gzip.compress(BODY))
    assert _uploaded(path) == BODY
    named_gz_but_plain = tmp_path / "plain.gz"
    named_gz_but_plain.write_bytes(BODY)
    assert _uploaded(named_gz_but_plain) == BODY


def test_concatenated_gzip_members_are_all_read() -> None:
    data = gzip.compress(b"recId|q\n1|a\n") + gzip.compress(b"2|b\n")
    assert b"".join(iter_input_lines(io.BytesIO(data))) == b"recId|q\n1|a\n2|b\n"


def test_damaged_or_other_compressed_input_is_refused(tmp_path: Path) -> None:
    assert "ends early" in str(_refused(gzip.compress(BODY * 50)[:-20]))
    zipped = b"PK\x03\x04" + b"\x00" * 40
    assert "zip-compressed" in str(_refused(zipped))
    assert "UTF-16" in str(_refused("recId|q\n1|Berlin\n".encode("utf-16")))


# -- header ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("recId|Q", "column 'Q' must be written 'q'"),
        ("RecID|q", "column 'RecID' must be written 'recId'"),
        ("recId|q|q", "column 'q' appears twice (columns 2 and 3)"),
        ("recId|q|limit|limit=5", "column 'limit' appears twice"),
        ("recId| q", "spaces around its name"),
    ],
)
def test_header_case_duplicates_and_spaces_are_refused(header: str, words: str) -> None:
    values = "|".join("x" for _ in header.split("|") if "=" not in _)
    error = _refused(f"{header}\n{values}\n")
    assert error.line == 1 and words in str(error)


@pytest.mark.parametrize(
    ("column", "v7"),
    [
        ("searchText", "'q'"),
        ("country", "in=countryCode:DEU"),
        ("city", "'qq'"),
        ("postalCode", "'qq'"),
        ("street", "'qq'"),
        ("houseNumber", "'qq'"),
        ("prox", "'at'"),
    ],
)
def test_legacy_62_columns_are_refused_naming_the_v7_way(column: str, v7: str) -> None:
    error = _refused(f"recId|q|{column}\n1|x|y\n")
    assert f"column {column!r} is a Batch Geocoder 6.2 name" in str(error) and v7 in str(error)


def test_unknown_columns_are_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    log = logging.getLogger("test.inputs")
    with caplog.at_level("WARNING", logger="test.inputs"):
        prepared = prepare_input(
            "recId|q|myNote\n1|Berlin|x\n", service="geocode", input_columns=None, delimiter="|", log=log
        )
    assert prepared.report is not None and prepared.report.records == 1
    assert "column 'myNote' is not a HERE v7 parameter" in caplog.text


# -- values ------------------------------------------------------------------------------------------


def test_revgeocode_at_must_be_two_numbers_in_range() -> None:
    error = _refused("recId|at\n1|52.5,13.4\n2|95.0,200.0\n3|abc\n4|52.5, 13.4\n", service="revgeocode")
    assert error.counts == {"at": 3}
    lines = {p.line: p.message for p in error.problems}
    assert (
        "latitude 95.0 is outside -90..90" in lines[3] and "longitude 200.0 is outside -180..180" in lines[3]
    )
    assert "not a position" in lines[4] and "not a position" in lines[5]
    assert at_problem("-90,180") is None and at_problem("13.4,200") is not None
    assert "swapped" in (at_problem("95.0,13.4") or "")


def test_lookup_ids_must_be_here_ids() -> None:
    error = _refused("recId|id\n1|12345\n", service="lookup")
    assert error.line == 2 and error.field == "id" and "not a HERE id" in str(error)
    assert here_id_problem("here:pds:place:276u33db-8097f3194e4b411081b761ea9a366776") is None
    assert here_id_problem("here:af:streetsection:tVuvjJYhO86yd5jk1cmzNB:CgcIBCCE59BeEAEaAzExNg") is None


def test_empty_query_values_pass_because_here_reports_them() -> None:
    report = validate_lines(["recId|q", "1|", "2|Berlin"], service="geocode")
    assert report.records == 2


# -- line endings ------------------------------------------------------------------------------------


def test_bare_cr_line_endings_are_refused_before_upload() -> None:
    error = _refused(b"recId|q\r1|Berlin\r2|Paris\r")
    assert error.line == 1 and "CR-only" in str(error) and "convert" in str(error)
    error = _refused(b"recId|q\n1|Ber\rlin\n")
    assert error.line == 2 and error.counts == {"bare-cr": 1}


def test_crlf_is_a_line_ending_and_is_uploaded_as_lf(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(BODY.replace(b"\n", b"\r\n"))
    prepared = prepare_input(path, service="geocode", input_columns=None, delimiter="|")
    assert prepared.report is not None and prepared.report.crlf and prepared.report.records == 2
    with prepared.upload_data() as data:
        assert data.read() == BODY


def test_lines_split_on_newline_only_for_inline_text() -> None:
    text = "recId|q\n1|Invalidenstr.\u2028116\n2|Dam\x851\n3|a\x0cb\x1cc\u2029d\n"
    assert len(list(split_text(text))) == 4
    report = validate_lines(split_text(text), service="geocode")
    assert report.records == 3
    assert _uploaded(text) == text.encode()


# -- many problems at once ---------------------------------------------------------------------------


def test_up_to_20_problems_with_counts_by_kind() -> None:
    lines = ["recId|at"]
    lines += [f"{i}|52.5,13.4" for i in range(1000)]
    lines += [f"b{i}|95,13" for i in range(50)]
    lines += [f"c{i}|1|2" for i in range(7)]
    error = _refused("\n".join(lines) + "\n", service="revgeocode")
    assert error.counts == {"at": 50, "value-count": 7}
    assert len(error.problems) == MAX_PROBLEMS_SHOWN and error.problems[0].line == 1002
    text = str(error)
    assert text.startswith("input: 57 problems ('at' not a position: 50, wrong number of values: 7)")
    assert "... and 37 more" in text


# -- skip mode ---------------------------------------------------------------------------------------


def test_skip_leaves_bad_records_out_and_writes_them_with_reasons(tmp_path: Path) -> None:
    text = "recId|at\n1|52.5,13.4\n2|95,13\n3|48.8,2.3\n4|x\n"
    target = tmp_path / "out" / "rejects.jsonl"
    prepared = prepare_input(
        text,
        service="revgeocode",
        input_columns=None,
        delimiter="|",
        on_bad_record="skip",
        rejects_target=lambda: target,
    )
    assert prepared.rejected == 2 and prepared.rejects_path == str(target)
    rejects = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["record"], r["problems"][0]["kind"]) for r in rejects] == [
        (3, "2|95,13", "at"),
        (5, "4|x", "at"),
    ]
    with prepared.upload_data() as data:
        assert data.read() == b"recId|at\n1|52.5,13.4\n3|48.8,2.3\n"
    assert [p.name for p in target.parent.iterdir()] == ["rejects.jsonl"]


def test_skip_never_renumbers_records() -> None:
    error = _refused("q\nBerlin\nParis\x00\n", on_bad_record="skip")
    assert "no recId column" in str(error) and "another recId" in str(error)


def test_skip_still_fails_on_problems_with_the_whole_input(tmp_path: Path) -> None:
    target = tmp_path / "rejects.jsonl"
    error = _refused("recId|Q\n1|x\n", on_bad_record="skip", rejects_target=lambda: target)
    assert "must be written 'q'" in str(error) and not target.exists()
    error = _refused(
        "recId|at\n1|x\n", service="revgeocode", on_bad_record="skip", rejects_target=lambda: target
    )
    assert "every record of the input is bad" in str(error)
    assert not list(tmp_path.iterdir())  # no half-written rejects file left behind


def test_skip_with_rows_writes_the_row_as_json(tmp_path: Path) -> None:
    target = tmp_path / "rejects.jsonl"
    rows = [{"recId": "1", "q": "Berlin"}, {"recId": "2", "q": None}]
    prepared = prepare_input(
        rows,
        service="geocode",
        input_columns=None,
        delimiter="|",
        on_bad_record="skip",
        rejects_target=lambda: target,
    )
    entry = json.loads(target.read_text(encoding="utf-8"))
    assert entry["where"] == "row 2" and json.loads(entry["record"]) == {"recId": "2", "q": None}
    with prepared.upload_data() as data:
        assert data.read() == b"recId|q\n1|Berlin\n"


# -- streaming helpers -------------------------------------------------------------------------------


def test_the_checker_is_a_generator_with_the_upload_text() -> None:
    checker = InputChecker(service="geocode")
    checked = list(checker.check([b"\xef\xbb\xbfrecId|q\r\n", b"1|a\r\n", b"2|\xff\n"]))
    assert [(c.number, c.text, c.header, c.ok) for c in checked] == [
        (1, "recId|q", True, True),
        (2, "1|a", False, True),
        (3, "2|\\xff", False, False),
    ]
    assert checker.report.records == 1 and checker.report.rejected == 1 and checker.counts == {"not-utf8": 1}


def test_an_overlong_line_is_not_held_whole() -> None:
    data = b"recId|q\n1|" + b"x" * (3 * 1024 * 1024) + b"\n2|ok\n"
    lines = list(iter_input_lines(io.BytesIO(data), chunk_size=64 * 1024))
    assert len(lines) == 3 and max(map(len, lines)) < 64 * 1024 and lines[2] == b"2|ok\n"
    with pytest.raises(InputValidationError, match="longer than"):
        validate_lines(lines)


def test_line_stream_rewinds_for_a_retry() -> None:
    calls = []

    def produce():
        calls.append(1)
        yield from (b"a\n", b"b\n")

    stream = LineStream(produce, chunk_size=1)
    assert stream.read() == b"a\nb\n"
    assert stream.seek(0) == 0 and stream.read(1) == b"a" and stream.tell() == 1
    assert stream.seek(1) == 1 and stream.read() == b"\nb\n"
    assert len(calls) == 2
    with pytest.raises(io.UnsupportedOperation):
        stream.seek(2)


def test_upload_lines_without_checks_still_drops_bom_and_cr() -> None:
    assert b"".join(upload_lines([BOM + b"recId|q\r\n", b"1|a"], check=False)) == b"recId|q\n1|a\n"


def test_rejects_file_is_not_written_when_nothing_is_rejected(tmp_path: Path) -> None:
    rejects = RejectsFile(tmp_path / "r.jsonl")
    assert rejects.commit() is None and not list(tmp_path.iterdir())


def test_a_cr_ending_a_value_in_an_lf_input_is_refused_not_cut() -> None:
    # The first line ends with LF alone, so "0|\r\n" holds a value ending with CR: refused, never cut.
    error = _refused("recId|q\n0|\r\n1|Berlin\n")
    assert error.line == 2 and error.counts == {"bare-cr": 1}
    # In a CRLF input the same bytes are a line ending.
    assert _uploaded("recId|q\r\n0|Berlin\r\n") == b"recId|q\n0|Berlin\n"


_PIECES = st.sampled_from(
    ["|", '"', "\r", "\x00", "\ufeff", "ß", "x", "1", "52.5", ",", "13.4", " ", "-", "here:pds:place:a1"]
)
_LINE = st.lists(_PIECES, max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    header=st.sampled_from(["recId|q", "recId|at", "q|recId|in", "recId|id", "a|b"]),
    service=st.sampled_from([None, "geocode", "revgeocode", "lookup"]),
    lines=st.lists(_LINE, max_size=6),
    crlf=st.booleans(),
)
def test_bytes_fast_path_agrees_with_the_full_check(
    header: str, service: str | None, lines: list[str], crlf: bool
) -> None:
    ending = "\r\n" if crlf else "\n"
    text = [f"{header}{ending}", *(f"{line}{ending}" for line in lines)]

    def outcome(source: list[str] | list[bytes]) -> object:
        checker = InputChecker(service=service)
        try:
            checked = [(c.text, c.header, sorted(p.kind for p in c.problems)) for c in checker.check(source)]
        except InputValidationError as exc:
            return ("refused", str(exc))
        return checked, checker.report.records, checker.report.bytes, checker.counts

    assert outcome([line.encode() for line in text]) == outcome(text)


def test_validate_input_false_uploads_as_given_minus_bom_and_crlf() -> None:
    prepared = prepare_input(
        BOM + b"recId|q\r\n1|Q\xfc\r\n", service="geocode", input_columns=None, delimiter="|", validate=False
    )
    assert prepared.report is None
    with prepared.upload_data() as data:
        assert data.read() == b"recId|q\n1|Q\xfc\n"  # nothing checked, nothing else changed


def test_rows_rendered_as_text_get_a_hint() -> None:
    error = _refused("[{'recId': '1', 'q': 'Berlin'}]")
    assert "is not an existing file" in str(error) and "input=task.output" in str(error)


class _Pipe(io.RawIOBase):
    """A stream that cannot seek (a pipe, some object stores): the chunked reader is used."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(len(buffer), 7))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_unseekable_streams_read_the_same_lines() -> None:
    plain = b"recId|q\r\n1|a\n2|b"
    assert list(iter_input_lines(_Pipe(plain), chunk_size=5)) == list(iter_input_lines(io.BytesIO(plain)))
    members = gzip.compress(b"recId|q\n1|a\n") + gzip.compress(b"2|b\n")
    assert b"".join(iter_input_lines(_Pipe(members), chunk_size=5)) == b"recId|q\n1|a\n2|b\n"
    with pytest.raises(InputValidationError, match="ends early"):
        list(iter_input_lines(_Pipe(gzip.compress(BODY * 20)[:-12]), chunk_size=5))
    with pytest.raises(InputValidationError, match="damaged"):
        list(iter_input_lines(_Pipe(gzip.compress(BODY)[:10] + b"\xff" * 20), chunk_size=5))
