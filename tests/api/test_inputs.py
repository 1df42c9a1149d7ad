"""Input validation before upload: HERE's rules, with line numbers and fixes, streaming."""

from __future__ import annotations

import io

import pytest

from airflow_here_batch.api.inputs import (
    InputValidationError,
    iter_input_lines,
    rows_to_lines,
    validate_lines,
)
from airflow_here_batch.api.records import split_record


def test_header_input_is_counted() -> None:
    report = validate_lines(["recId|q\n", "1|Berlin\n", '2|"a|b"\n'], service="geocode")
    assert report.records == 2
    assert report.has_header and report.columns == ["recId", "q"]
    assert report.bytes == len(b'recId|q\n1|Berlin\n2|"a|b"\n')


def test_input_columns_make_first_line_a_record() -> None:
    report = validate_lines(["1|Berlin"], service="geocode", input_columns=["recId", "q"])
    assert report.records == 1 and not report.has_header


def test_default_value_columns_take_no_value() -> None:
    report = validate_lines(["recId|q|limit=5", "1|Berlin"], service="geocode")
    assert report.defaults == {"limit": "5"} and report.records == 1


def test_value_count_mismatch_names_line_and_fix() -> None:
    with pytest.raises(InputValidationError) as info:
        validate_lines(["recId|q", "1|Berlin", "2|Main St|Springfield"], service="geocode")
    assert info.value.line == 3 and info.value.field == "columns"
    assert "input line 3" in str(info.value) and "double quotes" in str(info.value)


def test_wrong_delimiter_is_spotted_in_header() -> None:
    with pytest.raises(InputValidationError, match="input_delimiter=','") as info:
        validate_lines(["recId,q", "1,Berlin"], delimiter="|")
    assert info.value.line == 1


def test_required_column_per_service() -> None:
    with pytest.raises(InputValidationError, match="'at'"):
        validate_lines(["recId|q", "1|x"], service="revgeocode")
    with pytest.raises(InputValidationError, match="'id'"):
        validate_lines(["1|x"], service="lookup", input_columns="recId|q")
    validate_lines(
        ["recId|id", "1|here:pds:place:276u33db-8097f3194e4b411081b761ea9a366776"], service="lookup"
    )
    validate_lines(["recId|qq", "1|city=Berlin"], service="hrn:here:service::olp-here:search-geocode-7")


def test_line_and_recid_limits() -> None:
    with pytest.raises(InputValidationError, match="4096") as info:
        validate_lines(["recId|q", "1|" + "x" * 5000])
    assert info.value.line == 2
    with pytest.raises(InputValidationError, match="recId") as info:
        validate_lines(["recId|q", "r" * 513 + "|Berlin"])
    assert info.value.field == "recId"


def test_record_and_size_limits() -> None:
    lines = ("1|x" for _ in range(10))
    with pytest.raises(InputValidationError, match="more than 5 records") as info:
        validate_lines(lines, input_columns="recId|q", max_records=5)
    assert info.value.line == 6
    with pytest.raises(InputValidationError, match="MB"):
        validate_lines(["recId|q", "1|" + "x" * 100], max_bytes=50)


def test_query_form_lines() -> None:
    report = validate_lines(["q=Berlin&limit=2", "q=Paris"], service="geocode")
    assert report.query_form and report.records == 2
    with pytest.raises(InputValidationError, match="URL query string") as info:
        validate_lines(["q=Berlin", "1|Paris"])
    assert info.value.line == 2
    with pytest.raises(InputValidationError, match="'q' or 'qq'"):
        validate_lines(["at=52,13"], service="geocode")


def test_blank_lines_empty_input_and_bad_quotes() -> None:
    with pytest.raises(InputValidationError, match="blank") as info:
        validate_lines(["recId|q", "", "1|x"])
    assert info.value.line == 2
    with pytest.raises(InputValidationError, match="no records"):
        validate_lines(["recId|q\n"])
    with pytest.raises(InputValidationError, match="cannot be split"):
        validate_lines(["recId|q", '1|"open'])
    with pytest.raises(InputValidationError, match="UTF-8"):
        validate_lines([b"recId|q\n", b"1|\xff\n"])


def test_bad_delimiter_refused() -> None:
    with pytest.raises(InputValidationError, match="input_delimiter"):
        validate_lines(["a"], delimiter="||")


def test_tab_delimiter() -> None:
    assert validate_lines(["recId\tq", "1\tBerlin"], delimiter="\\t").records == 1


def test_streams_without_holding_the_input() -> None:
    consumed = 0

    def gen():
        nonlocal consumed
        yield "recId|q\n"
        for i in range(50_000):
            consumed += 1
            yield f"{i}|street {i}\n"

    assert validate_lines(gen(), service="geocode").records == 50_000
    assert consumed == 50_000


def test_iter_input_lines_binary_bom_and_crlf() -> None:
    stream = io.BytesIO("\ufeffrecId|q\r\n1|Straße\r\n".encode())
    lines = list(iter_input_lines(stream))
    assert lines == [b"\xef\xbb\xbfrecId|q\r\n", "1|Straße\r\n".encode()]
    report = validate_lines(lines, service="geocode")
    assert report.records == 1 and report.bom and report.crlf
    assert not stream.closed


def test_rows_to_lines_round_trip() -> None:
    rows = [{"recId": 1, "q": "Berlin | Mitte"}, {"recId": 2, "q": ""}, {"recId": 3, "q": 1.5}]
    lines = list(rows_to_lines(rows))
    assert lines[0] == "recId|q\n"
    assert split_record(lines[1], "|") == ["1", "Berlin | Mitte"]
    assert split_record(lines[2], "|") == ["2", ""]
    assert split_record(lines[3], "|") == ["3", "1.5"]


def test_rows_to_lines_explicit_columns_and_errors() -> None:
    assert list(rows_to_lines([{"q": "x", "recId": "1"}], columns=["recId", "q"], delimiter=";")) == [
        "recId;q\n",
        "1;x\n",
    ]
    with pytest.raises(InputValidationError, match="keys"):
        list(rows_to_lines([{"q": "x"}, {"q": "y", "extra": 1}]))
    with pytest.raises(InputValidationError, match="not a dict"):
        list(rows_to_lines(["q=x"]))  # type: ignore[list-item]


def test_header_repeating_input_columns_is_refused() -> None:
    with pytest.raises(InputValidationError, match="repeats input_columns") as info:
        validate_lines(["recId|q", "1|Berlin"], input_columns=["recId", "q"])
    assert info.value.line == 1
