"""Issue 19: a recId on more than one record is refused before upload, naming both records and the id,
in bounded memory and whatever the records' order."""

from __future__ import annotations

import contextlib
import gzip
import io
import random
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_here_batch.api.inputs import (
    InputChecker,
    InputValidationError,
    iter_input_lines,
    rows_to_lines,
    validate_lines,
)
from airflow_here_batch.api.recids import DuplicateRecId, UniqueRecIds, find_duplicate_recids

RULE = "recIds must be unique within a job (HERE returns results by recId)"


def _refusal(lines: list[str], **kwargs: object) -> InputValidationError:
    with pytest.raises(InputValidationError) as info:
        validate_lines(lines, service="geocode", **kwargs)  # type: ignore[arg-type]
    return info.value


# -- the finder --------------------------------------------------------------------------------------


class _SameHash(str):
    """A recId whose hash is that of every other _SameHash: a 64-bit collision, on demand."""

    def __hash__(self) -> int:
        return 42


def test_distinct_recids_need_one_pass() -> None:
    finder = UniqueRecIds()
    for n in range(1000):
        finder.add(f"A-{n}", n + 2)
    assert finder.finish() is False and finder.duplicates() == [] and finder.added == 1000


def test_a_repeat_is_confirmed_on_the_text_and_names_every_line() -> None:
    pairs = [(2, "A-1"), (3, "B"), (7, "A-1"), (9, "C"), (12, "A-1"), (13, "C")]
    assert find_duplicate_recids(lambda: pairs) == [
        DuplicateRecId("A-1", (2, 7, 12)),
        DuplicateRecId("C", (9, 13)),
    ]


def test_a_hash_collision_of_different_recids_is_no_refusal() -> None:
    pairs = [(2, _SameHash("A")), (3, _SameHash("B")), (4, "C")]
    finder = UniqueRecIds()
    for line, rec_id in pairs:
        finder.add(rec_id, line)
    assert finder.finish() is True  # the hashes repeat: a second pass is asked for
    assert finder.unconfirmed == 1
    for line, rec_id in pairs:
        finder.add(rec_id, line)
    assert finder.finish() is False
    assert finder.duplicates() == [] and finder.unconfirmed == 0


@given(
    ids=st.lists(st.sampled_from(["A-1", "A-2", "b", "", " b", "é", "北京", "1"]), max_size=30),
    seed=st.integers(0, 2**32),
)
def test_the_result_does_not_depend_on_the_order(ids: list[str], seed: int) -> None:
    records = list(enumerate(ids, start=2))
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    expected = {i for i in set(ids) if ids.count(i) > 1}
    for given_order in (records, shuffled):
        found = find_duplicate_recids(lambda given_order=given_order: given_order)  # type: ignore[misc]
        assert {d.rec_id for d in found} == expected
        for d in found:
            assert list(d.lines) == [n for n, r in records if r == d.rec_id]  # every line, ascending


def test_the_message_names_both_records_the_id_and_the_rule() -> None:
    dup = DuplicateRecId("A-1", (7, 12))
    assert dup.message() == f"line 7 and line 12 both have recId 'A-1'; {RULE}: give each record its own id"
    assert DuplicateRecId("x" * 600, (1, 2, 3, 4)).problem().startswith(f"both have recId {'x' * 80!r}...")
    assert "(2 more records too)" in DuplicateRecId("k", (1, 2, 3, 4)).problem()
    assert "recId (from key column 'id') 'k'" in dup.__class__("k", (1, 2)).problem("key column 'id'")


def test_memory_is_a_few_bytes_per_record() -> None:
    records = 200_000
    ids = [f"C-{n:07d}" for n in range(records)]
    tracemalloc.start()
    try:
        finder = UniqueRecIds()
        for n, rec_id in enumerate(ids):
            finder.add(rec_id, n)
        finder.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / records < 12  # 8-byte hashes, the arrays' slack, one bucket's set at a time


# -- through the input checker -----------------------------------------------------------------------


def test_repeated_recid_in_a_file_is_refused_naming_both_lines() -> None:
    data = b"recId|q\nA-1|Berlin\nB|Paris\nC|Rome\nD|Oslo\nE|Bern\nA-1|Dam 1, Amsterdam\n"

    @contextlib.contextmanager
    def reread() -> Iterator[Iterator[bytes]]:
        yield iter_input_lines(io.BytesIO(data))

    with pytest.raises(InputValidationError) as info:
        validate_lines(iter_input_lines(io.BytesIO(data)), service="geocode", reread=reread)
    error = info.value
    expected = f"input line 2 and line 7: both have recId 'A-1'; {RULE}: give each record its own id"
    assert str(error) == expected
    assert error.line == 2 and error.field == "recId" and error.counts == {"recid-duplicate": 1}
    assert error.problems[0].fatal


def test_gzip_crlf_bom_file_is_checked_like_any_other() -> None:
    data = gzip.compress(b"\xef\xbb\xbfrecId|q\r\n1|Berlin\r\n2|Paris\r\n1|Rome\r\n")

    @contextlib.contextmanager
    def reread() -> Iterator[Iterator[bytes]]:
        yield iter_input_lines(io.BytesIO(data))

    with pytest.raises(InputValidationError, match="line 2 and line 4: both have recId '1'"):
        validate_lines(iter_input_lines(io.BytesIO(data)), service="geocode", reread=reread)


def test_quoting_does_not_hide_a_repeat() -> None:
    # HERE unquotes values: '"A-1"' and 'A-1' are one recId (the first line takes the full path).
    error = _refusal(["recId|q", '"A-1"|Berlin', "A-1|Paris"])
    assert "line 2 and line 3: both have recId 'A-1'" in str(error)


def test_rows_whose_keys_become_the_same_text_are_refused_naming_the_rows() -> None:
    rows = [{"recId": 1, "q": "Berlin"}, {"recId": "2", "q": "Paris"}, {"recId": "1", "q": "Rome"}]
    with pytest.raises(InputValidationError) as info:
        validate_lines(
            list(rows_to_lines(rows)),
            service="geocode",
            label=lambda n: "header" if n == 1 else f"row {n - 1}",
        )
    assert "row 1 and row 3: both have recId '1'" in str(info.value)


def test_url_query_form_and_input_columns_and_header_constants() -> None:
    assert "line 1 and line 3: both have recId '5'" in str(
        _refusal(["q=Berlin&recId=5", "q=Paris&recId=6", "recId=5&q=Rome"])
    )
    assert "line 1 and line 2" in str(_refusal(["7|Berlin", "7|Paris"], input_columns="recId|q"))
    # A constant recId in the header is every record's.
    assert "line 2 and line 3: both have recId '9'" in str(_refusal(["q|recId=9", "Berlin", "Paris"]))
    validate_lines(["q|recId=9", "Berlin"], service="geocode")  # one record: nothing repeats


def test_records_without_recids_and_bad_records_are_not_compared() -> None:
    assert validate_lines(["q", "Berlin", "Berlin"], service="geocode").records == 2  # HERE numbers them
    # Line 3 is left out (a wrong number of values): its recId never reaches HERE.
    report = validate_lines(["recId|q", "1|Berlin", "1|a|b"], service="geocode", on_bad_record="skip")
    assert report.records == 1 and report.rejected == 1


def test_skip_mode_refuses_the_run() -> None:
    rejected: list[int] = []
    error = _refusal(
        ["recId|q", "1|Berlin", "2|a|b", "1|Paris"],
        on_bad_record="skip",
        on_reject=lambda checked: rejected.append(checked.number),
    )
    assert error.counts == {"recid-duplicate": 1, "value-count": 1} and rejected == [3]
    assert "line 2 and line 4: both have recId '1'" in str(error)


def test_many_repeats_are_counted_and_the_first_listed() -> None:
    lines = ["recId|q"] + [f"{n % 30}|x" for n in range(90)]
    error = _refusal(lines)
    assert error.counts == {"recid-duplicate": 30} and len(error.problems) == 20
    assert str(error).startswith("input: 30 problems (recId given to more than one record: 30)")
    assert error.problems[0].where == "line 2 and line 32" and "(1 more record too)" in str(error)


def test_a_stream_read_once_is_still_refused() -> None:
    # No way to read it again: the repeat is known from the hashes only; the message says so.
    error = _refusal(iter(["recId|q\n", "1|Berlin\n", "1|Paris\n"]))  # type: ignore[arg-type]
    assert error.counts == {"recid-duplicate": 1}
    assert "1 recId is given to more than one record (the input could be read only once" in str(error)


def test_upload_pass_does_not_keep_hashes() -> None:
    checker = InputChecker(service="geocode", unique_recids=False)
    for _ in checker.check(["recId|q", "1|a", "1|b"]):
        pass
    assert checker.recids is None and checker.duplicate_recids() == []
