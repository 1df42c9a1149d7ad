"""The quality verdict (api/quality.py) from HERE-shaped answers: GS7 items as HERE documents them (JSONL
items, shared doc §17) and as column output flattens them (§9), plus the acceptance policy and the gate."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_here_batch.api.outputs import iter_csv_rows, iter_jsonl_rows
from airflow_here_batch.api.protocol import JobOptions
from airflow_here_batch.api.quality import (
    DEFAULT_POLICY,
    QUALITY_OUTPUT_COLUMNS,
    RESULT_TYPE_VERDICT,
    AcceptancePolicy,
    Candidate,
    QualityCounts,
    RowClassifier,
    Verdict,
    candidate_from_row,
    classify,
    input_names_house_number,
    judge,
    quality_output_columns,
)
from airflow_here_batch.tables.records import request_fingerprint

FULL_FIELDS = {"city": 1.0, "streets": [1.0], "houseNumber": 1.0}
STREET_FIELDS = {"city": 1.0, "streets": [1.0]}


def _item(
    result_type: str = "houseNumber",
    number_type: str | None = "PA",
    score: float = 1.0,
    fields: dict[str, Any] | None = None,
    city: str = "Zürich",
    lat: float = 47.3769,
    lng: float = 8.5417,
) -> dict[str, Any]:
    """One GS7 item as HERE documents it (shared doc §17)."""
    item: dict[str, Any] = {
        "title": f"Somewhere, {city}",
        "resultType": result_type,
        "address": {"label": f"Somewhere, {city}", "city": city, "countryCode": "CHE"},
        "position": {"lat": lat, "lng": lng},
        "scoring": {
            "queryScore": score,
            "fieldScore": fields if fields is not None else dict(FULL_FIELDS),
        },
    }
    if number_type:
        item["houseNumberType"] = number_type
    return item


def _jsonl(*items: dict[str, Any]) -> list[Candidate]:
    """The candidates of one JSONL line ``{"recId", "items": [...]}``."""
    import json

    (row,) = iter_jsonl_rows([json.dumps({"recId": "1", "items": list(items)})])
    return [candidate_from_row(i) for i in row["items"]]


HELVETIAPLATZ = [
    _item("street", None, 1.0, {"streets": [1.0]}, "Zürich", 47.3769, 8.5417),
    _item("street", None, 1.0, {"streets": [1.0]}, "Bern", 46.9481, 7.4474),
    _item("street", None, 1.0, {"streets": [1.0]}, "Basel", 47.5581, 7.5877),
]


@pytest.mark.parametrize(
    ("items", "request_text", "verdict", "accepted"),
    [
        ([_item()], "Limmatquai 19, 8001 Zürich", Verdict.EXACT, True),
        ([_item(number_type="interpolated")], "Limmatquai 19, Zürich", Verdict.INTERPOLATED, True),
        ([_item(number_type=None)], "Limmatquai 19, Zürich", Verdict.INTERPOLATED, True),  # no PA claimed
        ([_item("street", None, 1.0, STREET_FIELDS)], "Limmatquai, Zürich", Verdict.STREET, True),
        ([_item("street", None, 0.9, STREET_FIELDS)], "Limmatquai 19, Zürich", Verdict.STREET, False),
        ([_item("locality", None, 1.0, {"city": 1.0})], "Zürich", Verdict.AREA, True),
        ([_item("locality", None, 0.62, {"city": 1.0})], "Nowhere 12, Zürich", Verdict.AREA, False),
        # an input of unknown wording counts as naming a house number
        ([_item("postalCodePoint", None, 1.0, {"postalCode": 1.0})], None, Verdict.AREA, False),
        (HELVETIAPLATZ, "Helvetiaplatz", Verdict.AMBIGUOUS, False),  # three towns, all scored 1.0
        (HELVETIAPLATZ[:1], "Helvetiaplatz", Verdict.AMBIGUOUS, False),  # limit=1: no town in fieldScore
        ([_item(score=0.5)], "Limmatquai 19, Zürich", Verdict.EXACT, False),  # below queryScore 0.8
    ],
)
def test_each_verdict_from_geocoding_items(
    items: list[dict[str, Any]], request_text: str | None, verdict: Verdict, accepted: bool
) -> None:
    quality = judge(_jsonl(*items), request_text=request_text)
    assert (quality.verdict, quality.accepted) == (verdict, accepted)
    assert quality.candidates == len(items)


def test_no_match_and_failed() -> None:
    assert judge([]).verdict is Verdict.NO_MATCH
    assert judge([Candidate("houseNumber", "PA", 1.0)]).verdict is Verdict.NO_MATCH  # no position
    assert judge([], failed=True) == (Verdict.FAILED, False, None, 0)


def test_column_output_reads_like_the_items() -> None:
    """The same answers as flattened columns (``scoringFieldScoreStreets`` a ``+``-joined list)."""
    header = "recId|seqNumber|seqLength|positionLat|positionLng|addressCity|resultType|houseNumberType|"
    header += "scoringQueryScore|scoringFieldScoreCity|scoringFieldScoreStreets|scoringFieldScoreHouseNumber"
    lines = [
        header,
        "1|1|1|47.37|8.54|Zürich|houseNumber|PA|1.0|1.0|1.0+0.9|1.0",
        "2|1|2|47.37|8.54|Zürich|street||1.0||1.0|",
        "2|2|2|46.94|7.44|Bern|street||1.0||1.0|",
    ]
    rows = list(iter_csv_rows(lines))
    first = candidate_from_row(rows[0])
    assert first.field_scores == {"city": 1.0, "streets": 0.9, "houseNumber": 1.0}  # the weakest street
    assert classify([first]) is Verdict.EXACT
    assert classify([candidate_from_row(r) for r in rows[1:]]) is Verdict.AMBIGUOUS
    classifier = RowClassifier(header.split("|"))
    cells = [line.split("|") for line in lines[1:]]
    assert classifier.judge(cells[:1], True, "x 1") == judge([first], request_text="x 1")
    assert classifier.judge(cells[1:], True, "x").verdict is Verdict.AMBIGUOUS


def test_close_scores_in_one_place_are_not_ambiguous() -> None:
    near = _item(lat=47.37691)  # a metre away, same town: one place
    other = _item(score=0.7, city="Bern", lat=46.9)  # another town, but clearly worse
    assert classify(_jsonl(_item(), near)) is Verdict.EXACT
    assert classify(_jsonl(_item(), other)) is Verdict.EXACT


def test_unknown_result_types_are_read_as_areas() -> None:
    assert RESULT_TYPE_VERDICT["houseNumber"] is Verdict.INTERPOLATED  # refined by houseNumberType
    assert classify(_jsonl(_item("somethingNew", None))) is Verdict.AREA


def test_without_a_result_type_the_address_decides() -> None:
    row = {"recId": "1", "positionLat": "1", "positionLng": "2", "addressHouseNumber": "5"}
    assert classify([candidate_from_row(row)]) is Verdict.INTERPOLATED
    del row["addressHouseNumber"]
    assert classify([candidate_from_row({**row, "addressStreet": "Main St"})]) is Verdict.STREET
    assert classify([candidate_from_row(row)]) is Verdict.AREA


def test_the_policy_is_one_argument() -> None:
    loose = AcceptancePolicy.of(
        {"allow_ambiguous": True, "min_scores": {"queryScore": 0.5, "houseNumber": 1.0}}
    )
    assert judge(_jsonl(*HELVETIAPLATZ), loose, request_text="Helvetiaplatz").accepted
    assert not judge(_jsonl(*HELVETIAPLATZ), request_text="Helvetiaplatz").accepted
    weak_number = _item(fields={"city": 1.0, "houseNumber": 0.5})
    assert not judge(_jsonl(weak_number), loose, request_text="x 1").accepted
    assert judge(_jsonl(_item("locality", None)), AcceptancePolicy(match_input_precision=False)).accepted
    assert AcceptancePolicy.of(None) is DEFAULT_POLICY
    assert DEFAULT_POLICY.as_dict()["accepted"] == ["area", "exact", "interpolated", "street"]
    with pytest.raises(ValueError, match="not queryScore or a fieldScore field"):
        AcceptancePolicy(min_scores={"quality": 0.5})
    with pytest.raises(ValueError, match="between 0 and 1"):
        AcceptancePolicy(min_scores={"queryScore": 2})
    with pytest.raises(ValueError):
        AcceptancePolicy(accepted=["perfect"])


_TYPES = st.sampled_from([*RESULT_TYPE_VERDICT, "", "other"])
_SCORES = st.one_of(st.none(), st.floats(0, 1))


@st.composite
def _candidates(draw: Any) -> list[Candidate]:
    count = draw(st.integers(1, 3))
    out = []
    for _ in range(count):
        names = st.sampled_from(["city", "streets", "houseNumber", "postalCode"])
        fields = draw(st.dictionaries(names, st.floats(0, 1)))
        out.append(
            Candidate(
                draw(_TYPES),
                draw(st.sampled_from(["PA", "interpolated", ""])),
                draw(_SCORES),
                fields,
                draw(st.floats(-80, 80)),
                draw(st.floats(-170, 170)),
                draw(st.sampled_from(["", "Zürich", "Bern"])),
            )
        )
    return out


@settings(max_examples=300, deadline=None)
@given(_candidates(), st.text(max_size=20))
def test_the_default_never_accepts_area_or_ambiguous_for_a_street_address(
    candidates: list[Candidate], street: str
) -> None:
    quality = judge(candidates, request_text=f"{street} 12, Zürich")
    if quality.verdict in (Verdict.AREA, Verdict.AMBIGUOUS, Verdict.STREET):
        assert not quality.accepted
    if quality.accepted:  # and nothing is accepted without HERE's queryScore
        assert candidates[0].query_score is not None and candidates[0].query_score >= 0.8


@settings(max_examples=200, deadline=None)
@given(_candidates(), st.sampled_from(["", "Helvetiaplatz", "Limmatquai 3"]))
def test_the_fast_classifier_agrees_with_judge(candidates: list[Candidate], text: str) -> None:
    """RowClassifier's memoised answers equal judge's, for records of one candidate (twice: memo hit)."""
    best = candidates[0]
    fields = ("city", "streets", "houseNumber", "postalCode")
    header = [
        *("recId", "seqNumber", "seqLength", "positionLat", "positionLng", "addressCity", "resultType"),
        *("houseNumberType", "scoringQueryScore"),
        *(f"scoringFieldScore{f[0].upper()}{f[1:]}" for f in fields),
    ]
    fs = best.field_scores
    cells = [
        *("1", "1", "1", repr(best.lat), repr(best.lng), best.city, best.result_type, best.house_number_type),
        "" if best.query_score is None else repr(best.query_score),
        *("" if fs.get(f) is None else repr(fs[f]) for f in fields),
    ]
    classifier = RowClassifier(header)
    parsed = candidate_from_row(dict(zip(header, cells, strict=True)))
    for _ in range(2):
        assert classifier.judge([cells], True, text or None) == judge([parsed], request_text=text or None)


def test_house_numbers_in_requests() -> None:
    assert input_names_house_number("Limmatquai 19, 8001 Zürich")
    assert input_names_house_number("12a Baker Street")
    assert input_names_house_number("Helvetiaplatz, 8004 Zürich") is False  # a postal code is no number
    assert input_names_house_number("") is None and input_names_house_number(None) is None


def test_counts_and_the_gate() -> None:
    counts = QualityCounts()
    judged = [(Verdict.EXACT, True)] * 7 + [(Verdict.AMBIGUOUS, False), (Verdict.FAILED, False)]
    for verdict, accepted in judged:
        counts.add(verdict, accepted)
    assert counts.summary() == {
        "records_accepted": 7,
        "records_not_accepted": 2,
        "verdicts": {
            "exact": 7,
            "interpolated": 0,
            "street": 0,
            "area": 0,
            "ambiguous": 1,
            "no_match": 0,
            "failed": 1,
        },
    }
    assert counts.gate(0.75) is None and counts.gate(None) is None
    message = counts.gate(0.9)
    assert message is not None
    assert "7 of 9 accepted (77.8 %); exact=7 ambiguous=1 failed=1, below the bound of 90.0 %" in message
    assert QualityCounts().gate(0.9) is None  # nothing judged, nothing to measure
    with pytest.raises(ValueError, match="between 0 and 1"):
        counts.gate(90)


def test_the_verdicts_columns_are_asked_for_without_changing_fingerprints() -> None:
    named = ["positionLat", "positionLng", "addressLabel", "resultType"]
    sent = JobOptions(output_columns=named).to_query()["outputColumns"].split("|")
    assert sent[:4] == named and set(QUALITY_OUTPUT_COLUMNS) <= set(sent)
    assert len(sent) == len(set(c.lower() for c in sent))  # nothing asked twice
    assert quality_output_columns([]) == []  # HERE's defaults stay HERE's defaults
    assert "outputColumns" not in JobOptions().to_query()
    for options in (JobOptions(service="revgeocode", output_columns=named),
                    JobOptions(output_columns=named, quality_columns=False)):
        assert options.to_query()["outputColumns"] == "|".join(named)
    # The fingerprint covers the columns the user named, as before: nothing re-sent after an upgrade.
    request = {"recId": "1", "q": "Limmatquai 19, Zürich"}
    mine = request_fingerprint("geocode", request, named)
    assert mine == request_fingerprint("geocode", request, named[::-1])
    assert mine != request_fingerprint("geocode", request, sent)


def test_the_documented_example_item() -> None:
    """Shared doc §17's item, as public clients show it: a point address scored 0.95."""
    item = {
        "resultType": "houseNumber",
        "houseNumberType": "PA",
        "position": {"lat": 52.53086, "lng": 13.38469},
        "address": {"city": "Berlin", "street": "Invalidenstraße", "houseNumber": "116"},
        "scoring": {"queryScore": 0.95, "fieldScore": {"city": 1.0, "streets": [0.9], "houseNumber": 1.0}},
    }
    assert judge(_jsonl(item), request_text="Invalidenstraße 116, Berlin") == (Verdict.EXACT, True, 0.95, 1)
