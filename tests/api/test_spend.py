"""The spend rules, sans I/O: reasons, the bound and its refusal, the estimate, the empty-query rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_here_batch.api.inputs import REQUIRED_COLUMNS, empty_query
from airflow_here_batch.api.models import ServiceType
from airflow_here_batch.api.spend import (
    SEND_REASONS,
    SKIP_REASONS,
    SendCounts,
    SendReason,
    SkipReason,
    SpendBound,
    SpendLimitExceeded,
    breakdown,
    estimate_cost,
    parse_bool,
    parse_bound,
    parse_choice,
    parse_price,
)


def test_every_reason_has_its_meaning_and_what_to_look_at() -> None:
    assert set(SEND_REASONS) == set(SendReason)
    assert set(SKIP_REASONS) == set(SkipReason)
    assert all(meaning and hint for meaning, hint in SEND_REASONS.values())


def test_the_refusal_names_count_bound_origin_breakdown_estimate_and_how_to_go_on() -> None:
    bound = SpendBound(100, "[here_batch] max_records_to_send", price_per_1000=0.83)
    with pytest.raises(SpendLimitExceeded) as caught:
        bound.check(322, {"changed": 22, "new": 300}, what="this run")
    text = str(caught.value)
    assert text.startswith(
        "this run would send 322 records to HERE, above the bound of 100 "
        "([here_batch] max_records_to_send); nothing was uploaded."
    )
    assert "by reason: 300 new, 22 changed" in text  # in the reasons' order
    assert "estimated cost: 0.27 (at 0.83 per 1,000 records)" in text
    assert '{"max_records_to_send": 322}' in text and "fix the source" in text
    assert "a source query that lost its WHERE" in text  # what to look at for "new"
    refused = caught.value
    assert (refused.count, refused.bound, refused.by_reason) == (322, 100, {"new": 300, "changed": 22})


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**7))
def test_the_bound_refuses_exactly_above_it(count: int, limit: int) -> None:
    bound = SpendBound(limit)
    if count <= limit:
        bound.check(count, {"new": count})
    else:
        with pytest.raises(SpendLimitExceeded):
            bound.check(count, {"new": count})
    SpendBound(None).check(count)  # no bound: never refused


def test_the_estimate_needs_a_price() -> None:
    assert estimate_cost(322, None) is None
    assert estimate_cost(1_000_000, 0.5) == 500.0
    assert estimate_cost(1, 0.83) == 0.0008


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("None", None), (" 5000 ", 5000), (0, 0), ("1_000", 1000), (2.0, 2)],
)
def test_bounds_as_given_or_rendered(value: object, expected: int | None) -> None:
    assert parse_bound(value) == expected


@pytest.mark.parametrize("value", [-1, "-5", "ten", 1.5, True, "inf"])
def test_a_bound_that_is_not_a_whole_number_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match="max_records_to_send="):
        parse_bound(value)


def test_prices_flags_and_choices() -> None:
    assert parse_price("0.83") == 0.83 and parse_price("") is None
    with pytest.raises(ValueError, match="price_per_1000_records"):
        parse_price("-1")
    assert parse_bool("True", name="dry_run") is True and parse_bool("false", name="dry_run") is False
    with pytest.raises(ValueError, match="dry_run='maybe'"):
        parse_bool("maybe", name="dry_run")
    assert parse_choice(None, name="x") == "keep" and parse_choice(" Resend ", name="x") == "resend"
    with pytest.raises(ValueError, match="'keep'"):
        parse_choice("always", name="on_output_columns_change")


def test_counts_by_reason_for_the_summary() -> None:
    counts = SendCounts()
    counts.add(SendReason.CHANGED, 2)
    counts.add(SendReason.NEW)
    counts.skip(SkipReason.EMPTY_QUERY, 4)
    counts.keep(SendReason.OUTPUT_COLUMNS_CHANGED, 10)
    assert counts.summary(1.0) == {
        "records_sent_by_reason": {"new": 1, "changed": 2},
        "records_skipped": 4,
        "records_skipped_by_reason": {"empty_query": 4},
        "records_would_resend": {"output_columns_changed": 10},
        "estimated_cost": 0.003,
    }
    assert breakdown({}) == "none"
    assert SpendBound(5000, "x", 1.0).describe(3, counts.sent, dry_run=True) == (
        "would send 3 records (1 new, 2 changed), bound 5,000 (x), estimated cost 0.00 at 1 per 1,000"
    )


@pytest.mark.parametrize(
    ("service", "values", "empty"),
    [
        ("geocode", {"recId": "1", "q": "Berlin"}, False),
        ("geocode", {"recId": "1", "q": "", "in": "countryCode:DEU"}, True),  # a filter is no query
        ("geocode", {"recId": "1", "q": "  \t"}, True),
        ("geocode", {"recId": "1", "q": None}, True),
        ("geocode", {"recId": "1"}, True),
        ("geocode", {"recId": "1", "q": "", "qq": "city=Berlin"}, False),
        ("revgeocode", {"recId": "1", "at": "52.5,13.4"}, False),
        ("revgeocode", {"recId": "1", "at": " "}, True),
        ("lookup", {"recId": "1", "id": "here:pds:place:276u33db-8097f3194e4b411081b761ea9a366776"}, False),
        ("lookup", {"recId": "1", "id": ""}, True),
    ],
)
def test_an_empty_query_is_one_rule_over_the_services_key_columns(
    service: str, values: dict, empty: bool
) -> None:
    assert empty_query(service, values) is empty
    assert empty_query(ServiceType.from_name(service), values) is empty
    assert REQUIRED_COLUMNS[ServiceType.from_name(service)]  # the rule reads the one table
