"""Fast path for the commonest job: geocode, one result per record, CSV columns that need no ``id``,
``access`` or ``mapView``.

Real batches are mostly *distinct* addresses, so the per-job answer cache rarely hits, and building a
full item and formatting it costs ~20 us per record. Here the seed-independent work - matching the city,
splitting street and house number, formatting every constant cell - is done once per query *shape*
(the query with its house number masked, plus ``in``); a record then costs a CRC, two rounded
coordinates, a few ``str.replace`` calls and :func:`format_record`.

Exactness: the shape is analysed by the same :func:`geocoder._analyse` the slow path uses, the constant
cells come from the same column getters applied to a probe item built by the same ``_place``, and the
varying values are substituted into those cells before the same quoting; a test compares both paths.
Anything outside the fast path's scope returns ``None`` and takes the normal path.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_here_batch.api.records import format_record
from airflow_here_batch.emulator import geocoder as g
from airflow_here_batch.emulator.output import CsvFormatter

__all__ = ["GeocodeFastPath"]

_MASK = "\x00"
_MASKED_HOUSE_RE = re.compile(r"(\x00)")
_S_LAT, _S_LNG, _S_DIST, _S_STREET, _S_HOUSE = "\x01A\x01", "\x01B\x01", "\x01C\x01", "\x01D\x01", "\x01E\x01"
_SENTINELS = (_S_LAT, _S_LNG, _S_DIST, _S_STREET, _S_HOUSE, _MASK)
_LONG_NUMBER_RE = re.compile(r"(?<![\w-])(\d{5,})(?![\w-])")
_SHAPES = 100_000  # cached shapes per job


class _Shape:
    """Everything about a query shape that does not depend on the record's seed or house number."""

    __slots__ = ("cells", "city", "house", "street", "varying")

    def __init__(
        self,
        city: int,
        house: bool,
        street: str,
        cells: list[str],
        varying: list[tuple[int, tuple[str, ...]]],
    ) -> None:
        self.city = city
        self.house = house
        self.street = street  # "" = chosen by seed
        self.cells = cells
        self.varying = varying


class GeocodeFastPath:
    """Per-job fast formatter for geocode records; :meth:`payload` returns ``None`` when not applicable."""

    def __init__(self, fmt: CsvFormatter) -> None:
        self.fmt = fmt
        self.shapes: dict[tuple[str, str, bool], _Shape | None] = {}

    @staticmethod
    def applies(service: str, fmt: Any) -> bool:
        """Whether a job can use the fast path at all."""
        return service == "geocode" and isinstance(fmt, CsvFormatter) and fmt.lean

    def _shape(self, masked: str, in_value: str, house_token: bool) -> _Shape | None:
        """Analyse a masked query. ``house_token``: the masked number is a house-number candidate (1-4
        digits, optional letter) which must be where the slow path finds it; otherwise it is a longer
        number that the slow path keeps as part of the text (street, postal code)."""
        country = g._country_filter({"in": in_value})
        house_re = _MASKED_HOUSE_RE if house_token else g._HOUSE_NUMBER_RE
        city, matched, house, street = g._analyse(masked, country, house_re)
        if city is None or bool(house) != house_token:
            return None  # city chosen by seed, or house number not where the slow path finds it
        result_type = "houseNumber" if street or matched or house else "locality"
        probe = g._place(city, 0, street or _S_STREET, _S_HOUSE if house else "", result_type, lean=True)
        probe["position"] = {"lat": _S_LAT, "lng": _S_LNG}
        if "district" in probe["address"]:
            probe["address"]["district"] = _S_DIST
        fmt = self.fmt
        cells = (["1", "1"] if fmt._seq else []) + [get(probe) for get in fmt._getters]
        varying = [(i, tuple(x for x in _SENTINELS if x in cell)) for i, cell in enumerate(cells)]
        varying = [(i, found) for i, found in varying if found]
        return _Shape(city, bool(house), street, cells, varying)

    def payload(self, params: dict[str, str]) -> list[str] | None:
        """The result tails for one record, identical to ``fmt.payload(geocode(params, lean=True))``."""
        if params.get("limit") not in (None, "", "1"):
            return None
        if "q" not in params or any(k not in ("q", "in", "limit") for k in params):
            return None
        query = params["q"].strip()
        if not query or "\x00" in query or "\x01" in query:
            return None
        hn = g._HOUSE_NUMBER_RE.search(query)
        house_token = hn is not None
        if hn is None:
            hn = _LONG_NUMBER_RE.search(query)
            if hn is None:
                return None  # nothing varying to mask: the shape would be the query itself
        number = hn.group(1)
        masked = query[: hn.start()] + _MASK + query[hn.end() :]
        in_value = params.get("in", "")
        key = (masked, in_value, house_token)
        try:
            shape = self.shapes[key]
        except KeyError:
            shape = self._shape(masked, in_value, house_token)
            if len(self.shapes) >= _SHAPES:
                self.shapes.clear()
            self.shapes[key] = shape
        if shape is None:
            return None
        seed = g._crc(query)
        city = g.CITIES[shape.city]
        dlat, dlng = g._offset(seed, 0.04)
        values = {
            _S_LAT: repr(round(city.lat + dlat, 5)),
            _S_LNG: repr(round(city.lng + dlng, 5)),
            _S_DIST: f"{city.name}-{g._DISTRICTS[seed % 5]}",
            _S_STREET: shape.street or city.streets[seed % len(city.streets)],
            _S_HOUSE: number,
            _MASK: number,
        }
        cells = list(shape.cells)
        for i, found in shape.varying:
            cell = cells[i]
            for sentinel in found:
                cell = cell.replace(sentinel, values[sentinel])
            cells[i] = cell
        return [format_record(cells, self.fmt.delimiter) + "\n"]
