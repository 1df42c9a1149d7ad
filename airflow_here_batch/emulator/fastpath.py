"""Fast path for the commonest job: geocode, one result per record, CSV columns that need no ``id``,
``access`` or ``mapView``.

Real batches are mostly *distinct* addresses, so the per-job answer cache rarely hits, and building a
full item and formatting it costs ~20 us per record. Here the seed-independent work - matching the city,
splitting street and house number, formatting and quoting every constant cell - is done once per query
*shape*: the query with its house number and its first long number (5+ digits: a postal code, or a
house number too long to be one) masked, plus ``in``. A shape compiles to a ``str.format`` template of
the whole result line after the recId, so a record costs two regex searches, a CRC, two rounded
coordinates and one ``format`` call.

Exactness: the shape is analysed by the same :func:`geocoder._analyse` the slow path uses, the constant
cells come from the same column getters applied to a probe item built by the same ``_place``, and the
varying values are substituted into those cells with the same quoting; a test compares both paths.
Masking keeps the analysis exact because a masked token is bounded by characters that are neither
word characters nor ``-`` (so no city, country or house-number match can start or end next to it) and
the mask characters are neither either. Anything outside the fast path's scope returns ``None`` and
takes the normal path.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

from airflow_here_batch.api.records import format_record
from airflow_here_batch.emulator import geocoder as g
from airflow_here_batch.emulator.output import CsvFormatter

__all__ = ["FastLayout", "GeocodeFastPath"]

_MASK = "\x00"  # the house number (first house-number candidate of the query)
_LONG_MASK = "\x02"  # the first number of 5+ digits
_MASKED_HOUSE_RE = re.compile(r"(\x00)")
_S_LAT, _S_LNG, _S_DIST, _S_STREET, _S_HOUSE = "\x01A\x01", "\x01B\x01", "\x01C\x01", "\x01D\x01", "\x01E\x01"
# Placeholder -> index of its value in the tuple passed to a shape's template.
_SLOTS = {_S_LAT: 0, _S_LNG: 1, _S_DIST: 2, _S_STREET: 3, _S_HOUSE: 4, _MASK: 4, _LONG_MASK: 5}
_SENTINELS = tuple(_SLOTS)
_HOUSE_RE = g._HOUSE_NUMBER_RE
# Numbers as whole tokens (not next to a word character or "-"). The patterns start with ``\d`` and
# check the character before it afterwards, which lets the regex engine skip non-digits quickly:
# a number token (digits, an optional letter); a house-number candidate, the same matches as
# geocoder._HOUSE_NUMBER_RE; a long number (5+ digits).
_NUMBER_RE = re.compile(r"\d(?<![\w-]\d)\d*[a-zA-Z]?(?![\w-])")
_HOUSE_AT_RE = re.compile(r"\d(?<![\w-]\d)\d{0,3}[a-zA-Z]?(?![\w-])")
_LONG_AT_RE = re.compile(r"\d(?<![\w-]\d)\d{4,}(?![\w-])")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SHAPES = 100_000  # cached shapes per job
_CRC = zlib.crc32


class _Shape:
    """Everything about a query shape that does not depend on the record's seed or numbers."""

    __slots__ = ("cells", "city", "districts", "street", "streets", "template", "varying")

    def __init__(
        self,
        city: int,
        street: str,
        cells: list[str],
        varying: list[tuple[int, tuple[str, ...]]],
        template: str | None,
    ) -> None:
        c = g.PLACES[city]
        self.city = c
        self.street = street  # "" = chosen by seed
        self.cells = cells
        self.varying = varying
        #: ``str.format`` template of the line after ``recId<delimiter>`` (``None``: substitute per cell)
        self.template = template
        self.streets = (street,) if street else c.streets
        self.districts = tuple(f"{c.name}-{d}" for d in g._DISTRICTS)


class FastLayout:
    """Where a job's input columns put ``q``, ``in`` and ``limit`` (built once per job).

    ``None`` from :meth:`build` when a record could carry any other parameter: then every record takes
    the dict-based path.
    """

    __slots__ = ("in_default", "in_idx", "limit_idx", "q_default", "q_idx")

    def __init__(
        self, q_idx: int | None, q_default: str, in_idx: int | None, in_default: str, limit_idx: int | None
    ) -> None:
        self.q_idx, self.q_default = q_idx, q_default
        self.in_idx, self.in_default = in_idx, in_default
        self.limit_idx = limit_idx

    @classmethod
    def build(cls, columns: Sequence[str], defaults: dict[str, str]) -> FastLayout | None:
        """Mirror ``ColumnDescriptor.bind`` (defaults first, a later column wins) for q / in / limit."""
        allowed = {"recId", "q", "in", "limit"}
        if any(name not in allowed for name in (*columns, *defaults)):
            return None
        index = {name: i for i, name in enumerate(columns)}  # last occurrence wins, as in bind()
        if "limit" not in index and defaults.get("limit") not in (None, "", "1"):
            return None
        if "q" not in index and "q" not in defaults:
            return None
        return cls(
            index.get("q"), defaults.get("q", ""), index.get("in"), defaults.get("in", ""), index.get("limit")
        )

    def tail(self, fast: GeocodeFastPath, values: Sequence[str]) -> str | None:
        """The result line after the recId for one record's values, or ``None`` (normal path)."""
        if self.limit_idx is not None and values[self.limit_idx] not in ("", "1"):
            return None
        q = self.q_default if self.q_idx is None else values[self.q_idx]
        in_value = self.in_default if self.in_idx is None else values[self.in_idx]
        return fast.tail(q, in_value)


def _needs_quotes(cell: str, delimiter: str) -> bool:
    """Whether :func:`format_record` quotes this cell (``records._quote``'s condition)."""
    return delimiter in cell or cell.startswith('"') or "\n" in cell or "\r" in cell


def _quoted(cell: str) -> str:
    return '"' + cell.replace("\r", " ").replace("\n", " ").replace('"', '""') + '"'


class GeocodeFastPath:
    """Per-job fast formatter for geocode records; :meth:`tail` returns ``None`` when not applicable."""

    def __init__(self, fmt: CsvFormatter) -> None:
        self.fmt = fmt
        self.shapes: dict[tuple[str, str, bool, bool], _Shape | None] = {}
        d = fmt.delimiter
        # Templates need values that never need quoting: coordinates (digits, ".", "-", "e"), numbers
        # (digits, a letter) and, checked per shape, the city's streets and districts.
        self._template_ok = not (d.isalnum() or d in '.-+{}"\r\n' or any(d in s for s in _SENTINELS))

    @staticmethod
    def applies(service: str, fmt: Any) -> bool:
        """Whether a job can use the fast path at all."""
        return service == "geocode" and isinstance(fmt, CsvFormatter) and fmt.lean

    def _template(self, cells: list[str], city: g.City, streets: Sequence[str]) -> str | None:
        """The ``str.format`` template of ``format_record(cells) + "\\n"`` with placeholders for the
        varying values, or ``None`` when a varying value could change the quoting."""
        d = self.fmt.delimiter
        if not self._template_ok:
            return None
        for value in (*streets, *(f"{city.name}-{x}" for x in g._DISTRICTS)):
            if not value or value != value.strip() or _needs_quotes(value, d) or '"' in value:
                return None
        out = []
        for cell in cells:
            probe = cell
            for sentinel in _SENTINELS:
                probe = probe.replace(sentinel, "0")  # every varying value is non-empty, unquoted
            out.append(_quoted(cell) if _needs_quotes(probe, d) else cell)
        template = (d.join(out) + "\n").replace("{", "{{").replace("}", "}}")
        for sentinel, slot in _SLOTS.items():
            template = template.replace(sentinel, "{" + str(slot) + "}")
        return template

    def _shape(self, masked: str, in_value: str, house_token: bool, long_token: bool) -> _Shape | None:
        """Analyse a masked query (``house_token``/``long_token``: whether a number was masked)."""
        if (
            masked.count(_MASK) != house_token
            or masked.count(_LONG_MASK) != long_token
            or "\x01" in masked
            or len(masked.lower()) != len(masked)  # _analyse maps positions from the lower-cased text
        ):
            return None
        country = g._country_filter({"in": in_value})
        house_re = _MASKED_HOUSE_RE if house_token else _HOUSE_RE
        analysis = g._analyse(masked, country, house_re)
        city, house, street = analysis.city, analysis.house, analysis.street
        if city is None:
            return None  # city chosen by seed
        # The masked house number is the query's first candidate: the slow path takes it exactly when
        # it lies before the city name, and finds no house number otherwise - as _analyse did here.
        # The plan (kind and scores) depends on the shape only, as in the slow path.
        plan = g._plan(analysis, city, country)
        probe = g._place(
            city, 0, street or _S_STREET, _S_HOUSE if house else "", plan.result_type, lean=True, plan=plan
        )
        probe["position"] = {"lat": _S_LAT, "lng": _S_LNG}
        if "district" in probe["address"]:
            probe["address"]["district"] = _S_DIST
        fmt = self.fmt
        cells = (["1", "1"] if fmt._seq else []) + [get(probe) for get in fmt._getters]
        varying = [(i, tuple(x for x in _SENTINELS if x in cell)) for i, cell in enumerate(cells)]
        varying = [(i, found) for i, found in varying if found]
        c = g.PLACES[city]
        template = self._template(cells, c, () if street else c.streets)
        return _Shape(city, street, cells, varying, template)

    def tail(self, q: str, in_value: str) -> str | None:
        """The result line after ``recId<delimiter>`` for a record with these ``q`` and ``in`` (and no
        other parameter but ``limit=1``); identical to the normal path's."""
        query = q.strip()
        # The first house number and the first long number: find the first number token, then the
        # other kind after it (a search from ``pos`` still sees the characters before it).
        first = _NUMBER_RE.search(query)
        if first is None:
            return None  # nothing varying to mask: the shape would be the query itself
        token = first.group()
        digits = len(token) - (token[-1] in _LETTERS)
        if digits <= 4:
            hn, ln = first, _LONG_AT_RE.search(query, first.end())
        elif digits == len(token):
            hn, ln = _HOUSE_AT_RE.search(query, first.end()), first
        else:  # 5+ digits and a letter: neither kind
            hn, ln = _HOUSE_AT_RE.search(query, first.end()), _LONG_AT_RE.search(query, first.end())
        masked = query
        number = long_number = ""
        if ln is not None:
            long_number = ln.group()
            start, end = ln.span()
            masked = query[:start] + _LONG_MASK + query[end:]
        if hn is not None:
            number = hn.group()
            start, end = hn.span()
            if ln is not None and start > ln.start():  # the long number's mask shifted it
                shift = len(long_number) - 1
                start, end = start - shift, end - shift
            masked = masked[:start] + _MASK + masked[end:]
        elif ln is None:
            return None
        key = (masked, in_value, hn is not None, ln is not None)
        try:
            shape = self.shapes[key]
        except KeyError:
            shape = self._shape(masked, in_value, hn is not None, ln is not None)
            if len(self.shapes) >= _SHAPES:
                self.shapes.clear()
            self.shapes[key] = shape
        if shape is None:
            return None
        seed = _CRC(query.encode("utf-8"))
        city = shape.city
        # geocoder._offset(seed, 0.04) and _place's rounding, inlined (same operations, same floats).
        lat = repr(round(city.lat + ((seed & 0xFFFF) / 0xFFFF - 0.5) * 2 * 0.04, 5))
        lng = repr(round(city.lng + (((seed >> 16) & 0xFFFF) / 0xFFFF - 0.5) * 2 * 0.04, 5))
        streets = shape.streets
        street = streets[seed % len(streets)]
        district = shape.districts[seed % 5]
        if shape.template is not None:
            return shape.template.format(lat, lng, district, street, number, long_number)
        values = (lat, lng, district, street, number, long_number)
        cells = list(shape.cells)
        for i, found in shape.varying:
            cell = cells[i]
            for sentinel in found:
                cell = cell.replace(sentinel, values[_SLOTS[sentinel]])
            cells[i] = cell
        return format_record(cells, self.fmt.delimiter) + "\n"

    def payload(self, params: dict[str, str]) -> list[str] | None:
        """The result tails for one record, identical to ``fmt.payload(geocode(params, lean=True))``."""
        if params.get("limit") not in (None, "", "1"):
            return None
        if "q" not in params or any(k not in ("q", "in", "limit") for k in params):
            return None
        tail = self.tail(params["q"], params.get("in", ""))
        return None if tail is None else [tail]
