"""Parsing downloaded results: CSV-like and JSONL rows, positions, GeoJSON."""

from __future__ import annotations

import io
import json

import pytest

from airflow_here_batch.api.outputs import (
    OutputFormatError,
    detect_delimiter,
    feature_collection,
    iter_csv_rows,
    iter_rows,
    row_position,
    write_geojson,
)

CSV = [
    "recId|seqNumber|seqLength|position|address|title\n",
    '1|1|1|(52.5308609,13.3846903)|"Invalidenstraße 116|Berlin"|Invalidenstraße 116\n',
    "2|1|1||Nowhere|\n",
]


def test_csv_rows_with_detected_delimiter() -> None:
    rows = list(iter_csv_rows(CSV))
    assert rows[0]["recId"] == "1"
    assert rows[0]["address"] == "Invalidenstraße 116|Berlin"
    assert rows[1]["title"] == ""
    assert detect_delimiter("recId;seqNumber") == ";"
    assert detect_delimiter("whatever") == "|"


def test_csv_row_with_too_many_values() -> None:
    with pytest.raises(OutputFormatError) as info:
        list(iter_csv_rows(["recId|q\n", "1|a|b\n"]))
    assert info.value.line == 2


def test_jsonl_rows_and_autodetect() -> None:
    lines = [b'{"recId": "1", "position": {"lat": 1.5, "lng": 2.5}}\n', b"\n", b'{"recId": "2"}\n']
    rows = list(iter_rows(lines))
    assert [r["recId"] for r in rows] == ["1", "2"]
    assert row_position(rows[0]) == (1.5, 2.5)
    assert list(iter_rows([])) == []
    with pytest.raises(OutputFormatError):
        list(iter_rows(["{bad\n"]))


def test_positions_in_every_shape() -> None:
    assert row_position({"positionLat": "52.5", "positionLng": "13.4"}) == (52.5, 13.4)
    assert row_position({"displayCoordinate": "(1,2)"}) == (1.0, 2.0)
    assert row_position({"items": [{"position": {"lat": 3, "lng": 4}}]}) == (3.0, 4.0)
    assert row_position({"position": "(999,2)"}) is None
    assert row_position({"title": "x"}) is None


def test_feature_collection_and_streamed_geojson() -> None:
    rows = list(iter_csv_rows(CSV))
    fc = feature_collection(rows)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    feature = fc["features"][0]
    assert feature["geometry"] == {"type": "Point", "coordinates": [13.3846903, 52.5308609]}
    assert feature["properties"]["recId"] == "1" and "position" not in feature["properties"]
    out = io.StringIO()
    assert write_geojson(iter(rows), out) == (1, 1)
    assert json.loads(out.getvalue()) == fc
    empty = io.StringIO()
    write_geojson([], empty)
    assert json.loads(empty.getvalue()) == {"type": "FeatureCollection", "features": []}
