"""Input parsing and output formatting over HTTP: gzip both ways, descriptors, delimiters, quoting,
limits per record, URL-query lines, the three fake backends, csv columns and jsonl filters."""

from __future__ import annotations

import gzip
import json

import requests

from airflow_here_batch.api.records import split_record

from .conftest import LOOKUP, REVGEOCODE, Client, assert_error


def rows(text: str, delimiter: str = "|") -> list[dict[str, str]]:
    lines = text.splitlines()
    header = split_record(lines[0], delimiter)
    return [dict(zip(header, split_record(line, delimiter), strict=True)) for line in lines[1:]]


def test_gzip_upload_and_gzip_download(client: Client) -> None:
    job_id, body = client.run("recId|q\n1|Berlin\n2|Hamburg\n", gz=True)
    assert body["records"]["succeeded"] == 2
    raw = requests.get(
        f"{client.base}/batch/jobs/{job_id}/results",
        params={"apiKey": "k"},
        headers={"Accept-Encoding": "gzip"},
        stream=True,
        timeout=10,
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    assert raw.headers["Content-Type"].startswith("text/plain")
    assert raw.headers["Content-Disposition"] == f'attachment; filename="{job_id}-results.txt"'
    compressed = raw.raw.read(decode_content=False)
    text = gzip.decompress(compressed).decode()
    assert text.splitlines()[1].startswith("1|1|1|52.")
    plain = client.download(job_id, **{"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.text == text


def test_bad_gzip_is_400(client: Client) -> None:
    resp = client.session.post(
        f"{client.base}/batch/jobs",
        params={"apiKey": "k", "serviceHrn": "hrn:here:service::olp-here:search-geocode-7"},
        data=b"not gzip at all",
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    assert_error(resp, 400, "E6004004")


def test_geocode_places_results_in_the_right_city(client: Client) -> None:
    job_id, _ = client.run(
        "recId|q\n1|Invalidenstraße 116 10115 Berlin\n2|10 Downing Street, London\n"
        "3|Tokyo\n4|Sydney, Australia\n"
    )
    out = {r["recId"]: r for r in rows(client.download(job_id).text)}
    assert abs(float(out["1"]["positionLat"]) - 52.52) < 0.1 and out["1"]["addressCity"] == "Berlin"
    assert out["1"]["addressStreet"] == "Invalidenstraße" and out["1"]["addressHouseNumber"] == "116"
    assert out["2"]["addressCountryCode"] == "GBR" and abs(float(out["2"]["positionLng"]) + 0.13) < 0.1
    assert out["3"]["addressCountryCode"] == "JPN" and out["4"]["addressCountryCode"] == "AUS"
    again_id, _ = client.run("recId|q\n1|Invalidenstraße 116 10115 Berlin\n")
    assert rows(client.download(again_id).text)[0] == out["1"]  # deterministic


def test_input_columns_win_over_header_and_generated_recids(client: Client) -> None:
    # header names the columns differently; inputColumns wins; the header line is still recognised
    job_id, body = client.run("q|limit\nBerlin|1\nParis|1\n", inputColumns="q|limit")
    assert body["records"]["total"] == 2
    out = rows(client.download(job_id).text)
    assert [r["recId"] for r in out] == ["1", "2"]  # generated: record ordinal
    job_id, body = client.run("Berlin\nParis\nRome\n", inputColumns="q")  # no header at all
    assert body["records"]["total"] == 3
    assert [r["addressCity"] for r in rows(client.download(job_id).text)] == ["Berlin", "Paris", "Rome"]


def test_default_value_columns_and_limit(client: Client) -> None:
    job_id, _ = client.run("recId|q|limit=3\n1|Berlin\n")
    out = rows(client.download(job_id).text)
    assert [(r["seqNumber"], r["seqLength"]) for r in out] == [("1", "3"), ("2", "3"), ("3", "3")]


def test_tab_delimiter_quoting_and_output_delimiter(client: Client) -> None:
    body = 'recId\tq\n"a\tb"\tBerlin\n2\t"Paris"\n'
    job_id, done = client.run(
        body, inputDelimiter="\\t", outputDelimiter=",", outputColumns="addressLabel,position"
    )
    assert done["records"]["valid"] == 2
    text = client.download(job_id).text
    lines = text.splitlines()
    assert lines[0] == "recId,seqNumber,seqLength,addressLabel,position"
    first = split_record(lines[1], ",")
    assert first[0] == "a\tb" and lines[1].count('"') >= 2  # label contains commas -> quoted
    assert first[4].startswith("(52.") and first[4].endswith(")")
    assert split_record(lines[2], ",")[3].endswith("Paris, France")


def test_output_columns_names_variants_and_unknown(client: Client) -> None:
    job_id, _ = client.run(
        "recId|q\n1|Berlin\n", outputColumns="ADDRESS.city|positionlat|bogusName|recId|access"
    )
    header = client.download(job_id).text.splitlines()[0]
    assert header == "recId|seqNumber|seqLength|addressCity|positionLat|access"


def test_record_limits_go_to_errors_report(client: Client) -> None:
    long_line = "2|" + "x" * 4100
    long_recid = "r" * 513 + "|Berlin"
    job_id, done = client.run(f"recId|q\n1|Berlin\n{long_line}\n{long_recid}\n4|a|b\n5|Paris\n")
    r = done["records"]
    assert r == {
        "total": 5,
        "valid": 2,
        "invalid": 3,
        "processed": 2,
        "pending": 0,
        "succeeded": 2,
        "failed": 0,
    }
    assert done["errorsHref"].endswith("/errors")
    errors = client.download(job_id, "errors").text.splitlines()
    assert errors[0] == "recId|errorCode|errorMessage"
    codes = [line.split("|", 2)[1] for line in errors[1:]]
    assert codes == ["E6001001", "E6001002", "E6001003"]
    message = json.loads(errors[3].split("|", 2)[2])
    assert set(message) == {"status", "recordId", "title", "cause", "action", "jobRecord"}
    assert message["recordId"] == "4" and message["jobRecord"] == "4|a|b"


def test_backend_failures(client: Client) -> None:
    job_id, done = client.run("recId|q\n1|\n2|Berlin\n")
    assert done["records"]["failed"] == 1 and done["records"]["succeeded"] == 1
    err = client.download(job_id, "errors").text.splitlines()[1]
    assert err.startswith("1|E6001004|")
    job_id, done = client.run("recId|at\n1|not-a-coordinate\n2|52.5308609,13.3846903\n", service=REVGEOCODE)
    assert done["records"]["failed"] == 1
    job_id, done = client.run("recId|id\n1|unknown-id\n", service=LOOKUP)
    assert done["records"]["failed"] == 1 and done["resultsHref"] == ""
    assert client.download(job_id).status_code == 204


def test_revgeocode_answers_near_at(client: Client) -> None:
    job_id, _ = client.run("recId|at|limit\n1|48.8584,2.2945|2\n", service=REVGEOCODE)
    out = rows(client.download(job_id).text)
    assert list(out[0])[:6] == [
        "recId",
        "seqNumber",
        "seqLength",
        "displayCoordinateLat",
        "displayCoordinateLng",
        "distance",
    ]
    assert len(out) == 2 and out[0]["addressCity"] == "Paris"
    assert abs(float(out[0]["displayCoordinateLat"]) - 48.8584) < 0.01
    assert int(out[0]["distance"]) < 200


def test_geocode_then_lookup_round_trip(client: Client) -> None:
    job_id, _ = client.run("recId|q\n1|Vienna\n", outputColumns="id|addressLabel")
    geo = rows(client.download(job_id).text)[0]
    job_id, _ = client.run(f"recId|id\n7|{geo['id']}\n8|here:pds:place:276u33db-abc\n", service=LOOKUP)
    out = rows(client.download(job_id).text)
    assert list(out[0])[:3] == ["recId", "displayCoordinateLat", "displayCoordinateLng"]  # no seq columns
    assert out[0]["addressLabel"] == geo["addressLabel"]
    assert out[1]["recId"] == "8" and out[1]["addressLabel"]


def test_query_form_lines(client: Client) -> None:
    job_id, done = client.run(
        "q=Invalidenstra%C3%9Fe%20116%2010115%20Berlin&in=countryCode:DEU&limit=2\nrecId=x9&q=Madrid\n"
    )
    assert done["records"]["total"] == 2
    out = rows(client.download(job_id).text)
    assert [r["recId"] for r in out] == ["1", "1", "x9"]
    assert out[0]["addressCity"] == "Berlin" and out[2]["addressCity"] == "Madrid"


def test_jsonl_output_filter(client: Client) -> None:
    job_id, _ = client.run(
        "recId|q|limit\n1|Berlin|2\n",
        outputType="jsonl",
        outputFilter="title,address.city,access.lat,position,nope.x",
    )
    docs = [json.loads(line) for line in client.download(job_id).text.splitlines()]
    assert len(docs) == 1 and docs[0]["recId"] == "1" and len(docs[0]["items"]) == 2
    item = docs[0]["items"][0]
    assert set(item) == {"title", "address", "access", "position"}
    assert item["address"] == {"city": "Berlin"} and set(item["access"][0]) == {"lat"}
    job_id, _ = client.run("recId|q\n1|Berlin\n", outputType="jsonl")
    full = json.loads(client.download(job_id).text)
    assert {"title", "id", "address", "position", "resultType"} <= set(full["items"][0])


def test_downloads_before_end_and_when_empty(client: Client, emu) -> None:  # type: ignore[no-untyped-def]
    emu.admin.settings(records_per_second=0)
    job_id = client.create("recId|q\n1|Berlin\n").json()["id"]
    client.wait(job_id, "inProgress")
    assert_error(client.download(job_id), 404, "E6004042")
    assert_error(client.download(job_id, "errors"), 404)
    emu.admin.settings(records_per_second=float("inf"))
    done = client.wait(job_id, "completed")
    assert done["errorsHref"] == ""
    empty = client.download(job_id, "errors")
    assert empty.status_code == 204 and empty.content == b""


def test_empty_lines_are_skipped(client: Client) -> None:
    _, done = client.run("recId|q\n\n1|Berlin\n\n2|Paris\n")
    assert done["records"]["total"] == 2 and done["records"]["succeeded"] == 2


def test_lean_items_format_like_full_items() -> None:
    """The fast path (items without id/access/mapView) must not change any output."""
    from airflow_here_batch.emulator.geocoder import call_backend
    from airflow_here_batch.emulator.output import CsvFormatter

    for service, params in (
        ("geocode", {"q": "Hauptstraße 5, 10115 Berlin", "limit": "3"}),
        ("revgeocode", {"at": "48.85,2.35", "limit": "2"}),
        ("lookup", {"id": "here:pds:place:1"}),
    ):
        fmt = CsvFormatter(service, None, ",")
        assert fmt.lean
        full, lean = call_backend(service, dict(params)), call_backend(service, dict(params), lean=True)
        assert fmt.payload(lean) == fmt.payload(full)
    assert not CsvFormatter("geocode", ["id"], "|").lean
