"""The query key (issue 24): the same question, the same key; anything HERE could answer differently,
another key."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_here_batch.api.queries import FIELD_RULES, QUERY_KEY_LENGTH, normalised, query_key


def test_spellings_of_one_address_share_a_key() -> None:
    spellings = [
        "Jungfernstieg 7, Hamburg",
        "jungfernstieg  7,  hamburg",
        " JUNGFERNSTIEG 7, Hamburg ",
        "Jungfernstieg\t7,\u00a0Hamburg",
    ]
    keys = {query_key("geocode", {"recId": str(i), "q": q}) for i, q in enumerate(spellings)}
    assert len(keys) == 1
    (key,) = keys
    assert len(key) == QUERY_KEY_LENGTH and int(key, 16) >= 0


def test_unicode_forms_share_a_key() -> None:
    composed = "Stra\u00dfe am M\u00fchlenteich 1"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert query_key("geocode", {"q": composed}) == query_key("geocode", {"q": decomposed})


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"q": "Jungfernstieg 7, Hamburg"}, {"q": "Jungfernstieg 7 Hamburg"}),  # punctuation
        ({"q": "Straße 1"}, {"q": "Strasse 1"}),  # spelling: never folded
        ({"q": "a", "in": "countryCode:DEU"}, {"q": "a", "in": "countryCode:deu"}),  # codes exact
        ({"q": "a", "in": "countryCode:DEU"}, {"q": "a", "in": "countryCode:AUT"}),
        ({"q": "a"}, {"q": "a", "in": ""}),  # another set of columns
        ({"q": "a", "lang": "de-DE"}, {"q": "a", "lang": "en-US"}),
        ({"q": "a", "limit": "1"}, {"q": "a", "limit": "3"}),
        ({"q": "a"}, {"qq": "a"}),
        ({"qq": "city=Berlin;street=Unter den Linden"}, {"qq": "street=Berlin;city=Unter den Linden"}),
        ({"id": "here:pds:place:276u0vhj-ABC"}, {"id": "here:pds:place:276u0vhj-abc"}),  # ids exact
    ],
)
def test_requests_HERE_could_answer_differently_never_share_a_key(
    one: dict[str, str], other: dict[str, str]
) -> None:
    service = "lookup" if "id" in one else "geocode"
    assert query_key(service, {"recId": "1", **one}) != query_key(service, {"recId": "1", **other})


def test_service_and_output_columns_are_part_of_the_question() -> None:
    request = {"recId": "1", "in": "countryCode:DEU"}
    assert query_key("geocode", request) != query_key("revgeocode", request)
    asked = {"q": "a"}
    assert query_key("geocode", asked, ["positionLat"]) != query_key("geocode", asked, ["addressCity"])
    # Case and order of output columns are ignored, as HERE matches them.
    assert query_key("geocode", {"q": "a"}, ["positionLat", "addressCity"]) == query_key(
        "geocode", {"q": "a"}, ["addresscity", "PositionLat"]
    )


def test_qualified_values_fold_case_but_not_field_names() -> None:
    assert normalised("qq", "city=BERLIN; street=Unter  den Linden") == "city=berlin;street=unter den linden"
    assert query_key("geocode", {"qq": "city=Berlin"}) != query_key("geocode", {"qq": "City=Berlin"})


def test_the_rules_table_names_only_free_text_columns() -> None:
    assert dict(FIELD_RULES) == {"q": "text", "qq": "qualified"}
    assert normalised("at", " 52.5,13.4 ") == "52.5,13.4"
    assert normalised("q", None) == ""


_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_columns = st.sampled_from(["q", "qq", "in", "at", "lang", "limit", "id"])
_requests = st.dictionaries(_columns, _values, min_size=1)
# Ways a request's text may be respelled: some are the same question, some are not.
_respell = st.sampled_from(
    [str.upper, str.lower, str.title, lambda v: f"  {v} ", lambda v: v.replace(" ", "   "),
     lambda v: unicodedata.normalize("NFD", v), lambda v: v + ",", lambda v: v.replace(",", " "), str]
)


@settings(max_examples=500, deadline=None)
@given(one=_requests, respell=st.dictionaries(_columns, _respell), drop=st.sets(_columns))
def test_one_key_exactly_when_the_same_question(one: dict[str, str], respell: dict, drop: set[str]) -> None:
    """Two requests share a key exactly when they have the same columns and, column by column, the same
    value under the column's rule (:data:`FIELD_RULES`): respelled in case or blanks in free text, the same
    question; in anything else, never merged."""
    other = {name: respell.get(name, str)(value) for name, value in one.items() if name not in drop}
    same = one.keys() == other.keys() and all(normalised(n, one[n]) == normalised(n, other[n]) for n in one)
    assert (query_key("geocode", one) == query_key("geocode", other)) == same


@settings(max_examples=200, deadline=None)
@given(request=_requests, rec_ids=st.tuples(st.text(max_size=8), st.text(max_size=8)))
def test_the_recid_is_never_part_of_the_question(request: dict[str, str], rec_ids: tuple[str, str]) -> None:
    assert query_key("geocode", {**request, "recId": rec_ids[0]}) == query_key(
        "geocode", {**request, "recId": rec_ids[1]}
    )
