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
from functools import lru_cache
from typing import Any

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
    "scoringQueryScore": ("scoring", "queryScore"),
    **{leaf: ("address", key) for leaf, key in zip(_ADDRESS_LEAVES, _ADDRESS_KEYS, strict=True)},
}
_EXPAND = {
    "address": _ADDRESS_LEAVES,
    "mapView": ("mapViewWest", "mapViewSouth", "mapViewEast", "mapViewNorth"),
    "scoring": ("scoringQueryScore",),
}
_SERVICE_EXCLUDES = {
    "geocode": {"distance"},
    "revgeocode": {"scoringQueryScore", "scoring"},
    "lookup": {"distance", "scoringQueryScore", "scoring"},
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


def _cell(item: dict[str, Any], column: str) -> str:
    if column in _COORD_OBJECTS:
        return _coord(item.get(_COORD_OBJECTS[column]))
    path = _LEAVES[column]
    value: Any = item.get(path[0])
    if len(path) > 1:
        if isinstance(value, list):
            return "+".join(_fmt(v.get(path[1])) for v in value if isinstance(v, dict))
        value = value.get(path[1]) if isinstance(value, dict) else None
    return _fmt(value)


class CsvFormatter:
    """Formats one record's backend items as HERE column-based lines (fast path cached per answer)."""

    def __init__(self, service: str, columns: list[str] | None, delimiter: str) -> None:
        self.service = service
        self.delimiter = delimiter
        self.columns = resolve_columns(service, columns)
        self._data_columns = [c for c in self.columns if c not in ("recId", "seqNumber", "seqLength")]
        self._seq = service != "lookup"
        self._tail = lru_cache(maxsize=65536)(self._tail_uncached)

    def header(self) -> str:
        """The header line (no line break)."""
        return format_record(self.columns, self.delimiter)

    def _tail_uncached(self, items_id: int, index: int, length: int, items: Any) -> str:
        item = items[index]
        values: list[str] = [str(index + 1), str(length)] if self._seq else []
        values.extend(_cell(item, c) for c in self._data_columns)
        return format_record(values, self.delimiter)

    def lines(self, rec_id: str, items: list[dict[str, Any]]) -> list[str]:
        """Result lines (each ending in ``\\n``) for one record."""
        prefix = format_record([rec_id], self.delimiter) + self.delimiter
        n = len(items)
        holder = _Identity(items)
        return [prefix + self._tail(id(items), i, n, holder) + "\n" for i in range(n)]


class _Identity:
    """Hashable-by-identity wrapper so cached backend answers can key the formatter's cache."""

    __slots__ = ("items",)

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def __hash__(self) -> int:
        return id(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.items is self.items


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

    def lines(self, rec_id: str, items: list[dict[str, Any]]) -> list[str]:
        """The single JSON line (ending in ``\\n``) for one record."""
        doc = {"recId": rec_id, "items": [self._filter(i) for i in items]}
        return [json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"]
