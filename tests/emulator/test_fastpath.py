"""The geocode fast path must produce exactly what the normal path produces; so must the validation
pass's whole-block check."""

from __future__ import annotations

import random
import re

import pytest

from airflow_here_batch.emulator import EmulatorServer, fastpath
from airflow_here_batch.emulator.fastpath import GeocodeFastPath
from airflow_here_batch.emulator.geocoder import _HOUSE_NUMBER_RE, CITIES, geocode
from airflow_here_batch.emulator.output import CsvFormatter

from .conftest import Client

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


def odd_queries() -> list[dict[str, str]]:
    """Shapes the masking must get right: a 4-digit postal code before a long house number (both are
    masked), several numbers, braces, characters whose lower case is longer, literal mask characters."""
    rng = random.Random(5)
    out = []
    for _ in range(3000):
        number = rng.choice([str(rng.randrange(10000, 10**7)), str(rng.randrange(1, 9999)), "12345a", "1-2"])
        other = rng.choice(["1010", "8001", "10115", "123456", ""])
        street = rng.choice(["Hauptstraße", "{Main} Street", "İİİİİİİİİİ", "Gasse\x00", "Weg\x02", "Via\x01"])
        place = rng.choice(["Wien", "Zürich", "Berlin", "Rome", "Atlantis", ""])
        q = rng.choice(
            [
                f"{street} {number}, {other} {place}",
                f"{other} {street} {number} {place}",
                f"{place} {street} {number}, {other}",
                f"{street} {number} {other}",
            ]
        )
        params = {"q": q}
        if in_value := rng.choice([*INS, "AUT", "countryCode:CHE"]):
            params["in"] = in_value
        out.append(params)
    return out


@pytest.mark.parametrize(
    ("delimiter", "columns"),
    [
        ("|", None),
        (",", None),
        (";", ["position", "addressLabel", "title", "addressDistrict"]),
        ("\t", ["positionlat", "address", "resultType"]),
        (" ", None),  # streets and districts with spaces need quotes: no template for them
        ("a", None),  # a letter can occur in any value: no template at all
        ("{", ["title", "addressHouseNumber"]),
        # the quality verdict's columns (scoring is in lean items)
        ("|", ["positionLat", "resultType", "houseNumberType", "localityType", "scoring", "addressCity"]),
    ],
)
def test_fast_path_matches_normal_path(delimiter: str, columns: list[str] | None) -> None:
    fmt = CsvFormatter("geocode", columns, delimiter)
    fast = GeocodeFastPath(fmt)
    used = 0
    for params in (queries() + odd_queries()) * 2:  # twice: the second round hits the shape cache
        tails = fast.payload(dict(params))
        if tails is None:
            continue
        used += 1
        assert tails == fmt.payload(geocode(dict(params), lean=True)), params
    assert used > 4000


def test_number_patterns_find_what_the_geocoder_finds() -> None:
    """The fast path's own number patterns (quicker to scan) match where the geocoder's do."""
    long_re = re.compile(r"(?<![\w-])(\d{5,})(?![\w-])")
    rng = random.Random(7)
    alphabet = "0123456789aZß-_ ,.;\u0663x"
    for _ in range(50_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(16)))
        for mine, theirs in ((fastpath._HOUSE_AT_RE, _HOUSE_NUMBER_RE), (fastpath._LONG_AT_RE, long_re)):
            assert [m.span() for m in mine.finditer(text)] == [m.span() for m in theirs.finditer(text)], text
            pos = rng.randrange(len(text) + 1)
            found, expected = mine.search(text, pos), theirs.search(text, pos)
            assert (found and found.span()) == (expected and expected.span()), (text, pos)


def test_long_house_numbers_share_a_shape() -> None:
    """ "Main Street 12345, 1010 Wien": the postal code is the house-number candidate and the long
    number is masked too, so all such addresses of a street share one shape."""
    fast = GeocodeFastPath(CsvFormatter("geocode", None, "|"))
    for n in range(10_000, 10_500):
        assert fast.payload({"q": f"Main Street {n}, 1010 Wien", "in": "countryCode:AUT"}) is not None
    assert len(fast.shapes) == 1


@pytest.mark.parametrize(
    ("bad", "codes"),
    [
        ({100: "101|one|too|many", 101: "102|one-too-few"}, ["E6001003", "E6001003"]),  # -1 +1 = 0
        ({2000: "2001|" + "x" * 5000 + "|DEU"}, ["E6001001"]),  # right count, too long
        ({2500: "r" * 600 + "|Berlin|DEU"}, ["E6001002"]),  # right count, recId too long
    ],
)
def test_validation_counts_like_line_by_line(client: Client, bad: dict[int, str], codes: list[str]) -> None:
    """Blocks of valid lines are validated in bulk; a block with any invalid line must still give that
    line its own verdict (each job here is one block with one kind of invalid line)."""
    lines = [f"{i}|Main Street {i}, Berlin|DEU" for i in range(1, 3001)]
    for i, line in bad.items():
        lines[i] = line
    job_id, done = client.run("recId|q|in\n" + "\n".join(lines) + "\n")
    assert done["records"]["valid"] == 3000 - len(bad) and done["records"]["invalid"] == len(bad)
    errors = client.download(job_id, "errors").text.splitlines()[1:]
    assert [e.split("|", 2)[1] for e in errors] == codes


def test_validation_of_generated_recids(client: Client, emu: EmulatorServer) -> None:
    """Generated recIds longer than max_recid_length are invalid too (here from record 1000 on)."""
    emu.admin.settings(max_recid_length=3)
    job_id, done = client.run("q|in\n" + "Berlin|DEU\n" * 1200)
    assert done["records"]["valid"] == 999 and done["records"]["invalid"] == 201
    errors = client.download(job_id, "errors").text.splitlines()[1:]
    assert errors[0].startswith("1000...|E6001002|") and errors[-1].startswith("1200...|E6001002|")
