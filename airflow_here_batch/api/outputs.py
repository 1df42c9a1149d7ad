"""Parsing downloaded results, sans I/O: CSV-like or JSONL lines into rows, rows into GeoJSON.

HERE's column output (``outputType=csv``) starts with a header whose first column is always ``recId``
(shared doc §9), so the delimiter can be read from the header: it is the character after ``recId``.
Values holding the delimiter are wrapped in ``"`` (read with :func:`~airflow_here_batch.api.records.
split_record`). JSONL output (``outputType=jsonl``) is one JSON document per line.

Positions come in several shapes, all understood by :func:`row_position`:

* ``positionLat`` / ``positionLng`` columns (also ``displayCoordinateLat``/``…Lng``, ``accessLat``/``…Lng``);
* a compact ``position`` (or ``displayCoordinate``) column: ``(52.5308609,13.3846903)``;
* a JSONL ``position`` object: ``{"lat": 52.53, "lng": 13.38}`` (also inside ``items[0]``).

Everything streams: rows are yielded one at a time, GeoJSON is written feature by feature.

**Quality.** :func:`with_quality` adds each record's verdict (:mod:`airflow_here_batch.api.quality`) to
its rows: ``matchQuality``, ``accepted`` and ``candidates`` (the record's item count), so ``records``,
GeoJSON properties and :func:`write_review` (the review file of the records not accepted) carry it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from airflow_here_batch.api.records import format_record, split_record

__all__ = [
    "QUALITY_FIELDS",
    "REVIEW_HEADER",
    "OutputFormatError",
    "detect_delimiter",
    "feature_collection",
    "iter_csv_rows",
    "iter_jsonl_rows",
    "iter_records",
    "iter_rows",
    "row_position",
    "row_to_feature",
    "with_quality",
    "write_geojson",
    "write_review",
]

#: The keys :func:`with_quality` adds to each row.
QUALITY_FIELDS = ("matchQuality", "accepted", "candidates")
#: The review file's header (``|``-delimited, HERE's quoting): the key, the verdict, the top candidates
#: as JSON, and two columns for a person (the candidate chosen, when).
REVIEW_HEADER = ("recId", "matchQuality", "candidates", "chosenCandidate", "reviewedAt")

_POSITION_PAIRS = (
    ("positionlat", "positionlng"),
    ("displaycoordinatelat", "displaycoordinatelng"),
    ("accesslat", "accesslng"),
    ("lat", "lng"),
    ("latitude", "longitude"),
)
_POSITION_COMPACT = ("position", "displaycoordinate", "access")


class OutputFormatError(ValueError):
    """A downloaded line cannot be parsed; carries the 1-based line number."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(f"results line {line}: {message}" if line is not None else message)
        self.line = line


def detect_delimiter(header: str, default: str = "|") -> str:
    """The output delimiter, read from a header that starts with ``recId`` (HERE always puts it first)."""
    text = header.lstrip("\ufeff").rstrip("\r\n")
    if text[:5].lower() == "recid" and len(text) > 5:
        return text[5]
    return default


def _text(line: str | bytes) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    return line.rstrip("\r\n")


def iter_csv_rows(lines: Iterable[str | bytes], delimiter: str | None = None) -> Iterator[dict[str, str]]:
    """Rows of HERE's column output as dicts keyed by the header's names (values stay strings).

    :param lines: the downloaded lines, header first.
    :param delimiter: the output delimiter; read from the header when ``None``.
    :raises OutputFormatError: for a row with more values than the header has columns, or a bad quote.
    """
    header: list[str] | None = None
    delim = delimiter
    for number, raw in enumerate(lines, start=1):
        text = _text(raw)
        if number == 1:
            text = text.lstrip("\ufeff")
        if not text:
            continue
        if header is None:
            delim = delim or detect_delimiter(text)
            header = split_record(text, delim)
            continue
        assert delim is not None
        try:
            values = split_record(text, delim)
        except ValueError as exc:
            raise OutputFormatError(str(exc), line=number) from None
        if len(values) > len(header):
            raise OutputFormatError(
                f"has {len(values)} values but the header has {len(header)} columns", line=number
            )
        values += [""] * (len(header) - len(values))
        yield dict(zip(header, values, strict=True))


def iter_jsonl_rows(lines: Iterable[str | bytes]) -> Iterator[dict[str, Any]]:
    """Rows of HERE's JSONL output (one JSON object per line; blank lines skipped)."""
    for number, raw in enumerate(lines, start=1):
        text = _text(raw).strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise OutputFormatError(f"is not JSON ({exc.args[0]})", line=number) from None
        if not isinstance(value, dict):
            raise OutputFormatError("is not a JSON object", line=number)
        yield value


def iter_rows(lines: Iterable[str | bytes], delimiter: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of either output type: JSONL when the first non-blank line starts with ``{``, else CSV."""
    iterator = iter(lines)
    buffered: list[str | bytes] = []
    for raw in iterator:
        buffered.append(raw)
        text = _text(raw).lstrip("\ufeff").strip()
        if text:
            break
    else:
        return
    first = _text(buffered[-1]).lstrip("\ufeff").strip()

    def chained() -> Iterator[str | bytes]:
        yield from buffered
        yield from iterator

    if first.startswith("{"):
        yield from iter_jsonl_rows(chained())
    else:
        yield from iter_csv_rows(chained(), delimiter)


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _valid(lat: float | None, lng: float | None) -> tuple[float, float] | None:
    if lat is None or lng is None:
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0):
        return None
    return lat, lng


def _compact(value: Any) -> tuple[float, float] | None:
    if isinstance(value, Mapping):
        return _valid(_float(value.get("lat")), _float(value.get("lng")))
    if not isinstance(value, str):
        return None
    text = value.strip().strip("()").strip()
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        return None
    return _valid(_float(parts[0]), _float(parts[1]))


def row_position(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(lat, lng)`` of a result row, from whichever position columns it has; ``None`` when it has none."""
    lowered = {str(k).lower(): v for k, v in row.items()}
    for lat_key, lng_key in _POSITION_PAIRS:
        if lat_key in lowered and lng_key in lowered:
            found = _valid(_float(lowered[lat_key]), _float(lowered[lng_key]))
            if found:
                return found
    for key in _POSITION_COMPACT:
        if key in lowered:
            found = _compact(lowered[key])
            if found:
                return found
    items = lowered.get("items")
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        return row_position(items[0])
    return None


def _properties(row: Mapping[str, Any]) -> dict[str, Any]:
    skip = {a for pair in _POSITION_PAIRS for a in pair} | {"position"}
    return {k: v for k, v in row.items() if str(k).lower() not in skip}


def row_to_feature(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A GeoJSON Point feature (coordinates ``[lng, lat]``) with the other columns as properties."""
    position = row_position(row)
    if position is None:
        return None
    lat, lng = position
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lng, lat]},
        "properties": _properties(row),
    }


def feature_collection(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of every row with a position (rows without one are left out)."""
    features = [f for f in (row_to_feature(r) for r in rows) if f is not None]
    return {"type": "FeatureCollection", "features": features}


def write_geojson(rows: Iterable[Mapping[str, Any]], stream: IO[str]) -> tuple[int, int]:
    """Write a FeatureCollection feature by feature; returns ``(features written, rows skipped)``."""
    stream.write('{"type": "FeatureCollection", "features": [')
    written = skipped = 0
    for row in rows:
        feature = row_to_feature(row)
        if feature is None:
            skipped += 1
            continue
        stream.write(("\n" if written == 0 else ",\n") + json.dumps(feature, ensure_ascii=False))
        written += 1
    stream.write("\n]}\n")
    return written, skipped


def iter_records(rows: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Rows grouped by record: consecutive rows with the same ``recId`` (HERE writes a record's items,
    ``seqNumber`` 1..``seqLength``, one after the other; a JSONL line is one record already)."""
    group: list[Mapping[str, Any]] = []
    key: Any = None
    for row in rows:
        rec_id = row.get("recId")
        if group and rec_id != key:
            yield group
            group = []
        group.append(row)
        key = rec_id
    if group:
        yield group


def _candidate_rows(record: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A record's candidates, best first: its CSV rows, or the ``items`` of its JSONL line."""
    if len(record) == 1 and isinstance(record[0].get("items"), list):
        return [i for i in record[0]["items"] if isinstance(i, Mapping)]
    return record


def with_quality(
    rows: Iterable[Mapping[str, Any]], policy: Any = None, *, counts: Any = None, review: Any = None
) -> Iterator[dict[str, Any]]:
    """Each row with its record's ``matchQuality``, ``accepted`` and ``candidates`` added.

    :param policy: an :class:`~airflow_here_batch.api.quality.AcceptancePolicy` (or a dict of its
        arguments; default the default policy). The request's text is not in the results, so a coarse
        match is judged as for an input naming a house number (safest).
    :param counts: a :class:`~airflow_here_batch.api.quality.QualityCounts` to add each record to.
    :param review: a list receiving ``(recId, verdict, candidate rows)`` of each record not accepted.
    """
    from airflow_here_batch.api.quality import AcceptancePolicy, candidate_from_row, judge

    chosen = AcceptancePolicy.of(policy)
    for record in iter_records(rows):
        items = _candidate_rows(record)
        quality = judge([candidate_from_row(i) for i in items], chosen)
        if counts is not None:
            counts.add(quality)
        if review is not None and not quality.accepted:
            review.append((record[0].get("recId"), quality.verdict.value, items))
        extra = {
            "matchQuality": quality.verdict.value,
            "accepted": quality.accepted,
            "candidates": len(items),
        }
        for row in record:
            yield {**row, **extra}


def write_review(review: Iterable[tuple[Any, str, list[Mapping[str, Any]]]], stream: IO[str]) -> int:
    """Write the review file (:data:`REVIEW_HEADER`, ``|``-delimited) of the records not accepted, as
    collected by :func:`with_quality`; the top 5 candidates as JSON. Returns the records written."""
    from airflow_here_batch.api.quality import candidates_json

    stream.write(format_record(list(REVIEW_HEADER), "|") + "\n")
    written = 0
    skip = ("recId", "seqLength", *QUALITY_FIELDS)
    for rec_id, verdict, items in review:
        kept = [{k: v for k, v in i.items() if k not in skip} for i in items]
        key = "" if rec_id is None else str(rec_id)
        stream.write(format_record([key, verdict, candidates_json(kept, 5), "", ""], "|") + "\n")
        written += 1
    return written
