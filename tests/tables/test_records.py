"""The pure rules of the table pipeline: mapping, fingerprints, the stored-fingerprint index, result and
error rows, plain names."""

from __future__ import annotations

import pytest

from airflow_here_batch.tables.records import (
    FINGERPRINT_LENGTH,
    REQUEST_PART,
    SCOPE_CURRENT,
    SCOPE_LEGACY,
    SCOPE_OUTPUTS,
    SCOPE_VERSION,
    STATUS_FAILED,
    STATUS_NO_MATCH,
    STATUS_OK,
    FingerprintIndex,
    MappingError,
    RecordMapping,
    ResultLayout,
    StoredRecords,
    normalise_value,
    parse_error_line,
    request_fingerprint,
    scope_state,
    target_columns,
)

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]


def geocode(**kwargs: object) -> RecordMapping:
    return RecordMapping(service="geocode", key_column="id", output_columns=OUT, **kwargs)  # type: ignore[arg-type]


# --- mapping -------------------------------------------------------------------------------------


def test_columns_templates_constants_and_key_make_the_request() -> None:
    mapping = geocode(
        columns={"in": "country"},
        templates={"q": "{street} {number}, {zip} {city}"},
        constants={"lang": "de-DE"},
    )
    row = {
        "street": "Invalidenstraße",
        "number": 116,
        "zip": "10115",
        "city": "Berlin",
        "country": "countryCode:DEU",
    }
    assert mapping.here_columns == ["recId", "in", "q", "lang"]
    assert mapping.request(row, "7") == {
        "recId": "7",
        "in": "countryCode:DEU",
        "q": "Invalidenstraße 116, 10115 Berlin",
        "lang": "de-DE",
    }
    assert mapping.source_columns() == ["id", "country", "street", "number", "zip", "city"]


def test_a_null_in_a_template_is_empty_text_not_none() -> None:
    mapping = geocode(templates={"q": "{street} {number}, {city}"})
    request = mapping.request({"street": "Hauptstraße", "number": None, "city": "Berlin"}, "1")
    assert request["q"] == "Hauptstraße, Berlin"


def test_revgeocode_at_comes_from_lat_lng_and_a_null_position_is_refused_naming_the_key() -> None:
    mapping = RecordMapping(service="revgeocode", key_column="id", at_columns=("lat", "lng"))
    assert mapping.request({"lat": 52.5308, "lng": 13.3847}, "p1")["at"] == "52.5308,13.3847"
    with pytest.raises(MappingError, match=r"key 'p2'.*lat/lng"):
        mapping.request({"lat": None, "lng": 13.0}, "p2")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": {"in": "country"}}, "needs a 'q' or 'qq' column"),
        ({"columns": {"q": "a", "Q": "b"}}, "mapped twice"),
        ({"columns": {"q": "a", "recId": "b"}}, "recId comes from key_column"),
        ({"templates": {"q": "{0} {city}"}}, "name a source column"),
    ],
)
def test_bad_mappings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        geocode(**kwargs)


def test_a_column_the_mapping_names_but_the_query_lacks_is_named() -> None:
    mapping = geocode(columns={"q": "address", "in": "country"})
    assert mapping.check_columns(["ID", "Address", "country"]) == {
        "id": "ID",
        "address": "Address",
        "country": "country",
    }
    with pytest.raises(MappingError, match="no column 'country'") as info:
        mapping.check_columns(["id", "address"])
    assert info.value.column == "country"


# --- fingerprints --------------------------------------------------------------------------------


def test_the_fingerprint_ignores_what_does_not_change_the_request() -> None:
    base = request_fingerprint("geocode", {"recId": "1", "q": "Invalidenstraße 116, Berlin"}, OUT)
    decomposed = "Invalidenstrasse".replace("ss", "ß")
    assert request_fingerprint("geocode", {"recId": "1", "q": f"  {decomposed}  116,\tBerlin "}, OUT) == base
    nfd = "Invalidenstra\u00dfe 116, Berlin".replace("\u00df", "\u00df")
    assert request_fingerprint("geocode", {"recId": "1", "q": nfd}, list(reversed(OUT))) == base
    assert (
        request_fingerprint(
            "geocode", {"recId": "1", "q": "Invalidenstraße 116, Berlin"}, [c.upper() for c in OUT]
        )
        == base
    )
    # NFC vs NFD spelling of the same text
    assert request_fingerprint("geocode", {"recId": "1", "q": "Mu\u0308nchen"}, OUT) == request_fingerprint(
        "geocode", {"recId": "1", "q": "M\u00fcnchen"}, OUT
    )


@pytest.mark.parametrize(
    ("service", "request_", "outputs"),
    [
        ("geocode", {"recId": "1", "q": "Invalidenstraße 117, Berlin"}, OUT),  # the address
        ("geocode", {"recId": "2", "q": "Invalidenstraße 116, Berlin"}, OUT),  # another record
        ("geocode", {"recId": "1", "q": "Invalidenstraße 116, Berlin", "in": "countryCode:DEU"}, OUT),
        ("geocode", {"recId": "1", "q": "Invalidenstraße 116, Berlin", "lang": "de-DE"}, OUT),
        ("geocode", {"recId": "1", "q": "Invalidenstraße 116, Berlin"}, [*OUT, "addressCity"]),
        ("revgeocode", {"recId": "1", "q": "Invalidenstraße 116, Berlin", "at": "1,2"}, OUT),
        ("geocode", {"recId": "1", "qq": "Invalidenstraße 116, Berlin"}, OUT),  # another parameter
    ],
)
def test_the_fingerprint_changes_with_what_changes_the_answer(
    service: str, request_: dict, outputs: list
) -> None:
    base = request_fingerprint("geocode", {"recId": "1", "q": "Invalidenstraße 116, Berlin"}, OUT)
    assert request_fingerprint(service, request_, outputs) != base


def test_the_fingerprint_is_stable_across_processes() -> None:
    # Fixed values: a change here re-sends every stored record; bump FINGERPRINT_VERSION on purpose.
    assert request_fingerprint("geocode", {"recId": "1", "q": "Berlin"}, ["positionLat"]) == (
        "cd3cadfd9e72e447v2.c6daebd97859e"
    )
    assert request_fingerprint("geocode", {"recId": "1", "q": "Berlin"}, ["positionLat"]) == (
        request_fingerprint("geocode", {"recId": "1", "q": " Berlin "}, ["POSITIONLAT"])
    )
    assert len(request_fingerprint("geocode", {"recId": "1", "q": "Berlin"})) == FINGERPRINT_LENGTH == 32


def test_the_request_part_does_not_depend_on_the_output_columns_and_the_scope_tells_them_apart() -> None:
    request = {"recId": "1", "q": "Invalidenstraße 116, Berlin"}
    before = request_fingerprint("geocode", request, OUT)
    after = request_fingerprint("geocode", request, [*OUT, "scoringQueryScore"])
    assert before[:REQUEST_PART] == after[:REQUEST_PART] and before != after
    now = geocode(columns={"q": "address"}).scope
    assert scope_state(before, now) == SCOPE_CURRENT
    assert scope_state(after, now) == SCOPE_OUTPUTS
    assert scope_state(before[:REQUEST_PART] + "v3.0123456789abc", now) == SCOPE_VERSION
    assert scope_state(before[:REQUEST_PART] + "v23.123456789abc", now) == SCOPE_VERSION  # not "v2."
    changed = request_fingerprint("geocode", {**request, "q": "Invalidenstraße 117, Berlin"}, OUT)
    assert changed[:REQUEST_PART] != before[:REQUEST_PART]


def test_version_1_fingerprints_are_recognised() -> None:
    """A table written before version 2 keeps its unchanged records: the version-1 hash (pinned: the
    value earlier releases stored) is recomputed for them."""
    mapping = RecordMapping(
        service="geocode", key_column="recId", columns={"q": "q"}, output_columns=["positionLat"]
    )
    legacy = "29d532e039b1af26ef6c0dc29899b3d7"
    assert mapping.legacy_fingerprint({"recId": "1", "q": " Berlin"}) == legacy
    assert scope_state(legacy, mapping.scope) == SCOPE_LEGACY
    stored = StoredRecords(mapping.scope)
    stored.add("1", legacy)
    assert stored.legacy and stored.code(mapping.fingerprint({"recId": "1", "q": "Berlin"})) is None
    assert stored.code(legacy) == SCOPE_LEGACY


def test_stored_records_give_each_fingerprint_its_code_and_know_the_keys() -> None:
    mapping = geocode(columns={"q": "address"})
    fps = {str(i): mapping.fingerprint({"recId": str(i), "q": f"street {i}"}) for i in range(300)}
    stored = StoredRecords(mapping.scope)
    for rec_id, fp in sorted(fps.items(), key=lambda kv: kv[1], reverse=True):  # any order
        stored.add(rec_id, fp, StoredRecords.EXPIRED if rec_id == "7" else 0)
    stored.add("no-fingerprint", None)
    assert len(stored) == 301 and stored.scopes == [300, 0, 0, 0]
    assert stored.code(fps["1"]) == SCOPE_CURRENT
    assert stored.code(fps["7"]) == SCOPE_CURRENT | StoredRecords.EXPIRED
    assert stored.code(mapping.fingerprint({"recId": "1", "q": "elsewhere"})) is None
    assert stored.has_key("1") and stored.has_key("no-fingerprint") and not stored.has_key("new")


def test_normalise_value() -> None:
    assert normalise_value("  a \u00a0 b\t\nc ") == "a b c"
    assert normalise_value("") == ""


def test_fingerprint_index_in_any_order() -> None:
    fps = [request_fingerprint("geocode", {"recId": str(i), "q": f"street {i}"}) for i in range(500)]
    index = FingerprintIndex()
    ordered = sorted(fps)
    for fp in ordered[:250]:  # as the database returns them
        index.add(fp)
    for fp in reversed(ordered[250:]):  # out of order: sorted on first lookup
        index.add(fp)
    assert len(index) == 500
    assert all(fp in index for fp in fps)
    assert request_fingerprint("geocode", {"recId": "x", "q": "elsewhere"}) not in index
    assert None not in index


# --- rows and SQL --------------------------------------------------------------------------------


def test_target_columns_are_typed_and_named_after_the_output_columns() -> None:
    columns = target_columns([*OUT, "addressCountryCode", "position"])
    names = [c.name for c in columns]
    assert names == [
        "rec_id",
        "status",
        "lat",
        "lng",
        "match_level",
        "address_label",
        "address_country_code",
        "match_quality",
        "accepted",
        "query_score",
        "candidates",
        "error_code",
        "error_message",
        "request_text",
        "request_fingerprint",
        "job_id",
        "geocoded_at",
    ]
    kinds = {c.name: c.kind for c in columns}
    assert kinds["lat"] == kinds["lng"] == "float" and kinds["geocoded_at"] == "timestamp"
    assert (kinds["accepted"], kinds["query_score"], kinds["candidates"]) == ("bool", "float", "int")


def test_result_rows_keep_the_best_match_and_type_the_position() -> None:
    columns = target_columns(OUT)
    header = ["recId", "seqNumber", "seqLength", "positionLat", "positionLng", "addressLabel", "resultType"]
    layout = ResultLayout(header, columns)
    assert layout.values(["1", "1", "2", "52.5", "13.4", "Berlin", "houseNumber"]) == (
        "1",
        STATUS_OK,
        52.5,
        13.4,
        "houseNumber",
        "Berlin",
    )
    assert layout.values(["1", "2", "2", "52.6", "13.5", "Berlin 2", "street"]) is None
    assert layout.values(["2", "1", "0", "", "", "", ""]) == ("2", STATUS_NO_MATCH, None, None, None, None)


def test_result_rows_with_a_compact_position() -> None:
    layout = ResultLayout(
        ["recId", "seqNumber", "seqLength", "position", "addressLabel"],
        target_columns(["position", "addressLabel"]),
    )
    assert layout.values(["9", "1", "1", "(52.53,13.38)", "x"])[:4] == ("9", STATUS_OK, 52.53, 13.38)


def test_error_lines() -> None:
    line = (
        '7|E6001004|{"status":400,"recordId":"7","title":"Bad query","cause":"q is empty",'
        '"action":"x","jobRecord":"7||a|b"}\n'
    )
    assert parse_error_line(line) == ("7", "E6001004", "Bad query: q is empty")
    assert parse_error_line("recId|errorCode|errorMessage\n") is None
    assert parse_error_line('"a|b"|E1|plain text\n') == ("a|b", "E1", "plain text")
    assert parse_error_line("\n") is None
    assert STATUS_FAILED == "failed"


def test_the_fingerprint_merge_follows_the_file_and_bounds_what_it_keeps() -> None:
    from airflow_here_batch.tables.records import FingerprintMerge

    entries = [[str(i), f"fp{i}", f"text{i}"] for i in range(1, 8)]
    merge = FingerprintMerge(entries, window=2)
    assert merge.take("1") == ("text1", "fp1")
    assert merge.take("3") == ("text3", "fp3")  # 2 failed (in the errors report): kept aside
    assert merge.take("2") == ("text2", "fp2")  # ... and found there
    assert merge.take("7") == (None, None)  # beyond the window: missed, 4 and 5 kept aside
    assert merge.take("4") == ("text4", "fp4")
    assert merge.take("9") == (None, None)  # reads 6 and 7, dropping the oldest kept (5)
    assert merge.take("5") == (None, None)
    assert merge.take("7") == ("text7", "fp7")
    assert merge.missed == 3
    assert FingerprintMerge([["1", "fp"]], request_text=None).take("1") == ("", "fp")


@pytest.mark.parametrize(
    "cells",
    [
        ["1", "1", "1", "52.5", "13.25", "Berlin", "DEU", "houseNumber"],
        ["2", "1", "0", "", "", "", "", ""],
        ["3", "1", "1", "x", "13", "Somewhere", "DEU", "street"],
        ["4", "2", "2", "1", "2", "second item", "DEU", "street"],
        ["5", "", "", "1e3", "-0.1"],  # short row: padded
        ["6", "1", "1", "nan", "inf", "odd", "", "place"],
    ],
)
def test_copy_cells_are_the_typed_values_in_copy_text(cells: list[str]) -> None:
    from airflow_here_batch.tables.dialect import copy_value
    from airflow_here_batch.tables.records import ResultLayout, target_columns

    header = "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|addressCountryCode|resultType"
    layout = ResultLayout(header.split("|"), target_columns(["positionLat", "addressLabel", "resultType"]))
    values = layout.values(cells)
    copied = layout.copy_cells(cells)
    assert (copied is None) == (values is None)
    if values is not None:
        assert copied == [copy_value(v) for v in values]
