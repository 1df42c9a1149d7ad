"""recIds given to more than one record: found in bounded memory, whatever the order, never by a guess.

HERE returns results by ``recId`` (shared doc ``here-batch-api-v7.md`` §8); two records with one id
come back as results nobody can tell apart, and a table keyed by ``recId`` keeps one of them. So every
input whose records would reach HERE with a repeated ``recId`` is refused before upload, naming both
records and the id. This module finds them; it is pure (no I/O) and used by
:class:`~airflow_here_batch.api.inputs.InputChecker` (files, inline text, bytes, XCom rows) and meant
for any other source of records (the SQL source's key column).

**How.** A first pass keeps 48 bits of a hash per recId (Python's ``hash`` of the text): 8 bits pick
one of 256 buckets, the next 40 are kept in the bucket as an ``array('I')`` and an ``array('B')``, 5 bytes
a record plus the arrays' ~6 % slack. At the end the hashes are compared bucket by bucket (a temporary
set of 1/256 of them at a time). When no hash repeats, no recId repeats: that is certain, and the usual
case costs one pass. When a hash repeats (a real repeat, or two different recIds with one hash: about
1 chance in 560 for a million records, 1 in 60 for three million), a second
pass over the same records collects the texts and lines of those recIds only, so every refusal is
confirmed on the real text and names the lines exactly. The result does not depend on the records'
order. Both passes must run in one process (Python's string hash is salted per process).

Usage::

    finder = UniqueRecIds()
    for line, rec_id in records():          # pass 1
        finder.add(rec_id, line)
    if finder.finish():                     # a hash repeats: confirm on the text
        for line, rec_id in records():      # pass 2: the same records again
            finder.add(rec_id, line)
        finder.finish()
    finder.duplicates()                     # [DuplicateRecId('A-1', (7, 12))], by first line

or, with a function that reads the records afresh: ``find_duplicate_recids(records)``.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["RECID_RULE", "DuplicateRecId", "UniqueRecIds", "find_duplicate_recids"]

#: Why a repeated recId is refused (ends every message about one).
RECID_RULE = "recIds must be unique within a job (HERE returns results by recId)"

_BUCKETS = 256  # hashes are kept in 256 arrays, compared one array at a time (bounded extra memory)
_KEPT = (1 << 48) - 1  # the hash bits kept: 8 choose the bucket, 40 are stored
_SHOWN = 80  # characters of a recId shown in a message


def _line_label(number: int) -> str:
    return f"line {number}"


def _shown(rec_id: str) -> str:
    return repr(rec_id) if len(rec_id) <= _SHOWN else repr(rec_id[:_SHOWN]) + "..."


@dataclass(frozen=True)
class DuplicateRecId:
    """One recId given to more than one record.

    :param rec_id: the recId, as it would be sent.
    :param lines: every line (or row, as numbered by the caller) holding it, ascending; at least two.
    """

    rec_id: str
    lines: tuple[int, ...]

    def where(self, label: Callable[[int], str] = _line_label) -> str:
        """The first two records, as the user knows them: ``line 7 and line 12``."""
        return f"{label(self.lines[0])} and {label(self.lines[1])}"

    def problem(self, field: str = "recId") -> str:
        """What is wrong and the fix, without the location: ``both have recId 'A-1'; recIds must ...``.

        :param field: where the recIds come from, as the user knows it (``recId``, or a key column:
            ``key column 'id'``).
        """
        more = len(self.lines) - 2
        also = f" ({more} more record{'s' if more > 1 else ''} too)" if more else ""
        name = "recId" if field == "recId" else f"recId (from {field})"
        return f"both have {name} {_shown(self.rec_id)}{also}; {RECID_RULE}: give each record its own id"

    def message(self, label: Callable[[int], str] = _line_label, field: str = "recId") -> str:
        """The whole sentence: ``line 7 and line 12 both have recId 'A-1'; recIds must be unique ...``."""
        return f"{self.where(label)} {self.problem(field)}"


class UniqueRecIds:
    """Finds repeated recIds in one or two passes over the records (see the module docstring).

    Memory: 5 bytes per record added in the first pass (see ``benchmarks/README.md``, "Duplicate
    recIds"), freed by :meth:`finish`; the second pass keeps only the recIds whose hash repeated.
    (8 bytes a record until 2026-12: a 3,000,000-record split plan then peaked above P7's 150 MB.)
    """

    def __init__(self) -> None:
        self._low: list[array[int]] | None = [array("I") for _ in range(_BUCKETS)]  # hash bits 8-39
        self._high: list[array[int]] | None = [array("B") for _ in range(_BUCKETS)]  # hash bits 40-47
        self._suspects: set[int] | None = None  # hashes seen more than once (second pass)
        self._found: dict[str, list[int]] = {}
        self._pass = 1
        self.added = 0  # records added in the first pass

    def add(self, rec_id: str, line: int) -> None:
        """A record's recId and its line (or row) number; in the second pass the same records again."""
        h = hash(rec_id)
        if self._pass == 1:
            bucket = h & 0xFF
            self._low[bucket].append((h >> 8) & 0xFFFFFFFF)  # type: ignore[index]
            self._high[bucket].append((h >> 40) & 0xFF)  # type: ignore[index]
        elif self._pass == 2 and h & _KEPT in self._suspects:  # type: ignore[operator]
            self._found.setdefault(rec_id, []).append(line)

    def wanted(self, rec_id: str) -> bool:
        """In the second pass: whether ``rec_id`` is one being confirmed (its hash repeated), so a caller
        can keep more about its records (a source key) than :meth:`add` does."""
        return self._pass == 2 and hash(rec_id) & _KEPT in self._suspects  # type: ignore[operator]

    def finish(self) -> bool:
        """End the current pass. After the first: ``True`` when a hash repeats, so the same records must
        be added once more (the second pass) to confirm on the text; after the second: ``False``."""
        if self._pass == 1:
            self.added = sum(map(len, self._low))  # type: ignore[arg-type]
            suspects: set[int] = set()
            for index, (low, high) in enumerate(zip(self._low, self._high, strict=True)):  # type: ignore[arg-type]
                kept = [(hi << 40) | (lo << 8) | index for lo, hi in zip(low, high, strict=True)]
                if len(set(kept)) != len(kept):
                    seen: set[int] = set()
                    for h in kept:
                        if h in seen:
                            suspects.add(h)
                        seen.add(h)
            self._low = self._high = None
            if suspects:
                self._suspects, self._pass = suspects, 2
                return True
        self._pass = 3
        return False

    @property
    def unconfirmed(self) -> int:
        """Hashes that repeat but were not confirmed by a second pass (0 once it ran)."""
        return len(self._suspects or ()) if self._pass == 2 else 0

    def duplicates(self) -> list[DuplicateRecId]:
        """The repeated recIds, confirmed on their text, ordered by their first line."""
        found = [DuplicateRecId(k, tuple(sorted(v))) for k, v in self._found.items() if len(v) > 1]
        return sorted(found, key=lambda d: d.lines)


def find_duplicate_recids(records: Callable[[], Iterable[tuple[int, str]]]) -> list[DuplicateRecId]:
    """The repeated recIds among ``records()``: ``(line, recId)`` pairs, in any order.

    ``records`` is called once, and a second time (it must give the same pairs) only when a hash
    repeats. Memory: see :class:`UniqueRecIds`.
    """
    finder = UniqueRecIds()
    for line, rec_id in records():
        finder.add(rec_id, line)
    if finder.finish():
        for line, rec_id in records():
            finder.add(rec_id, line)
        finder.finish()
    return finder.duplicates()
