"""Result formatting: HERE's column-based output (``csv``) and JSON lines (``jsonl``).

Column-based output (HERE ``outputType=csv``):

* the header line comes first; standard columns (``recId``, and ``seqNumber``/``seqLength`` except for
  lookup) always lead, added when the caller left them out;
* ``outputColumns`` names are backend response paths flattened to camelCase (``addressLabel``,
  ``positionLat``); matching ignores case, ``.``, ``_`` and ``-`` (so ``address.label`` works); unknown
  names are silently dropped, as on HERE;
* an explicitly requested coordinate object (``position``, ``access``, ``displayCoordinate``) renders as
  ``(lat,lng)``, other objects (``address``, ``mapView``) expand into their leaf columns; the per-service
  *defaults* are the expanded leaf columns, as in HERE's results example;
* arrays are joined with ``+``; a value containing the delimiter is quoted (see
  :mod:`airflow_here_batch.api.records`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

# GS7's scoring.fieldScore fields (shared doc §17), flattened to scoringFieldScoreCity, ... (§9's rule)
from airflow_here_batch.api.quality import FIELD_SCORES
from airflow_here_batch.api.records import format_record

__all__ = ["CsvFormatter", "JsonlFormatter", "default_columns"]

_ADDRESS_LEAVES = (
    "addressLabel",
    "addressCountryCode",
    "addressCountryName",
    "addressState",
    "addressCounty",
    "addressCity",
    "addressDistrict",
    "addressStreet",
    "addressPostalCode",
    "addressHouseNumber",
)
_ADDRESS_KEYS = (
    "label",
    "countryCode",
    "countryName",
    "state",
    "county",
    "city",
    "district",
    "street",
    "postalCode",
    "houseNumber",
)

_STANDARD = {
    "geocode": ("recId", "seqNumber", "seqLength"),
    "revgeocode": ("recId", "seqNumber", "seqLength"),
    "lookup": ("recId",),
}

_DEFAULTS = {
    "geocode": ("positionLat", "positionLng", *_ADDRESS_LEAVES, "title"),
    "revgeocode": ("displayCoordinateLat", "displayCoordinateLng", "distance", *_ADDRESS_LEAVES),
    "lookup": ("displayCoordinateLat", "displayCoordinateLng", *_ADDRESS_LEAVES),
}


# Column name -> how to get its value from an item. Keys are canonical camelCase names.
_COORD_OBJECTS = {"position": "position", "displayCoordinate": "position", "access": "access"}
_LEAVES: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "id": ("id",),
    "resultType": ("resultType",),
    "distance": ("distance",),
    "positionLat": ("position", "lat"),
    "positionLng": ("position", "lng"),
    "displayCoordinateLat": ("position", "lat"),
    "displayCoordinateLng": ("position", "lng"),
    "accessLat": ("access", "lat"),
    "accessLng": ("access", "lng"),
    "mapViewWest": ("mapView", "west"),
    "mapViewSouth": ("mapView", "south"),
    "mapViewEast": ("mapView", "east"),
    "mapViewNorth": ("mapView", "north"),
    "houseNumberType": ("houseNumberType",),
    "localityType": ("localityType",),
    "administrativeAreaType": ("administrativeAreaType",),
    "scoringQueryScore": ("scoring", "queryScore"),
    **{column: ("scoring", "fieldScore", field) for field, column in FIELD_SCORES},
    **{leaf: ("address", key) for leaf, key in zip(_ADDRESS_LEAVES, _ADDRESS_KEYS, strict=True)},
}
_EXPAND = {
    "address": _ADDRESS_LEAVES,
    "mapView": ("mapViewWest", "mapViewSouth", "mapViewEast", "mapViewNorth"),
    "scoring": ("scoringQueryScore", *(column for _, column in FIELD_SCORES)),
}
_SCORING = {"scoring", *(c for c in _LEAVES if c.startswith("scoring"))}
_SERVICE_EXCLUDES = {
    "geocode": {"distance"},
    "revgeocode": _SCORING,
    "lookup": {"distance", *_SCORING},
}


def _norm(name: str) -> str:
    return name.replace(".", "").replace("_", "").replace("-", "").strip().lower()


_BY_NORM: dict[str, str] = {_norm(n): n for n in (*_LEAVES, *_COORD_OBJECTS, *_EXPAND)}


def default_columns(service: str) -> tuple[str, ...]:
    """The full column list (standard columns included) used when ``outputColumns`` is absent."""
    return _STANDARD[service] + _DEFAULTS[service]


def resolve_columns(service: str, requested: list[str] | None) -> list[str]:
    """The canonical output columns for a job: standard ones first, then the known requested ones."""
    standard = list(_STANDARD[service])
    if not requested:
        return standard + list(_DEFAULTS[service])
    out = list(standard)
    excluded = _SERVICE_EXCLUDES[service]
    for raw in requested:
        n = _norm(raw)
        if n in ("recid", "seqnumber", "seqlength"):
            continue
        canonical = _BY_NORM.get(n)
        if canonical is None or canonical in excluded:
            continue  # unknown names are silently dropped, as HERE does
        for col in _EXPAND.get(canonical, (canonical,)):
            if col not in out and col not in excluded:
                out.append(col)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _coord(obj: Any) -> str:
    if isinstance(obj, list):
        return "+".join(_coord(o) for o in obj)
    if isinstance(obj, dict) and "lat" in obj:
        return f"({_fmt(obj['lat'])},{_fmt(obj['lng'])})"
    return ""


# The costly parts of an item (lean items leave them out; quality fields and scoring are in lean items).
_HEAVY = {"id", "access", "mapView"}


def _top_key(column: str) -> str:
    return _COORD_OBJECTS.get(column) or _LEAVES[column][0]


def _getter(column: str) -> Callable[[dict[str, Any]], str]:
    """A fast accessor for one output column (built once per job, called per item)."""
    if column in _COORD_OBJECTS:
        key = _COORD_OBJECTS[column]
        return lambda item: _coord(item.get(key))
    path = _LEAVES[column]
    if len(path) == 3:  # scoring.fieldScore.<field>: a number, or a list (streets) joined with "+"
        a, b, c = path

        def deep(item: dict[str, Any]) -> str:
            outer = item.get(a)
            inner = outer.get(b) if isinstance(outer, dict) else None
            value = inner.get(c) if isinstance(inner, dict) else None
            if isinstance(value, list):
                return "+".join(_fmt(v) for v in value)
            return _fmt(value)

        return deep
    if len(path) == 1:
        k = path[0]
        return lambda item: _fmt(item.get(k))
    k0, k1 = path

    def get(item: dict[str, Any]) -> str:
        value = item.get(k0)
        if value.__class__ is dict:
            x = value.get(k1)  # type: ignore[union-attr]
            if x is None:
                return ""
            return repr(x) if x.__class__ is float else str(x)
        if isinstance(value, list):
            return "+".join(_fmt(v.get(k1)) for v in value if isinstance(v, dict))
        return ""

    return get


class CsvFormatter:
    """Formats one record's backend items as HERE column-based lines (fast path cached per answer)."""

    def __init__(self, service: str, columns: list[str] | None, delimiter: str) -> None:
        self.service = service
        self.delimiter = delimiter
        self.columns = resolve_columns(service, columns)
        self._data_columns = [c for c in self.columns if c not in ("recId", "seqNumber", "seqLength")]
        self._seq = service != "lookup"
        self._getters = [_getter(col) for col in self._data_columns]
        #: True when no column needs the costly parts of an item (id, access, mapView).
        self.lean = not any(_top_key(col) in _HEAVY for col in self._data_columns)

    def header(self) -> str:
        """The header line (no line break)."""
        return format_record(self.columns, self.delimiter)

    def payload(self, items: list[dict[str, Any]]) -> list[str]:
        """Everything after ``recId<delimiter>`` for each item's line (cacheable per answer)."""
        n = len(items)
        tails = []
        for i, item in enumerate(items):
            values: list[str] = [str(i + 1), str(n)] if self._seq else []
            values += [g(item) for g in self._getters]
            tails.append(format_record(values, self.delimiter) + "\n")
        return tails

    def render(self, rec_id: str, payload: Sequence[str]) -> list[str]:
        """The result lines of one record from its cached :meth:`payload`."""
        d = self.delimiter
        prefix = (format_record([rec_id], d) if d in rec_id or rec_id.startswith('"') else rec_id) + d
        return [prefix + tail for tail in payload]

    def lines(self, rec_id: str, items: list[dict[str, Any]]) -> list[str]:
        """Result lines (each ending in ``\\n``) for one record."""
        return self.render(rec_id, self.payload(items))


def _prune(value: Any, path: list[str]) -> Any:
    """Keep only ``path`` inside ``value``; a segment after an array applies to every element."""
    if isinstance(value, list):
        kept = [_prune(v, path) for v in value]
        return [k for k in kept if k is not _MISSING]
    if not path:
        return value
    if not isinstance(value, dict) or path[0] not in value:
        return _MISSING
    inner = _prune(value[path[0]], path[1:])
    return _MISSING if inner is _MISSING else {path[0]: inner}


_MISSING = object()


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if key in into and isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value)
        elif key in into and isinstance(into[key], list) and isinstance(value, list):
            for target, extra in zip(into[key], value, strict=False):
                if isinstance(target, dict) and isinstance(extra, dict):
                    _merge(target, extra)
        else:
            into[key] = value


class JsonlFormatter:
    """Formats one record as one JSON line: ``{"recId": ..., "items": [...]}`` (emulator's choice of
    per-line schema), items pruned by ``outputFilter`` when given (case-sensitive dotted paths; missing
    paths are skipped)."""

    def __init__(self, output_filter: str | None) -> None:
        self.paths = [p.strip().split(".") for p in (output_filter or "").split(",") if p.strip()]

    def header(self) -> None:
        """JSON lines have no header line."""
        return None

    def _filter(self, item: dict[str, Any]) -> dict[str, Any]:
        if not self.paths:
            return item
        out: dict[str, Any] = {}
        for path in self.paths:
            part = _prune(item, path)
            if part is not _MISSING:
                _merge(out, json.loads(json.dumps(part)))
        return out

    def payload(self, items: list[dict[str, Any]]) -> str:
        """The JSON text of the (filtered) items array (cacheable per answer)."""
        return json.dumps([self._filter(i) for i in items], ensure_ascii=False, separators=(",", ":"))

    def render(self, rec_id: str, payload: str) -> list[str]:
        """The single JSON line of one record from its cached :meth:`payload`."""
        return ['{"recId":' + json.dumps(rec_id, ensure_ascii=False) + ',"items":' + payload + "}\n"]

    def lines(self, rec_id: str, items: list[dict[str, Any]]) -> list[str]:
        """The single JSON line (ending in ``\\n``) for one record."""
        return self.render(rec_id, self.payload(items))
