"""How far a geocoded record can be trusted, sans I/O: a verdict per record and whether it is accepted.

HERE's Batch API runs Geocoding & Search v7 (GS7) per record; each result item carries ``resultType``,
``houseNumberType``, ``scoring.queryScore`` and ``scoring.fieldScore.*`` (shared doc §17; in column output
flattened to ``resultType``, ``houseNumberType``, ``scoringQueryScore``, ``scoringFieldScoreCity``, ...).
From those, the number and spread of a record's candidates (``seqLength`` > 1 when ``limit`` > 1) and
whether the input named a house number, :func:`classify` gives one :class:`Verdict`:

``exact``, ``interpolated``, ``street``, ``area``, ``ambiguous``, ``no_match``, ``failed``.

The rules are the tables below (:data:`RULES` in the order they apply, :data:`RESULT_TYPE_VERDICT`,
:data:`HOUSE_NUMBER_TYPE_VERDICT`, :data:`VERDICT_LEVEL`, :data:`AMBIGUITY`), each naming the HERE field
it reads. HERE does not document how its scores are computed: where its documentation is silent the
rule takes the answer that is safest for the user (the record goes to a person rather than being trusted)
and says so.

:class:`AcceptancePolicy` (one frozen argument) says which records are *accepted*; :class:`QualityCounts`
adds up a run's verdicts for the match-rate gate (:meth:`QualityCounts.gate`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from operator import itemgetter
from typing import Any, NamedTuple

__all__ = [
    "AMBIGUITY",
    "DEFAULT_POLICY",
    "FIELD_SCORES",
    "HOUSE_NUMBER_TYPE_VERDICT",
    "POSITION_POLICY",
    "QUALITY_OUTPUT_COLUMNS",
    "RESULT_TYPE_VERDICT",
    "RULES",
    "VERDICT_LEVEL",
    "AcceptancePolicy",
    "Candidate",
    "QualityCounts",
    "RecordQuality",
    "RowClassifier",
    "Verdict",
    "accept",
    "candidate_from_row",
    "candidates_json",
    "classify",
    "default_policy",
    "input_names_house_number",
    "judge",
    "quality_output_columns",
]


class Verdict(str, Enum):
    """How precise and how certain a record's match is (the ``match_quality`` column)."""

    EXACT = "exact"
    INTERPOLATED = "interpolated"
    STREET = "street"
    AREA = "area"
    AMBIGUOUS = "ambiguous"
    NO_MATCH = "no_match"
    FAILED = "failed"


_E, _I, _S, _A = Verdict.EXACT, Verdict.INTERPOLATED, Verdict.STREET, Verdict.AREA

# --- the tables ----------------------------------------------------------------------------------------

#: The rules in the order they apply: ``(verdict, HERE field read, condition)``. The first that holds wins.
RULES: tuple[tuple[str, str, str], ...] = (
    ("failed", "errors report (recId)", "the record is in the job's errors report"),
    ("no_match", "position (positionLat/positionLng)", "no item, or the best item has no position"),
    (
        "ambiguous",
        "seqLength, scoring.queryScore, position, address.city",
        "two or more candidates within AMBIGUITY['score_gap'] of the best score, and in different places "
        "(another address.city, or more than AMBIGUITY['distance_m'] apart)",
    ),
    (
        "ambiguous",
        "scoring.fieldScore.*",
        "a street-level or finer match whose fieldScore names no locality field (city, district, "
        "subdistrict, postalCode, county): the input named no town, and the same street exists in many",
    ),
    ("exact / interpolated", "resultType=houseNumber + houseNumberType", "HOUSE_NUMBER_TYPE_VERDICT"),
    ("exact / street / area", "resultType", "RESULT_TYPE_VERDICT"),
    ("interpolated / street / area", "address.houseNumber, address.street", "no resultType column"),
)

#: GS7 ``resultType`` -> verdict (``houseNumber`` is refined by :data:`HOUSE_NUMBER_TYPE_VERDICT`).
#: ``place`` (a point of interest found by name) has a position of its own: ``exact``. A resultType not
#: listed here (HERE may add some) is read as ``area``: safest, as nothing says it is finer.
RESULT_TYPE_VERDICT: dict[str, Verdict] = {
    "houseNumber": _I,
    "place": _E,
    "street": _S,
    "intersection": _S,
    "addressBlock": _S,
    "locality": _A,
    "postalCodePoint": _A,
    "administrativeArea": _A,
}

#: GS7 ``houseNumberType`` (only when ``resultType=houseNumber``) -> verdict: ``PA`` is a point address
#: (a surveyed house position), ``interpolated`` a position interpolated along the street. Empty or any
#: other value: ``interpolated`` (HERE is silent; a surveyed point is not claimed without its word).
HOUSE_NUMBER_TYPE_VERDICT: dict[str, Verdict] = {"PA": _E, "interpolated": _I}

#: How fine each verdict's match is, to compare with what the input asked for (3 house, 2 street, 1 area).
VERDICT_LEVEL: dict[Verdict, int] = {_E: 3, _I: 3, _S: 2, _A: 1}

#: Ambiguity thresholds (HERE documents neither; chosen conservatively): candidates within
#: ``score_gap`` of the best ``queryScore`` count as equally good; places more than ``distance_m`` apart,
#: or in another ``address.city``, are different places.
AMBIGUITY: dict[str, float] = {"score_gap": 0.05, "distance_m": 1000.0}

#: ``scoring.fieldScore`` fields that name a locality (GS7 field names).
LOCALITY_FIELDS: tuple[str, ...] = ("city", "district", "subdistrict", "postalCode", "county")

#: Every ``scoring.fieldScore`` field of GS7 (shared doc §17) as ``(field, output column)``.
FIELD_SCORES: tuple[tuple[str, str], ...] = tuple(
    (name, "scoringFieldScore" + name[0].upper() + name[1:])
    for name in (
        "country",
        "state",
        "county",
        "city",
        "district",
        "subdistrict",
        "streets",
        "block",
        "subblock",
        "houseNumber",
        "postalCode",
        "building",
        "unit",
        "placeName",
        "ontologyName",
    )
)

#: Output columns the verdict reads, added to a geocode job's ``outputColumns`` when missing
#: (:func:`quality_output_columns`).
QUALITY_OUTPUT_COLUMNS: tuple[str, ...] = (
    "positionLat",
    "positionLng",
    "addressCity",
    "resultType",
    "houseNumberType",
    "scoringQueryScore",
    "scoringFieldScoreCity",
    "scoringFieldScoreDistrict",
    "scoringFieldScorePostalCode",
    "scoringFieldScoreStreets",
    "scoringFieldScoreHouseNumber",
)

# A house number as people write it: 1-4 digits, an optional letter, not inside a longer number (a postal
# code) and not glued to a word (``A1``). A heuristic on the request: used only to decide that a coarse
# match is *not* enough, never to accept one.
_HOUSE_NUMBER = re.compile(r"(?<![\w-])\d{1,4}[a-zA-Z]?(?![\w-])")


# A postal code before its town at the start of a later comma-separated part: "…, 8004 Zürich".
_POSTAL_TOWN = re.compile(r"^\s*\d{4,5}(?=\s+[^\W\d_])")


def input_names_house_number(text: str | None) -> bool | None:
    """Whether a request's text names a house number (``None`` when the text is unknown).

    ``text`` is the request's raw values (``\x1f``-joined). A 1-4 digit token counts, except a postal
    code starting a later comma-separated part before its town (``Helvetiaplatz, 8004 Zürich``).
    """
    if text is None or text == "":
        return None
    for value in text.split("\x1f"):
        for i, part in enumerate(value.split(",")):
            if i:
                part = _POSTAL_TOWN.sub("", part)
            if _HOUSE_NUMBER.search(part):
                return True
    return False


def quality_output_columns(output_columns: Sequence[str] | str | None, delimiter: str = "|") -> list[str]:
    """``output_columns`` plus the :data:`QUALITY_OUTPUT_COLUMNS` it lacks (HERE matches names ignoring
    case). Empty ``output_columns`` (HERE's defaults) stay empty: naming columns would replace HERE's
    defaults, changing the file's shape; the verdict then falls back to the address columns."""
    if not output_columns:
        return []
    columns = output_columns.split(delimiter) if isinstance(output_columns, str) else list(output_columns)
    have = {c.strip().lower() for c in columns}
    if "scoring" in have:  # the whole object: its leaves come with it
        have |= {"scoringqueryscore", *(c.lower() for _, c in FIELD_SCORES)}
    if "position" in have:
        have |= {"positionlat", "positionlng"}
    return [*columns, *(c for c in QUALITY_OUTPUT_COLUMNS if c.lower() not in have)]


# --- one record ----------------------------------------------------------------------------------------


class Candidate(NamedTuple):
    """One item HERE returned for a record (what the verdict reads of it)."""

    result_type: str = ""
    house_number_type: str = ""
    query_score: float | None = None
    field_scores: Mapping[str, float] = {}
    lat: float | None = None
    lng: float | None = None
    city: str = ""
    house_number: str = ""
    street: str = ""

    @property
    def positioned(self) -> bool:
        return self.lat is not None and self.lng is not None


class RecordQuality(NamedTuple):
    """A record's verdict, whether it is accepted, the best ``queryScore`` and the candidates' count."""

    verdict: Verdict
    accepted: bool
    query_score: float | None
    candidates: int


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        # A list field (``streets``) comes joined by "+" or ",": its weakest part counts.
        return min(float(v) for v in re.split(r"[+,;]", str(value).strip("()[] ")) if v.strip())
    except ValueError:
        return None


def _get(row: Mapping[str, Any], *path: str) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def candidate_from_row(row: Mapping[str, Any]) -> Candidate:
    """A :class:`Candidate` from a parsed results row: column output (``resultType``,
    ``scoringQueryScore``, ...; names matched ignoring case) or a JSONL item (nested objects)."""
    from airflow_here_batch.api.outputs import row_position

    low = {str(k).lower(): v for k, v in row.items()}
    scores: dict[str, float] = {}
    nested = _get(row, "scoring", "fieldScore")
    for name, column in FIELD_SCORES:
        raw = nested.get(name) if isinstance(nested, Mapping) else low.get(column.lower())
        if isinstance(raw, list):
            raw = "+".join(str(v) for v in raw)
        value = _float(raw)
        if value is not None:
            scores[name] = value
    position = row_position(row)
    query_score = _get(row, "scoring", "queryScore")
    return Candidate(
        result_type=str(low.get("resulttype") or ""),
        house_number_type=str(low.get("housenumbertype") or ""),
        query_score=_float(query_score if query_score is not None else low.get("scoringqueryscore")),
        field_scores=scores,
        lat=position[0] if position else None,
        lng=position[1] if position else None,
        city=str(_get(row, "address", "city") or low.get("addresscity") or ""),
        house_number=str(_get(row, "address", "houseNumber") or low.get("addresshousenumber") or ""),
        street=str(_get(row, "address", "street") or low.get("addressstreet") or ""),
    )


def _distance_m(a: Candidate, b: Candidate) -> float | None:
    if not (a.positioned and b.positioned):
        return None
    p1, p2 = math.radians(a.lat), math.radians(b.lat)  # type: ignore[arg-type]
    dp, dl = p2 - p1, math.radians(b.lng - a.lng)  # type: ignore[operator]
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371000.0 * math.asin(math.sqrt(min(1.0, h)))


def _different_places(a: Candidate, b: Candidate) -> bool:
    if a.city and b.city and a.city.casefold() != b.city.casefold():
        return True
    distance = _distance_m(a, b)
    if distance is None:
        # Neither a city nor positions to compare: HERE is silent, so the safest reading is "different".
        return not (a.city and b.city)
    return distance > AMBIGUITY["distance_m"]


def _level_verdict(best: Candidate) -> Verdict:
    if best.result_type:
        if best.result_type == "houseNumber":
            return HOUSE_NUMBER_TYPE_VERDICT.get(best.house_number_type, _I)
        return RESULT_TYPE_VERDICT.get(best.result_type, _A)
    # No resultType column (HERE's default columns): judge by the address the item has. A house number
    # without houseNumberType is not claimed as a surveyed point.
    if best.house_number:
        return _I
    if best.street:
        return _S
    return _A


def _ambiguous(candidates: Sequence[Candidate]) -> bool:
    best = candidates[0]
    if len(candidates) > 1:
        top = best.query_score
        for other in candidates[1:]:
            if not other.positioned:
                continue
            close = (
                top is None
                or other.query_score is None
                or top - other.query_score <= AMBIGUITY["score_gap"] + 1e-9
            )
            if close and _different_places(best, other):
                return True
    # One candidate (limit=1): HERE cannot show the others, but a street-level match found without any
    # locality in fieldScore stands for every town having that street. Applied only when fieldScore
    # columns are there at all (else nothing can be said).
    if best.field_scores and _level_verdict(best) in (_E, _I, _S) and best.result_type != "place":
        return not any(f in best.field_scores for f in LOCALITY_FIELDS)
    return False


def classify(candidates: Sequence[Candidate], *, failed: bool = False) -> Verdict:
    """The verdict of one record from its candidates in HERE's rank order (:data:`RULES`).

    :param candidates: the record's items, best first (``seqNumber`` order); empty for no item.
    :param failed: the record is in the job's errors report.
    """
    if failed:
        return Verdict.FAILED
    if not candidates or not candidates[0].positioned:
        return Verdict.NO_MATCH
    if _ambiguous(candidates):
        return Verdict.AMBIGUOUS
    return _level_verdict(candidates[0])


# --- acceptance ------------------------------------------------------------------------------------------


def _verdicts(values: Iterable[Verdict | str]) -> frozenset[Verdict]:
    return frozenset(Verdict(getattr(v, "value", v)) for v in values)


@dataclass(frozen=True)
class AcceptancePolicy:
    """Which records count as *accepted* (the ``accepted`` column; the rest go to review).

    :param accepted: verdicts that can be accepted (``ambiguous``, ``no_match`` and ``failed`` never are;
        ``ambiguous`` only with ``allow_ambiguous``).
    :param min_scores: minimum score per field, 0..1: ``"queryScore"`` (``scoring.queryScore``) or a
        ``scoring.fieldScore`` field (``"houseNumber"``, ``"streets"``, ``"city"``, ...). A record whose
        ``queryScore`` is missing fails a ``queryScore`` minimum (HERE gave no proof); a fieldScore field
        that is missing was not used in the match (GS7) and is not checked.
    :param allow_ambiguous: accept ``ambiguous`` records (HERE's best candidate is kept).
    :param match_input_precision: accept ``street`` and ``area`` only when the input asked for no more:
        never for an input naming a house number, and ``area`` only when the whole query matched it
        (``queryScore`` 1). An input whose text is unknown counts as naming a house number (safest).
    :raises ValueError: for an unknown verdict or a score outside 0..1.

    The default (:data:`DEFAULT_POLICY`) accepts ``exact``, ``interpolated``, and ``street``/``area`` as
    precise as the input asked, with ``queryScore`` >= 0.8; it never accepts ``area`` or ``ambiguous``
    for an input that named a street address.
    """

    accepted: frozenset[Verdict] = field(default_factory=lambda: frozenset({_E, _I, _S, _A}))
    min_scores: Mapping[str, float] = field(default_factory=lambda: {"queryScore": 0.8})
    allow_ambiguous: bool = False
    match_input_precision: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "accepted", _verdicts(self.accepted))
        scores = dict(self.min_scores or {})
        known = {"queryScore", *(n for n, _ in FIELD_SCORES)}
        for name, value in scores.items():
            if name not in known:
                raise ValueError(
                    f"min_scores: {name!r} is not queryScore or a fieldScore field ({sorted(known)})"
                )
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"min_scores[{name!r}] = {value!r}: a score is between 0 and 1")
        object.__setattr__(self, "min_scores", {k: float(v) for k, v in scores.items()})

    @classmethod
    def of(cls, value: AcceptancePolicy | Mapping[str, Any] | None) -> AcceptancePolicy:
        """``value`` as a policy: a policy, a dict of its arguments (e.g. from a DAG param), or ``None``
        (:data:`DEFAULT_POLICY`)."""
        if value is None:
            return DEFAULT_POLICY
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls(**dict(value))
        raise TypeError(f"policy must be an AcceptancePolicy or a dict of its arguments, not {type(value)}")

    def as_dict(self) -> dict[str, Any]:
        """The policy as plain data (for logs and XCom)."""
        return {
            "accepted": sorted(v.value for v in self.accepted),
            "min_scores": dict(self.min_scores),
            "allow_ambiguous": self.allow_ambiguous,
            "match_input_precision": self.match_input_precision,
        }


DEFAULT_POLICY = AcceptancePolicy()
#: The default for reverse geocoding and lookup: HERE's answers to a position or an id carry no
#: ``queryScore`` and the input names no address, so no score minimum and no input precision apply.
POSITION_POLICY = AcceptancePolicy(min_scores={}, match_input_precision=False)


def default_policy(service: str | None) -> AcceptancePolicy:
    """The default policy of a service: :data:`DEFAULT_POLICY` for geocode (and unknown), else
    :data:`POSITION_POLICY`."""
    return POSITION_POLICY if service in ("revgeocode", "lookup") else DEFAULT_POLICY


def accept(
    verdict: Verdict, best: Candidate | None, policy: AcceptancePolicy, *, names_house: bool | None = None
) -> bool:
    """Whether a record with this verdict and best candidate is accepted under ``policy``.

    :param names_house: whether the input named a house number (``None``: unknown, read as yes).
    """
    if best is None or verdict in (Verdict.FAILED, Verdict.NO_MATCH):
        return False
    level = verdict
    if verdict is Verdict.AMBIGUOUS:
        if not policy.allow_ambiguous:
            return False
        level = _level_verdict(best)  # HERE's best candidate, judged as if it were the only one
    if level not in policy.accepted:
        return False
    return _precise_enough(level, best, policy, names_house) and _scores_ok(best, policy)


def _precise_enough(
    level: Verdict, best: Candidate, policy: AcceptancePolicy, names_house: bool | None
) -> bool:
    """Whether a match of this level is as precise as the input asked for (:data:`VERDICT_LEVEL`)."""
    if not policy.match_input_precision or VERDICT_LEVEL.get(level, 0) == 3:
        return True
    if names_house is not False:  # the input named a house number, or its text is unknown (safest)
        return False
    if level is Verdict.AREA:  # the whole query matched the area (queryScore 1): nothing finer was asked
        return best.query_score is not None and best.query_score >= 1.0
    return True


def _scores_ok(best: Candidate, policy: AcceptancePolicy) -> bool:
    for name, minimum in policy.min_scores.items():
        if name == "queryScore":
            if best.query_score is None or best.query_score < minimum:
                return False
        else:
            value = best.field_scores.get(name)
            if value is not None and value < minimum:
                return False
    return True


def judge(
    candidates: Sequence[Candidate],
    policy: AcceptancePolicy = DEFAULT_POLICY,
    *,
    failed: bool = False,
    request_text: str | None = None,
) -> RecordQuality:
    """:func:`classify` and :func:`accept` for one record (``request_text``: the input as sent, if known)."""
    verdict = classify(candidates, failed=failed)
    best = candidates[0] if candidates else None
    names_house = input_names_house_number(request_text)
    accepted = verdict not in (Verdict.FAILED, Verdict.NO_MATCH) and accept(
        verdict, best, policy, names_house=names_house
    )
    score = best.query_score if best is not None else None
    return RecordQuality(verdict, accepted, score, len(candidates))


# --- fast classification of column output ---------------------------------------------------------------


class RowClassifier:
    """Judges records from HERE's column output by column position, for the table sink.

    The verdict of a one-candidate record depends only on a few cells, so it is memoised on them: a
    million records cost one C-level tuple and one dict lookup each (:meth:`fixed`). Records with several
    candidates are judged in full, from the cells by position.

    :param header: the results header (names matched ignoring case).
    :param policy: the acceptance policy.
    """

    _CACHE = 50_000

    def __init__(self, header: Sequence[str], policy: AcceptancePolicy = DEFAULT_POLICY) -> None:
        self.header = list(header)
        self.policy = policy
        low = {name.strip().lower(): i for i, name in enumerate(self.header)}
        self._low = low
        self.seq_length = low.get("seqlength")
        self._cells = tuple(
            low.get(n)
            for n in (
                "resulttype",
                "housenumbertype",
                "scoringqueryscore",
                "addresshousenumber",
                "addressstreet",
                *(c.lower() for _, c in FIELD_SCORES),
            )
        )
        positions = [i for i in self._cells if i is not None]
        #: The memo key of a row's cells (a C-level getter; a tuple, or one cell).
        self.key: Callable[[Sequence[str]], Any] = (
            itemgetter(*positions) if positions else (lambda cells: ())  # type: ignore[assignment]
        )
        self._scores = [(name, low[c.lower()]) for name, c in FIELD_SCORES if c.lower() in low]
        self._lat, self._lng = low.get("positionlat"), low.get("positionlng")
        self._city = low.get("addresscity")
        # key -> (verdict, best candidate, the record's quality when it does not depend on the input)
        self._memo: dict[Any, tuple[Verdict, Candidate, RecordQuality | None]] = {}

    def candidate(self, cells: Sequence[str]) -> Candidate:
        """A :class:`Candidate` of one results row's cells (padded to the header's width)."""
        if self._lat is None or self._lng is None:
            return candidate_from_row(dict(zip(self.header, cells, strict=False)))
        c = self._cells
        scores = {}
        for name, i in self._scores:
            value = cells[i]
            if value:
                try:
                    scores[name] = float(value)
                except ValueError:
                    found = _float(value)
                    if found is not None:
                        scores[name] = found
        try:
            lat: float | None = float(cells[self._lat])
            lng: float | None = float(cells[self._lng])
        except ValueError:
            lat = lng = None
        return Candidate(
            cells[c[0]] if c[0] is not None else "",
            cells[c[1]] if c[1] is not None else "",
            _float(cells[c[2]]) if c[2] is not None else None,
            scores,
            lat,
            lng,
            cells[self._city] if self._city is not None else "",
            cells[c[3]] if c[3] is not None else "",
            cells[c[4]] if c[4] is not None else "",
        )

    def fixed(self, key: Any) -> RecordQuality | None:
        """The memoised quality of a one-candidate, positioned record with these key cells, when it does
        not depend on the input's wording (else ``None``: call :meth:`judge`)."""
        found = self._memo.get(key)
        return found[2] if found is not None else None

    def judge(
        self, rows: Sequence[Sequence[str]], positioned: bool, request_text: str | None
    ) -> RecordQuality:
        """The quality of one record: ``rows`` its results rows (best first, padded to the header's
        width), ``positioned`` whether the best has a position (the sink has read it already)."""
        if not positioned:
            return RecordQuality(Verdict.NO_MATCH, False, _query_score(rows[0], self._cells[2]), len(rows))
        if len(rows) != 1:
            candidates = [self.candidate(r) for r in rows]
            return judge(candidates, self.policy, request_text=request_text)
        key = self.key(rows[0])
        found = self._memo.get(key)
        if found is None:
            best = self.candidate(rows[0])
            verdict = classify([best])
            fixed: RecordQuality | None = None
            if verdict in (_E, _I) or (verdict is Verdict.AMBIGUOUS and not self.policy.allow_ambiguous):
                # The input's wording cannot change it.
                fixed = RecordQuality(verdict, accept(verdict, best, self.policy), best.query_score, 1)
            found = (verdict, best, fixed)
            if len(self._memo) >= self._CACHE:
                self._memo.clear()
            self._memo[key] = found
        verdict, best, quality = found
        if quality is not None:
            return quality
        accepted = accept(verdict, best, self.policy, names_house=input_names_house_number(request_text))
        return RecordQuality(verdict, accepted, best.query_score, 1)


def _query_score(cells: Sequence[str], index: int | None) -> float | None:
    if index is None or index >= len(cells):
        return None
    return _float(cells[index])


# --- a run's counts and the gate -------------------------------------------------------------------------


@dataclass
class QualityCounts:
    """A run's records counted by verdict, and how many were accepted."""

    by_verdict: dict[str, int] = field(default_factory=lambda: {v.value: 0 for v in Verdict})
    accepted: int = 0

    def add(self, quality: RecordQuality | Verdict, accepted: bool | None = None) -> None:
        """Count one record: its quality, or a verdict and whether it was accepted."""
        if isinstance(quality, RecordQuality):
            self.add_many(quality, 1)
        else:
            self.by_verdict[quality.value] += 1
            self.accepted += bool(accepted)

    def add_many(self, quality: RecordQuality, count: int) -> None:
        """Count ``count`` records of this quality."""
        self.by_verdict[quality.verdict.value] += count
        self.accepted += count if quality.accepted else 0

    @property
    def total(self) -> int:
        return sum(self.by_verdict.values())

    @property
    def share(self) -> float | None:
        """Accepted records / records judged (``None`` when none were)."""
        return self.accepted / self.total if self.total else None

    def summary(self) -> dict[str, Any]:
        """``{"records_accepted", "records_not_accepted", "verdicts": {verdict: count}}``."""
        return {
            "records_accepted": self.accepted,
            "records_not_accepted": self.total - self.accepted,
            "verdicts": dict(self.by_verdict),
        }

    def describe(self) -> str:
        """``"12 of 20 accepted (60.0 %); exact=10 street=2 ..."`` (verdicts with a count only)."""
        share = self.share
        parts = " ".join(f"{k}={v}" for k, v in self.by_verdict.items() if v)
        pct = f"{share * 100:.1f} %" if share is not None else "no records"
        return f"{self.accepted} of {self.total} accepted ({pct}); {parts or 'no verdicts'}"

    def gate(self, min_accepted_share: float | None) -> str | None:
        """A message when the accepted share is below ``min_accepted_share`` (0..1), else ``None``.

        A run that judged no record passes (nothing to measure)."""
        if min_accepted_share is None or not self.total:
            return None
        if not 0.0 <= min_accepted_share <= 1.0:
            raise ValueError(f"min_accepted_share={min_accepted_share!r}: give a share between 0 and 1")
        share = self.share
        assert share is not None
        if share + 1e-12 >= min_accepted_share:
            return None
        return (
            f"match rate too low: {self.describe()}, below the bound of {min_accepted_share * 100:.1f} %; "
            "the rows are written and flagged (match_quality, accepted), the records not accepted are in "
            "the review list: check the input feed"
        )


def candidates_json(candidates: Sequence[Mapping[str, Any]], top: int = 3) -> str:
    """The ``top`` candidates of a record as compact JSON (for the review list)."""
    kept = [{k: v for k, v in c.items() if v not in (None, "")} for c in candidates[:top]]
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
