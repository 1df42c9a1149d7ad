"""The emulator answers with the variety of real geocoding, in HERE's shapes (shared doc §17), over HTTP:
a street in several towns, town-only and street-only matches, interpolated numbers, scores below 1,
several candidates with ``limit`` > 1; and each of those reads as its quality verdict."""

from __future__ import annotations

import collections
import json
from typing import Any

from airflow_here_batch.api.outputs import iter_csv_rows, iter_jsonl_rows, with_quality
from airflow_here_batch.api.quality import QUALITY_OUTPUT_COLUMNS, QualityCounts, Verdict
from airflow_here_batch.emulator import geocoder
from airflow_here_batch.emulator.fastpath import GeocodeFastPath
from airflow_here_batch.emulator.output import CsvFormatter
from tests.emulator.conftest import Client

COLUMNS = "|".join(["addressLabel", *QUALITY_OUTPUT_COLUMNS])


def _records(client: Client, body: str, **params: Any) -> dict[str, list[dict[str, Any]]]:
    job_id, _ = client.run(body, outputColumns=COLUMNS, **params)
    by_record: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in with_quality(iter_csv_rows(client.download(job_id).text.splitlines())):
        by_record[row["recId"]].append(row)
    return by_record


def test_a_street_in_three_towns_comes_back_three_times_equally_scored(client: Client) -> None:
    out = _records(client, "recId|q|in|limit\n1|Helvetiaplatz|countryCode:CHE|3\n")["1"]
    assert [r["addressCity"] for r in out] == ["Zurich", "Bern", "Basel"]
    assert {r["scoringQueryScore"] for r in out} == {"1.0"}
    assert {r["resultType"] for r in out} == {"street"} and not any(r["scoringFieldScoreCity"] for r in out)
    assert {(r["matchQuality"], r["accepted"], r["candidates"]) for r in out} == {("ambiguous", False, 3)}


def test_every_kind_of_match_and_its_verdict(client: Client) -> None:
    body = (
        "recId|q|in|limit\n"
        "exact|Chausseestraße 166, 10115 Berlin|countryCode:DEU|1\n"
        "town|Zürich|countryCode:CHE|1\n"
        "street|Helvetiaplatz, Bern|countryCode:CHE|1\n"
        "same|Hauptstraße 12|countryCode:DEU|1\n"
        "lisbon|Rua Augusta 157, 1100-148 Lisboa|countryCode:PRT|1\n"
        "several|Invalidenstraße 116, 10115 Berlin|countryCode:DEU|3\n"
        "empty||countryCode:DEU|1\n"
    )
    out = _records(client, body)
    first = {key: rows[0] for key, rows in out.items()}
    assert first["exact"]["resultType"] == "houseNumber" and first["exact"]["houseNumberType"] == "PA"
    assert first["exact"]["matchQuality"] == "exact"
    assert (first["town"]["resultType"], first["town"]["matchQuality"]) == ("locality", "area")
    assert (first["street"]["resultType"], first["street"]["matchQuality"]) == ("street", "street")
    assert first["same"]["matchQuality"] == "ambiguous"  # no town: a street of six German cities
    # "Rua Augusta" in Lisbon is one the emulator does not find: the town only, scored below 1.
    assert (first["lisbon"]["resultType"], first["lisbon"]["scoringQueryScore"]) == ("locality", "0.62")
    assert [r["scoringQueryScore"] for r in out["several"]] == ["1.0", "0.85", "0.7"]
    assert out["several"][0]["matchQuality"] == "exact"  # the others are clearly worse: not ambiguous
    assert "empty" not in out  # in the errors report


def test_interpolated_numbers_and_spelling_variants_exist() -> None:
    """Per street and town, some streets have no point addresses, some match a variant (scores < 1)."""
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    for city in geocoder.CITIES:
        for street in city.streets:
            (item,) = geocoder.geocode({"q": f"{street} 7, {city.name}"})
            seen[(item.get("houseNumberType", item["resultType"]), str(item["scoring"]["queryScore"]))] += 1
    assert seen[("PA", "1.0")] and seen[("interpolated", "1.0")] and seen[("PA", "0.91")]
    assert seen[("locality", "0.62")]


def test_jsonl_items_carry_the_same_fields(client: Client) -> None:
    job_id, _ = client.run("recId|q|limit\n1|Helvetiaplatz 4|2\n", outputType="jsonl")
    (doc,) = [json.loads(line) for line in client.download(job_id).text.splitlines()]
    item = doc["items"][0]
    assert item["resultType"] == "houseNumber" and item["houseNumberType"] in ("PA", "interpolated")
    assert item["scoring"]["fieldScore"] == {"streets": [1.0], "houseNumber": 1.0}
    counts = QualityCounts()
    rows = list(with_quality(iter_jsonl_rows([json.dumps(doc)]), counts=counts))
    assert rows[0]["matchQuality"] == Verdict.AMBIGUOUS.value and counts.by_verdict["ambiguous"] == 1


def test_the_fast_path_answers_the_quality_columns_as_the_normal_path() -> None:
    fmt = CsvFormatter("geocode", ["addressLabel", *QUALITY_OUTPUT_COLUMNS, "localityType"], "|")
    fast = GeocodeFastPath(fmt)
    assert fmt.lean  # scoring is in lean items: the fast path applies
    queries = [
        "Chausseestraße 166, 10115 Berlin",
        "Helvetiaplatz 4",
        "Rua Augusta 157, 1100-148 Lisboa",
        "Hauptstraße 12",
        "Limmatquai 19, 8001 Zürich",
        "Zürich 8001",
    ]
    used = 0
    for q in queries:
        for in_value in ("", "countryCode:CHE", "countryCode:DEU"):
            params = {"q": q, "in": in_value}
            tails = fast.payload(dict(params))
            if tails is not None:
                used += 1
                assert tails == fmt.payload(geocode_lean(params)), params
    assert used >= 10


def geocode_lean(params: dict[str, str]) -> list[dict[str, Any]]:
    return geocoder.geocode(dict(params), lean=True)
