"""Sans-I/O line format shared by client and emulator."""

from __future__ import annotations

import pytest

from airflow_here_batch.api.records import (
    RecordFormatError,
    decode_delimiter,
    encode_delimiter,
    format_record,
    is_query_form,
    parse_column_descriptor,
    parse_query_form,
    split_record,
)


def test_decode_delimiter() -> None:
    assert decode_delimiter("\\t") == "\t"
    assert decode_delimiter("|") == "|"
    assert encode_delimiter("\t") == "\\t"
    for bad in ("", "||", "ab"):
        with pytest.raises(ValueError):
            decode_delimiter(bad)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a|b|c", ["a", "b", "c"]),
        ("a||c\n", ["a", "", "c"]),
        ('1|"Main St | 5"|x', ["1", "Main St | 5", "x"]),
        ('1|"say ""hi"""|x', ["1", 'say "hi"', "x"]),
        ('1|5" pipe|x', ["1", '5" pipe', "x"]),
        ('"a"', ["a"]),
        ('""|b', ["", "b"]),
    ],
)
def test_split_record(line: str, expected: list[str]) -> None:
    assert split_record(line, "|") == expected


def test_split_record_errors() -> None:
    with pytest.raises(RecordFormatError):
        split_record('1|"unclosed', "|")
    with pytest.raises(RecordFormatError):
        split_record('1|"closed"junk|x', "|")


@pytest.mark.parametrize("delimiter", ["|", ",", ";", "\t", ":"])
def test_format_split_round_trip(delimiter: str) -> None:
    values = ["1", f"a{delimiter}b", '"quoted"', 'in"side', "", "plain"]
    assert split_record(format_record(values, delimiter), delimiter) == values


def test_format_record_none_and_numbers() -> None:
    assert format_record([None, 1, 2.5], "|") == "|1|2.5"


def test_query_form() -> None:
    line = "q=Invalidenstra%C3%9Fe%20116&in=countryCode:DEU&limit=20"
    assert is_query_form(line, "|")
    assert parse_query_form(line) == {"q": "Invalidenstraße 116", "in": "countryCode:DEU", "limit": "20"}
    assert not is_query_form("recId|q|limit=5", "|")
    assert not is_query_form("1|Berlin", "|")


def test_column_descriptor_defaults() -> None:
    d = parse_column_descriptor("recId|q|limit=5", "|")
    assert d.columns == ["recId", "q"] and d.defaults == {"limit": "5"}
    assert d.bind(["1", "Berlin"]) == {"recId": "1", "q": "Berlin", "limit": "5"}
    assert d.bind(["1"]) is None
    with pytest.raises(ValueError):
        parse_column_descriptor("recId||q", "|")
