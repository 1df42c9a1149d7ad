"""The geocode fast path must produce exactly what the normal path produces."""

from __future__ import annotations

import random

import pytest

from airflow_here_batch.emulator.fastpath import GeocodeFastPath
from airflow_here_batch.emulator.geocoder import CITIES, geocode
from airflow_here_batch.emulator.output import CsvFormatter

STREETS = [
    "Hauptstraße",
    "Rue de Rivoli",
    "Baker Street",
    "5th Ave",
    "Via Roma",
    "Calle, Mayor",
    'Say "hi" Rd',
    "",
]
PLACES = [*(c.name for c in CITIES[:20]), "Germany", "France", "Atlantis", "new york city", "São Paulo", ""]
INS = ["", "countryCode:DEU", "FRA", "countryCode:XXX"]


def queries() -> list[dict[str, str]]:
    rng = random.Random(3)
    out = []
    for i in range(3000):
        number = rng.choice(
            [str(rng.randrange(1, 9999)), f"{rng.randrange(1, 99)}a", "", str(rng.randrange(10000, 10**7))]
        )
        street, place = rng.choice(STREETS), rng.choice(PLACES)
        form = rng.randrange(4)
        q = [
            f"{street} {number}, 10115 {place}",
            f"{place} {number} {street}",
            f"{number} {street} {place}",
            f"{street}{number}, {place}",
        ][form]
        params = {"q": q}
        if in_value := rng.choice(INS):
            params["in"] = in_value
        if i % 7 == 0:
            params["limit"] = "1"
        out.append(params)
    return out


@pytest.mark.parametrize(
    ("delimiter", "columns"),
    [
        ("|", None),
        (",", None),
        (";", ["position", "addressLabel", "title", "addressDistrict"]),
        ("\t", ["positionlat", "address", "resultType"]),
    ],
)
def test_fast_path_matches_normal_path(delimiter: str, columns: list[str] | None) -> None:
    fmt = CsvFormatter("geocode", columns, delimiter)
    fast = GeocodeFastPath(fmt)
    used = 0
    for params in queries() * 2:  # twice: the second round hits the shape cache
        tails = fast.payload(dict(params))
        if tails is None:
            continue
        used += 1
        assert tails == fmt.payload(geocode(dict(params), lean=True)), params
    assert used > 1000
