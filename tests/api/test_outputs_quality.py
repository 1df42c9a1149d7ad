"""Parsed outputs carry the verdict (api/outputs.py): rows, GeoJSON properties, the review file."""

from __future__ import annotations

import io
import json

from airflow_here_batch.api.outputs import (
    REVIEW_HEADER,
    iter_csv_rows,
    iter_records,
    iter_rows,
    with_quality,
    write_geojson,
    write_review,
)
from airflow_here_batch.api.quality import AcceptancePolicy, QualityCounts
from airflow_here_batch.api.records import split_record

RESULTS = [
    "recId|seqNumber|seqLength|positionLat|positionLng|addressCity|resultType|houseNumberType|"
    "scoringQueryScore|scoringFieldScoreCity|scoringFieldScoreStreets",
    "1|1|1|52.5|13.4|Berlin|houseNumber|PA|1.0|1.0|1.0",
    "2|1|3|47.37|8.54|Zurich|street||1.0||1.0",
    "2|2|3|46.94|7.44|Bern|street||1.0||1.0",
    "2|3|3|47.55|7.58|Basel|street||1.0||1.0",
    "3|1|1|||||||",
]


def test_rows_carry_their_records_verdict() -> None:
    counts = QualityCounts()
    review: list = []
    rows = list(with_quality(iter_csv_rows(RESULTS), counts=counts, review=review))
    assert [(r["recId"], r["matchQuality"], r["accepted"], r["candidates"]) for r in rows] == [
        ("1", "exact", True, 1),
        ("2", "ambiguous", False, 3),
        ("2", "ambiguous", False, 3),
        ("2", "ambiguous", False, 3),
        ("3", "no_match", False, 1),
    ]
    assert counts.summary()["verdicts"]["ambiguous"] == 1 and counts.accepted == 1
    assert [(key, verdict, len(items)) for key, verdict, items in review] == [
        ("2", "ambiguous", 3),
        ("3", "no_match", 1),
    ]
    loose = list(with_quality(iter_csv_rows(RESULTS), AcceptancePolicy(allow_ambiguous=True)))
    assert loose[1]["accepted"] is False  # still a street for an input of unknown wording


def test_records_are_consecutive_rows_of_one_key() -> None:
    assert [len(r) for r in iter_records(iter_csv_rows(RESULTS))] == [1, 3, 1]


def test_geojson_properties_and_jsonl_lines() -> None:
    out = io.StringIO()
    written, skipped = write_geojson(with_quality(iter_rows(RESULTS)), out)
    assert (written, skipped) == (4, 1)
    properties = [f["properties"] for f in json.loads(out.getvalue())["features"]]
    assert [p["matchQuality"] for p in properties] == ["exact", "ambiguous", "ambiguous", "ambiguous"]
    item = {
        "resultType": "locality",
        "position": {"lat": 47.3, "lng": 8.5},
        "scoring": {"queryScore": 1.0, "fieldScore": {"city": 1.0}},
    }
    (row,) = with_quality(iter_rows([json.dumps({"recId": "9", "items": [item, item]})]))
    assert (row["matchQuality"], row["candidates"], row["accepted"]) == ("area", 2, False)


def test_the_review_file_lists_the_records_not_accepted() -> None:
    review: list = []
    for _ in with_quality(iter_csv_rows(RESULTS), review=review):
        pass
    out = io.StringIO()
    assert write_review(review, out) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == "|".join(REVIEW_HEADER)
    key, verdict, candidates, chosen, reviewed = split_record(lines[1], "|")
    assert (key, verdict, chosen, reviewed) == ("2", "ambiguous", "", "")
    assert [c["addressCity"] for c in json.loads(candidates)] == ["Zurich", "Bern", "Basel"]
