"""The split's planning rules (sans I/O): where parts are cut, what each part's lines look like, recIds."""

from __future__ import annotations

import itertools
import random

import pytest

from airflow_here_batch.api.inputs import MAX_INPUT_BYTES, MAX_RECORDS, InputValidationError, validate_lines
from airflow_here_batch.api.records import parse_query_form, split_record
from airflow_here_batch.api.split import (
    PartPlanner,
    SplitLimits,
    detect_layout,
    has_header,
    part_name,
    safe_segment,
)


def cut(sizes: list[int], limits: SplitLimits, header: int) -> list[list[int]]:
    planner = PartPlanner(limits, header)
    parts: list[list[int]] = []
    for size in sizes:
        index = planner.place(size)
        if index == len(parts):
            parts.append([])
        assert index == len(parts) - 1, "parts are filled in order, one after the other"
        parts[index].append(size)
    return parts


def test_two_and_a_half_limits_make_three_parts() -> None:
    assert [len(p) for p in cut([10] * 10, SplitLimits(max_records=4), 8)] == [4, 4, 2]


@pytest.mark.parametrize("seed", range(40))
def test_parts_respect_both_limits_keep_order_and_are_cut_only_when_full(seed: int) -> None:
    rng = random.Random(seed)
    limits = SplitLimits(max_records=rng.randint(1, 30), max_bytes=rng.randint(60, 400))
    header = rng.randint(0, 40)
    sizes = [rng.randint(1, limits.max_bytes - header) for _ in range(rng.randint(1, 300))]
    parts = cut(sizes, limits, header)
    assert [s for part in parts for s in part] == sizes  # nothing dropped, split or reordered
    for part in parts:
        assert 1 <= len(part) <= limits.max_records
        assert header + sum(part) <= limits.max_bytes  # the header counts in every part
    for part, following in itertools.pairwise(parts):  # greedy: the next record did not fit
        assert len(part) == limits.max_records or header + sum(part) + following[0] > limits.max_bytes


def test_limits_default_to_heres_and_refuse_more() -> None:
    assert SplitLimits() == SplitLimits(MAX_RECORDS, MAX_INPUT_BYTES)
    with pytest.raises(ValueError, match="1,000,000"):
        SplitLimits(max_records=MAX_RECORDS + 1)
    with pytest.raises(ValueError, match="500 MB"):
        SplitLimits(max_bytes=MAX_INPUT_BYTES + 1)
    with pytest.raises(ValueError):
        SplitLimits(max_records=0)


def test_a_record_that_cannot_fit_is_refused_not_cut() -> None:
    planner = PartPlanner(SplitLimits(max_bytes=100), header_bytes=50)
    with pytest.raises(ValueError, match="record 1"):
        planner.place(51)


def test_generated_recids_are_the_records_ordinals_in_the_whole_input() -> None:
    layout = detect_layout("q\n", input_columns=None)
    assert layout.header == b"recId|q\n" and layout.input_has_header and layout.generate_recids
    assert layout.record(b"Berlin\n", 1) == b"1|Berlin\n"
    assert layout.record(b"10 Downing Street, London", 1_000_001) == b"1000001|10 Downing Street, London\n"
    # a quoted value stays one value
    line = layout.record(b'"Berlin|Mitte"\n', 7)
    assert split_record(line.decode(), "|") == ["7", "Berlin|Mitte"]


def test_user_recids_are_kept_verbatim() -> None:
    layout = detect_layout("\ufeffrecId|q|limit=2\r\n", input_columns=None)
    assert layout.header == b"recId|q|limit=2\n" and not layout.generate_recids
    assert layout.record(b"cust-9|Berlin\r\n", 5) == b"cust-9|Berlin\r\n"


def test_input_columns_become_a_header_in_every_part() -> None:
    layout = detect_layout("Berlin;DEU\n", input_columns="q;in", delimiter=";")
    assert layout.header == b"recId;q;in\n" and not layout.input_has_header
    assert layout.record(b"Berlin;DEU\n", 1) == b"1;Berlin;DEU\n"
    tab = detect_layout("1\tBerlin\n", input_columns="recId\tq", delimiter="\\t")
    assert tab.header == b"recId\tq\n" and not tab.generate_recids


def test_query_form_records_get_a_recid_parameter_unless_they_carry_one() -> None:
    layout = detect_layout("q=Berlin&limit=1\n", input_columns=None)
    assert layout.query_form and layout.header == b"" and not layout.input_has_header
    assert parse_query_form(layout.record(b"q=Berlin&limit=1\n", 3).decode().rstrip())["recId"] == "3"
    assert layout.record(b"q=Rome&recId=r-1\n", 4) == b"q=Rome&recId=r-1\n"


def test_merge_and_path_helpers() -> None:
    assert has_header(b"recId|seqNumber\n") and has_header(b"recId|errorCode|errorMessage\n")
    assert not has_header(b'{"recId": "1"}\n', output_type="jsonl")
    assert [part_name(i) for i in (0, 9, 10)] == ["part-00001", "part-00010", "part-00011"]
    assert safe_segment("manual__2026-11-29T08:00:00+00:00") == "manual__2026-11-29T08_00_00_00_00"


# -- issue 19: an empty split input is nothing to send, not a failed plan ------------------------------


@pytest.mark.parametrize("lines", [[], ["recId|q\n"]], ids=["empty", "header"])
def test_an_input_without_records_plans_no_part(lines: list[str]) -> None:
    # A single job refuses it (HERE would run a job of nothing) ...
    with pytest.raises(InputValidationError) as info:
        validate_lines(lines, service="geocode")
    assert info.value.counts == {"empty": 1}
    # ... a split's validation pass (allow_empty) reports no record, and the planner cuts no part.
    assert validate_lines(lines, service="geocode", allow_empty=True).records == 0
    assert PartPlanner(SplitLimits(max_records=10), header_bytes=8).parts == 0


def test_an_input_without_records_still_needs_a_good_header() -> None:
    with pytest.raises(InputValidationError, match=r"6\.2 name"):
        validate_lines(["searchText\n"], service="geocode", allow_empty=True)
    with pytest.raises(InputValidationError, match="is blank"):
        validate_lines(["\n", "recId|q\n"], service="geocode", allow_empty=True)



@pytest.mark.parametrize("lines", [["\n"], ["\n", "  \n", "\t\n"]])
@pytest.mark.parametrize("allow_empty", [False, True])
def test_blank_lines_only_are_refused_even_where_empty_is_allowed(
    lines: list[str], allow_empty: bool
) -> None:
    """Issue 19 §4: blank lines alone have no header (a broken export, not an empty one): a clear error,
    for a single job and a split alike, never a clean skip that would send nothing without a word."""
    with pytest.raises(InputValidationError) as info:
        validate_lines(lines, service="geocode", allow_empty=allow_empty)
    assert str(info.value).startswith("the input holds only blank lines: it holds no records and no header")
    assert info.value.counts == {"empty": 1}
