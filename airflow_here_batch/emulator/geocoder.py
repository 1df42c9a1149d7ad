"""Deterministic fake backends for geocode, reverse geocode and lookup.

The answers have the shape of HERE's Geocoding & Search v7 items (``title``, ``id``, ``resultType``,
``address``, ``position``, ``access``, ``mapView``, ``scoring``/``distance``) so output columns and
``outputFilter`` paths behave as on HERE. They are *plausible*, not real: a small gazetteer of major
cities and countries puts a geocoded "Invalidenstraße 116, Berlin" in Berlin, a reverse geocode answers
with an address in the nearest gazetteer city a few metres from ``at``, and lookup decodes the ids the
fake geocoder hands out (so geocode -> lookup round trips). Same input, same output: every pseudo-random
choice is derived from a CRC32 of the input (Python's ``hash`` is salted per process, so it is not used).

Deterministic failures (they land in the job's errors report): an empty ``q``/``qq`` (geocode), a
missing or unparsable ``at`` (revgeocode), an id that does not start with ``here:`` (lookup), and an
invalid ``limit``.
"""

from __future__ import annotations

import base64
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["CITIES", "COUNTRIES", "BackendError", "call_backend", "geocode", "lookup", "revgeocode"]

MAX_RESULTS = 3  # results produced at most per record, whatever ``limit`` asks for (documented choice)


class BackendError(Exception):
    """A record the fake backend rejects; becomes one line of the job's errors report."""

    def __init__(self, status: int, title: str, cause: str, action: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.cause = cause
        self.action = action


@dataclass(frozen=True)
class City:
    """One gazetteer entry."""

    name: str
    country: str  # ISO 3166-1 alpha-3
    state: str
    lat: float
    lng: float
    postal: str
    streets: tuple[str, ...]
    aliases: tuple[str, ...] = ()


COUNTRIES: dict[str, tuple[str, tuple[str, ...]]] = {
    # alpha-3: (English name, other names used for matching)
    "DEU": ("Germany", ("deutschland",)),
    "FRA": ("France", ()),
    "GBR": ("United Kingdom", ("uk", "great britain", "england")),
    "ESP": ("Spain", ("españa", "espana")),
    "ITA": ("Italy", ("italia",)),
    "NLD": ("Netherlands", ("nederland", "holland")),
    "POL": ("Poland", ("polska",)),
    "AUT": ("Austria", ("österreich", "osterreich")),
    "CHE": ("Switzerland", ("schweiz", "suisse")),
    "SWE": ("Sweden", ("sverige",)),
    "USA": ("United States", ("usa", "united states of america")),
    "CAN": ("Canada", ()),
    "MEX": ("Mexico", ("méxico",)),
    "BRA": ("Brazil", ("brasil",)),
    "ARG": ("Argentina", ()),
    "JPN": ("Japan", ()),
    "CHN": ("China", ()),
    "IND": ("India", ()),
    "AUS": ("Australia", ()),
    "ZAF": ("South Africa", ()),
    "EGY": ("Egypt", ()),
    "KEN": ("Kenya", ()),
    "TUR": ("Turkey", ("türkiye",)),
    "RUS": ("Russia", ()),
    "KOR": ("South Korea", ("korea",)),
    "SGP": ("Singapore", ()),
    "ARE": ("United Arab Emirates", ("uae",)),
    "PRT": ("Portugal", ()),
    "CZE": ("Czechia", ("czech republic",)),
    "NGA": ("Nigeria", ()),
}

_DE_STREETS = ("Hauptstraße", "Bahnhofstraße", "Gartenweg", "Schulstraße", "Lindenallee")
_EN_STREETS = ("High Street", "Station Road", "Church Lane", "Park Avenue", "Main Street")
_FR_STREETS = ("Rue de la Paix", "Avenue Victor Hugo", "Rue du Moulin", "Boulevard Voltaire")
_ES_STREETS = ("Calle Mayor", "Avenida de la Constitución", "Calle del Sol", "Paseo del Prado")
_IT_STREETS = ("Via Roma", "Via Garibaldi", "Corso Italia", "Via Dante")

CITIES: tuple[City, ...] = (
    City(
        "Berlin",
        "DEU",
        "Berlin",
        52.52,
        13.405,
        "10115",
        ("Invalidenstraße", "Friedrichstraße", "Unter den Linden", *_DE_STREETS),
    ),
    City("Hamburg", "DEU", "Hamburg", 53.5511, 9.9937, "20095", ("Mönckebergstraße", *_DE_STREETS)),
    City(
        "Munich",
        "DEU",
        "Bayern",
        48.1372,
        11.5755,
        "80331",
        ("Marienplatz", *_DE_STREETS),
        ("münchen", "muenchen"),
    ),
    City("Cologne", "DEU", "Nordrhein-Westfalen", 50.9375, 6.9603, "50667", _DE_STREETS, ("köln", "koeln")),
    City(
        "Frankfurt am Main", "DEU", "Hessen", 50.1109, 8.6821, "60311", ("Zeil", *_DE_STREETS), ("frankfurt",)
    ),
    City("Stuttgart", "DEU", "Baden-Württemberg", 48.7758, 9.1829, "70173", _DE_STREETS),
    City("Paris", "FRA", "Île-de-France", 48.8566, 2.3522, "75001", ("Rue de Rivoli", *_FR_STREETS)),
    City("Lyon", "FRA", "Auvergne-Rhône-Alpes", 45.764, 4.8357, "69001", _FR_STREETS),
    City("Marseille", "FRA", "Provence-Alpes-Côte d'Azur", 43.2965, 5.3698, "13001", _FR_STREETS),
    City("London", "GBR", "England", 51.5074, -0.1278, "SW1A 1AA", ("Baker Street", *_EN_STREETS)),
    City("Manchester", "GBR", "England", 53.4808, -2.2426, "M1 1AE", _EN_STREETS),
    City("Edinburgh", "GBR", "Scotland", 55.9533, -3.1883, "EH1 1YZ", ("Royal Mile", *_EN_STREETS)),
    City("Madrid", "ESP", "Comunidad de Madrid", 40.4168, -3.7038, "28013", ("Gran Vía", *_ES_STREETS)),
    City("Barcelona", "ESP", "Cataluña", 41.3874, 2.1686, "08002", ("La Rambla", *_ES_STREETS)),
    City("Rome", "ITA", "Lazio", 41.9028, 12.4964, "00184", ("Via del Corso", *_IT_STREETS), ("roma",)),
    City("Milan", "ITA", "Lombardia", 45.4642, 9.19, "20121", _IT_STREETS, ("milano",)),
    City("Amsterdam", "NLD", "Noord-Holland", 52.3676, 4.9041, "1012 JS", ("Damrak", "Kalverstraat")),
    City(
        "Rotterdam", "NLD", "Zuid-Holland", 51.9244, 4.4777, "3011 AD", ("Coolsingel", "Witte de Withstraat")
    ),
    City(
        "Warsaw",
        "POL",
        "Mazowieckie",
        52.2297,
        21.0122,
        "00-001",
        ("Marszałkowska", "Nowy Świat"),
        ("warszawa",),
    ),
    City("Vienna", "AUT", "Wien", 48.2082, 16.3738, "1010", ("Kärntner Straße", *_DE_STREETS), ("wien",)),
    City("Zurich", "CHE", "Zürich", 47.3769, 8.5417, "8001", ("Bahnhofstrasse", "Limmatquai"), ("zürich",)),
    City("Stockholm", "SWE", "Stockholm", 59.3293, 18.0686, "111 20", ("Drottninggatan", "Kungsgatan")),
    City(
        "Lisbon",
        "PRT",
        "Lisboa",
        38.7223,
        -9.1393,
        "1100-148",
        ("Rua Augusta", "Avenida da Liberdade"),
        ("lisboa",),
    ),
    City("Prague", "CZE", "Praha", 50.0755, 14.4378, "110 00", ("Václavské náměstí", "Národní"), ("praha",)),
    City(
        "New York",
        "USA",
        "NY",
        40.7128,
        -74.006,
        "10007",
        ("Broadway", "5th Ave", *_EN_STREETS),
        ("new york city", "nyc"),
    ),
    City("Chicago", "USA", "IL", 41.8781, -87.6298, "60601", ("Michigan Ave", "State St", *_EN_STREETS)),
    City("San Francisco", "USA", "CA", 37.7749, -122.4194, "94103", ("Market St", "Mission St")),
    City("Los Angeles", "USA", "CA", 34.0522, -118.2437, "90012", ("Sunset Blvd", "Wilshire Blvd")),
    City("Washington", "USA", "DC", 38.9072, -77.0369, "20500", ("Pennsylvania Ave NW", "K St NW")),
    City("Toronto", "CAN", "ON", 43.6532, -79.3832, "M5H 2N2", ("Yonge St", "Queen St W")),
    City(
        "Mexico City",
        "MEX",
        "CDMX",
        19.4326,
        -99.1332,
        "06000",
        ("Paseo de la Reforma", "Avenida Juárez"),
        ("ciudad de méxico",),
    ),
    City(
        "São Paulo",
        "BRA",
        "SP",
        -23.5505,
        -46.6333,
        "01001-000",
        ("Avenida Paulista", "Rua Augusta"),
        ("sao paulo",),
    ),
    City("Buenos Aires", "ARG", "CABA", -34.6037, -58.3816, "C1002", ("Avenida de Mayo", "Florida")),
    City("Tokyo", "JPN", "Tokyo", 35.6762, 139.6503, "100-0005", ("Chuo-dori", "Meiji-dori")),
    City("Beijing", "CHN", "Beijing", 39.9042, 116.4074, "100000", ("Chang'an Avenue", "Wangfujing Street")),
    City("Mumbai", "IND", "Maharashtra", 19.076, 72.8777, "400001", ("Marine Drive", "Colaba Causeway")),
    City("Delhi", "IND", "Delhi", 28.6139, 77.209, "110001", ("Rajpath", "Chandni Chowk"), ("new delhi",)),
    City("Sydney", "AUS", "NSW", -33.8688, 151.2093, "2000", ("George St", "Pitt St")),
    City("Johannesburg", "ZAF", "Gauteng", -26.2041, 28.0473, "2001", ("Commissioner St", "Main St")),
    City("Cairo", "EGY", "Cairo", 30.0444, 31.2357, "11511", ("Tahrir Square", "Talaat Harb St")),
    City("Nairobi", "KEN", "Nairobi", -1.2921, 36.8219, "00100", ("Kenyatta Ave", "Moi Ave")),
    City("Istanbul", "TUR", "İstanbul", 41.0082, 28.9784, "34110", ("İstiklal Caddesi", "Divan Yolu")),
    City("Moscow", "RUS", "Moscow", 55.7558, 37.6173, "101000", ("Tverskaya St", "Arbat St"), ("moskva",)),
    City("Seoul", "KOR", "Seoul", 37.5665, 126.978, "04524", ("Sejong-daero", "Myeongdong-gil")),
    City("Singapore", "SGP", "Singapore", 1.3521, 103.8198, "049315", ("Orchard Road", "Raffles Place")),
    City("Dubai", "ARE", "Dubai", 25.2048, 55.2708, "00000", ("Sheikh Zayed Road", "Al Wasl Road")),
    City("Lagos", "NGA", "Lagos", 6.5244, 3.3792, "100001", ("Broad Street", "Marina Road")),
)

#: Places known to the geocoder besides :data:`CITIES` (kept apart so that the seed's choice of a city,
#: ``seed % len(CITIES)``, stays as it was): they carry the names that exist in several towns.
EXTRA_PLACES: tuple[City, ...] = (
    City("Bern", "CHE", "Bern", 46.94809, 7.44744, "3005", ("Helvetiaplatz", "Bundesplatz", "Kramgasse")),
    City("Basel", "CHE", "Basel-Stadt", 47.55814, 7.58769, "4051", ("Helvetiaplatz", "Freie Strasse")),
)
#: Every place: :data:`CITIES` first (ids and indexes are positions in this tuple).
PLACES: tuple[City, ...] = CITIES + EXTRA_PLACES
#: Streets a gazetteer city has besides its ``streets`` (not chosen by seed, found by name only).
_MORE_STREETS: dict[str, tuple[str, ...]] = {"Zurich": ("Helvetiaplatz",)}

#: Street name (lower case) -> the places having it, in gazetteer order: a street named without a town
#: and found in several places is the classic ambiguous query (HERE answers every town, equally scored).
_STREET_PLACES: dict[str, tuple[int, ...]] = {}
for _i, _c in enumerate(PLACES):
    for _s in (*_c.streets, *_MORE_STREETS.get(_c.name, ())):
        _known = _STREET_PLACES.get(_s.lower(), ())
        if _i not in _known:
            _STREET_PLACES[_s.lower()] = (*_known, _i)

#: Capital (or main city) used when only a country matches.
_COUNTRY_CITY: dict[str, int] = {}
for _i, _c in enumerate(CITIES):
    _COUNTRY_CITY.setdefault(_c.country, _i)
for _cc, _name in (
    ("AUS", "Sydney"),
    ("CHE", "Zurich"),
    ("CAN", "Toronto"),
    ("IND", "Delhi"),
    ("USA", "Washington"),
    ("TUR", "Istanbul"),
    ("CHN", "Beijing"),
):
    _COUNTRY_CITY[_cc] = next(i for i, c in enumerate(CITIES) if c.name == _name)


def _names_regex(names: dict[str, int]) -> re.Pattern[str]:
    ordered = sorted(names, key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in ordered) + r")(?!\w)")


_CITY_NAMES: dict[str, int] = {}
for _i, _c in enumerate(PLACES):
    for _n in (_c.name, *_c.aliases):
        _CITY_NAMES[_n.lower()] = _i
_CITY_RE = _names_regex(_CITY_NAMES)
_COUNTRY_NAMES: dict[str, str] = {}
for _cc, (_cname, _alts) in COUNTRIES.items():
    for _n in (_cname, *_alts):
        _COUNTRY_NAMES[_n.lower()] = _cc
_COUNTRY_RE = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(n) for n in sorted(_COUNTRY_NAMES, key=len, reverse=True)) + r")(?!\w)"
)
_HOUSE_NUMBER_RE = re.compile(r"(?<![\w-])(\d{1,4}[a-zA-Z]?)(?![\w-])")
_ALPHA_RE = re.compile(r"[^\W\d_]")
_DISTRICTS = ("Mitte", "Nord", "Süd", "Ost", "West")
_AT_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*(?:;.*)?$")


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _offset(seed: int, scale: float) -> tuple[float, float]:
    """A deterministic offset in degrees within ±scale, from a seed."""
    a = ((seed & 0xFFFF) / 0xFFFF - 0.5) * 2 * scale
    b = (((seed >> 16) & 0xFFFF) / 0xFFFF - 0.5) * 2 * scale
    return a, b


def _round(x: float) -> float:
    return round(x, 5)


def _haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371000.0 * math.asin(math.sqrt(min(1.0, h)))


def _encode_id(city: int, seed: int, street: str, house: str) -> str:
    raw = f"{city}\x1f{seed}\x1f{street}\x1f{house}"
    encoded = base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")
    return "here:af:streetsection:" + encoded


def _decode_id(value: str) -> tuple[int, int, str, str] | None:
    prefix = "here:af:streetsection:"
    if not value.startswith(prefix):
        return None
    data = value[len(prefix) :]
    try:
        city_s, seed_s, street, house = (
            base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8").split("\x1f")
        )
        city, seed = int(city_s), int(seed_s)
    except (ValueError, TypeError):
        return None
    if not 0 <= city < len(PLACES):
        return None
    return city, seed, street, house


def _place(
    city_idx: int,
    seed: int,
    street: str,
    house: str,
    result_type: str,
    position: tuple[float, float] | None = None,
    lean: bool = False,
    plan: _Plan | None = None,
) -> dict[str, Any]:
    """Build one HERE-shaped item for an address in a gazetteer city.

    ``lean`` leaves out ``id``, ``access`` and ``mapView`` (costly, and not needed by most column sets).
    ``plan`` gives the quality fields (``resultType``, ``houseNumberType``, ``scoring``; in lean items
    too); without it the item has ``resultType`` only.
    """
    city = PLACES[city_idx]
    if position is None:
        dlat, dlng = _offset(seed, 0.04)
        position = (city.lat + dlat, city.lng + dlng)
    lat, lng = round(position[0], 5), round(position[1], 5)
    country = COUNTRIES[city.country][0]
    district = f"{city.name}-{_DISTRICTS[seed % 5]}"
    if result_type == "locality":
        label = f"{city.name}, {country}"
        address: dict[str, Any] = {
            "label": label,
            "countryCode": city.country,
            "countryName": country,
            "state": city.state,
            "city": city.name,
            "postalCode": city.postal,
        }
        title = label
    else:
        street_part = f"{street} {house}".strip() if house else street
        label = f"{street_part}, {city.postal} {city.name}, {country}"
        address = {
            "label": label,
            "countryCode": city.country,
            "countryName": country,
            "state": city.state,
            "county": city.state,
            "city": city.name,
            "district": district,
            "street": street,
            "postalCode": city.postal,
        }
        if house:
            address["houseNumber"] = house
        title = label
    quality = plan.fields() if plan is not None else {"resultType": result_type}
    if lean:
        return {"title": title, **quality, "address": address, "position": {"lat": lat, "lng": lng}}
    d = 0.0005
    # A locality's id carries no street (lookup then answers the locality again).
    here_id = _encode_id(city_idx, seed, *(("", "") if result_type == "locality" else (street, house)))
    return {
        "title": title,
        "id": here_id,
        **quality,
        "address": address,
        "position": {"lat": lat, "lng": lng},
        "access": [{"lat": round(lat + 0.0001, 5), "lng": round(lng - 0.0001, 5)}],
        "mapView": {
            "west": round(lng - d, 5),
            "south": round(lat - d, 5),
            "east": round(lng + d, 5),
            "north": round(lat + d, 5),
        },
    }


def _limit(params: dict[str, str]) -> int:
    raw = params.get("limit")
    if not raw or raw == "1":
        return 1
    try:
        value = int(raw)
    except ValueError:
        raise BackendError(
            400,
            "Illegal input for parameter 'limit'",
            f"'{raw}' is not an integer",
            "Use an integer between 1 and 100",
        ) from None
    if not 1 <= value <= 100:
        raise BackendError(
            400,
            "Illegal input for parameter 'limit'",
            f"{value} is out of range 1..100",
            "Use an integer between 1 and 100",
        )
    return value


def _country_filter(params: dict[str, str]) -> str | None:
    value = params.get("in", "")
    if value.startswith("countryCode:"):
        value = value[len("countryCode:") :]
    code = value.split(",")[0].strip().upper()
    return code if code in COUNTRIES else None


class _Analysis(NamedTuple):
    """The seed-independent reading of a query (shared by the normal and the fast path)."""

    city: int | None  # index into PLACES, or None = chosen by seed
    matched: bool  # a town's name was in the query
    house: str  # the house-number token as written, or ""
    street: str  # the street as written, or "" (then chosen by seed)
    country_named: bool  # a country's name was in the query


def _analyse(query: str, country: str | None, house_re: re.Pattern[str]) -> _Analysis:
    """The seed-independent part of geocoding ``query``.

    A street named without a town that exists in several places (``Helvetiaplatz``) is placed in the
    first of them (within the country filter): the ambiguous query of :func:`_plan`.

    The fast path (:mod:`airflow_here_batch.emulator.fastpath`) runs this on the query with its house
    number masked, so both paths share one definition of the fake geocoder.
    """
    low = query.lower().replace(";", " ").replace("=", " ")
    m = _CITY_RE.search(low)
    before = query[: m.start()] if m else query
    hn = house_re.search(before)
    house = hn.group(1) if hn else ""
    street = before[: hn.start()] if hn else before
    street = " ".join(street.replace(",", " ").split())
    if street and not _ALPHA_RE.search(street):
        street = ""
    cm = _COUNTRY_RE.search(low)
    city_idx: int | None
    if m:
        city_idx = _CITY_NAMES[m.group(1)]
        if country and PLACES[city_idx].country != country:
            city_idx = _COUNTRY_CITY[country]
    else:
        named = _COUNTRY_NAMES[cm.group(1)] if cm else None
        shared = _shared_places(street, country or named)
        if shared:
            city_idx = shared[0]
        elif named:
            city_idx = _COUNTRY_CITY[named]
        elif country:
            city_idx = _COUNTRY_CITY[country]
        else:
            city_idx = None
    return _Analysis(city_idx, m is not None, house, street, cm is not None)


def _shared_places(street: str, country: str | None) -> tuple[int, ...]:
    """The places having a street of this name (within ``country`` when given)."""
    places = _STREET_PLACES.get(street.lower(), ()) if street else ()
    return tuple(i for i in places if country is None or PLACES[i].country == country)


@dataclass(frozen=True)
class _Plan:
    """What the best item of a query is: decided by the query's shape, never by its seed, so the fast
    path builds the very same answer. GS7 fields: ``resultType``, ``houseNumberType``, ``localityType``,
    ``scoring.queryScore``, ``scoring.fieldScore`` (shared doc §17)."""

    result_type: str
    house_number_type: str = ""
    locality_type: str = ""
    query_score: float = 1.0
    field_scores: tuple[tuple[str, Any], ...] = ()
    places: tuple[int, ...] = ()  # an ambiguous street's towns, best first (else empty)

    def fields(self) -> dict[str, Any]:
        """The item's quality fields, as GS7 names them."""
        out: dict[str, Any] = {"resultType": self.result_type}
        if self.house_number_type:
            out["houseNumberType"] = self.house_number_type
        if self.locality_type:
            out["localityType"] = self.locality_type
        out["scoring"] = {"queryScore": self.query_score, "fieldScore": dict(self.field_scores)}
        return out


def _bucket(street: str, city: int) -> int:
    """A deterministic 0..19 per street and town (letters only: the fast path masks numbers)."""
    return _crc("".join(_ALPHA_RE.findall(street.lower())) + f"|{city}") % 20


def _plan(analysis: _Analysis, city: int, country: str | None) -> _Plan:
    """The best item's kind and scores (the emulator's choices, in HERE's shapes):

    * a town alone -> ``locality`` (``localityType`` city), queryScore 1;
    * a street without a town that several places have -> the first place, with no locality in
      ``fieldScore`` and queryScore 1 (HERE scores identical names equally); ``limit`` > 1 lists the
      others with the same score (no per-street variation below);
    * a town not recognised (placed by the country) -> ``fieldScore.city`` 0.6, queryScore 0.72;
    * per street and town (:func:`_bucket`): 1 in 20 is not found (``locality`` with queryScore 0.62),
      3 in 20 have no point addresses (``houseNumberType`` interpolated), 2 in 20 match a spelling
      variant (``fieldScore.streets`` 0.87, queryScore 0.91);
    * nothing recognised at all -> a ``locality`` chosen by seed with queryScore 0.3.
    """
    _, matched, house, street, country_named = analysis
    scores: dict[str, Any] = {}
    if country_named:
        scores["country"] = 1.0
    places: tuple[int, ...] = ()
    query_score = 1.0
    if matched:
        scores["city"] = 1.0
    else:
        shared = () if matched else _shared_places(street, country)
        if len(shared) > 1:
            places = shared
        elif street or house:
            scores["city"] = 0.6
            query_score = 0.72
    if not street and not house:
        if not matched:
            return _Plan("locality", "", "city", 0.3 if not country_named else 0.5, tuple(scores.items()))
        return _Plan("locality", "", "city", 1.0, tuple(scores.items()))
    bucket = _bucket(street, city) if street and not places else -1
    if bucket == 0:
        return _Plan("locality", "", "city", min(query_score, 0.62), tuple(scores.items()))
    if street:
        variant = bucket in (4, 5)
        scores["streets"] = [0.87 if variant else 1.0]
        if variant:
            query_score = min(query_score, 0.91)
    if not house:
        return _Plan("street", "", "", query_score, tuple(scores.items()), places)
    scores["houseNumber"] = 1.0
    number_type = "interpolated" if bucket in (1, 2, 3) else "PA"
    return _Plan("houseNumber", number_type, "", query_score, tuple(scores.items()), places)


def geocode(params: dict[str, str], lean: bool = False) -> list[dict[str, Any]]:
    """Fake ``/geocode``: ``q`` (or ``qq``) -> up to ``min(limit, 3)`` items, best first (the kinds and
    scores of :func:`_plan`)."""
    query = (params.get("q") or params.get("qq") or "").strip()
    if not query:
        raise BackendError(
            400, "Illegal input for parameter 'q'", "The query is empty", "Provide a non-empty 'q' or 'qq'"
        )
    limit = _limit(params)
    seed = _crc(query)
    country = _country_filter(params)
    analysis = _analyse(query, country, _HOUSE_NUMBER_RE)
    city_idx = analysis.city if analysis.city is not None else seed % len(CITIES)
    plan = _plan(analysis, city_idx, country)
    house = analysis.house
    street = analysis.street or PLACES[city_idx].streets[seed % len(PLACES[city_idx].streets)]
    items = [_place(city_idx, seed, street, house, plan.result_type, lean=lean, plan=plan)]
    count = min(limit, MAX_RESULTS)
    if plan.places:  # the same street in other towns, equally scored
        for place in plan.places[1:count]:
            s = _crc(f"{query}#{place}")
            items.append(_place(place, s, street, house, plan.result_type, lean=lean, plan=plan))
        return items
    city = PLACES[city_idx]
    for rank in range(1, count):
        s = _crc(f"{query}#{rank}")
        kept = tuple((k, v) for k, v in plan.field_scores if k in ("country", "city"))
        score = round(plan.query_score - 0.15 * rank, 2)
        other = _Plan("houseNumber", "PA", "", score, (*kept, ("streets", [0.6]), ("houseNumber", 1.0)))
        street_r = city.streets[s % len(city.streets)]
        items.append(_place(city_idx, s, street_r, str(s % 200 + 1), "houseNumber", lean=lean, plan=other))
    return items


def _parse_at(params: dict[str, str]) -> tuple[float, float]:
    raw = params.get("at", "")
    m = _AT_RE.match(raw)
    if not m:
        raise BackendError(
            400,
            "Illegal input for parameter 'at'",
            f"Could not parse '{raw}' as 'lat,lng'",
            "Send 'at' as two decimal degrees separated by a comma",
        )
    lat, lng = float(m.group(1)), float(m.group(2))
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise BackendError(
            400,
            "Illegal input for parameter 'at'",
            f"'{raw}' is out of range",
            "Latitude must be within ±90 and longitude within ±180",
        )
    return lat, lng


def revgeocode(params: dict[str, str], lean: bool = False) -> list[dict[str, Any]]:
    """Fake ``/revgeocode``: the nearest gazetteer city's address, a few metres from ``at``."""
    lat, lng = _parse_at(params)
    limit = _limit(params)
    city_idx = min(
        range(len(CITIES)),
        key=lambda i: (CITIES[i].lat - lat) ** 2 + ((CITIES[i].lng - lng) * math.cos(math.radians(lat))) ** 2,
    )
    seed = _crc(params.get("at", ""))
    city = CITIES[city_idx]
    items = []
    for rank in range(min(limit, MAX_RESULTS)):
        s = seed if rank == 0 else _crc(f"{params.get('at')}#{rank}")
        dlat, dlng = _offset(s, 0.0002 * (rank + 1))
        pos = (lat + dlat, lng + dlng)
        item = _place(
            city_idx, s, city.streets[s % len(city.streets)], str(s % 200 + 1), "houseNumber", pos, lean
        )
        item["distance"] = round(_haversine_m(lat, lng, item["position"]["lat"], item["position"]["lng"]))
        items.append(item)
    items.sort(key=lambda it: it["distance"])
    return items


def lookup(params: dict[str, str], lean: bool = False) -> list[dict[str, Any]]:
    """Fake ``/lookup``: ids handed out by the fake geocoder decode to the same place; any other
    ``here:`` id maps to a deterministic place; anything else is "not found"."""
    value = (params.get("id") or "").strip()
    if not value:
        raise BackendError(400, "Illegal input for parameter 'id'", "The id is empty", "Provide a HERE id")
    decoded = _decode_id(value)
    if decoded is not None:
        city_idx, seed, street, house = decoded
        kind = "houseNumber" if house else "street" if street else "locality"
        return [_place(city_idx, seed, street, house, kind)]
    if not value.startswith("here:"):
        raise BackendError(404, "Not found", f"No place with id '{value}'", "Check the id")
    seed = _crc(value)
    city_idx = seed % len(CITIES)
    city = CITIES[city_idx]
    item = _place(city_idx, seed, city.streets[seed % len(city.streets)], str(seed % 200 + 1), "place")
    item["id"] = value
    return [item]


_BACKENDS = {"geocode": geocode, "revgeocode": revgeocode, "lookup": lookup}


def call_backend(service: str, params: dict[str, str], lean: bool = False) -> list[dict[str, Any]]:
    """Call the fake backend ``service`` ("geocode", "revgeocode", "lookup") with one record's params.

    Not cached here: the engine caches formatted answers per job, which is where repeats pay off (a
    global cache of item dicts made the garbage collector the bottleneck on unique inputs).
    """
    return _BACKENDS[service](params, lean)
