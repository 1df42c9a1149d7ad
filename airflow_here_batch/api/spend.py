"""What a run sends and what it may cost, sans I/O: the reasons a record is sent, the spend bound, the
estimate.

HERE bills per record processed (shared doc ``here-batch-api-v7.md`` §11; whether a record HERE fails
is charged is not documented, so it counts as billed: the safe side), so every task that can upload
counts its records *before* the upload, by reason, and checks them against a bound:

* :class:`SendReason` (the table :data:`SEND_REASONS`): why a record is sent (new, changed, expired by
  ``max_age``, forced by ``full_refresh``, failed last time, output columns changed, fingerprint version
  changed, no comparison at all);
* :class:`SkipReason` (:data:`SKIP_REASONS`): why a record is *not* sent though it is in the source
  (an empty query: HERE would fail and bill it);
* :class:`SendCounts`: the counts by reason, plus the records kept by the run's choice that a re-send
  would cover (:attr:`SendCounts.would_resend`);
* :class:`SpendBound`: the bound and where it came from; :meth:`SpendBound.check` raises
  :class:`SpendLimitExceeded` with the count, the bound, the breakdown and how to go on;
* :func:`estimate_cost`: records x price per 1,000 (no price is built in: HERE's prices depend on the
  contract).

Nothing here reads Airflow's config or a task's context: the operators resolve the bound
(:mod:`airflow_here_batch.utils.spend`) and hand in plain values.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BOUND_PARAM",
    "ON_CHANGE_CHOICES",
    "SEND_REASONS",
    "SKIP_REASONS",
    "SendCounts",
    "SendReason",
    "SkipReason",
    "SpendBound",
    "SpendLimitExceeded",
    "breakdown",
    "estimate_cost",
    "parse_bool",
    "parse_bound",
    "parse_choice",
    "parse_price",
    "total",
]

#: The DAG param the refusal message names to raise the bound for one run.
BOUND_PARAM = "max_records_to_send"


class SendReason(str, enum.Enum):
    """Why a record is sent. The value is the key in logs, XCom (``records_sent_by_reason``) and asset
    events."""

    NEW = "new"
    CHANGED = "changed"
    EXPIRED = "expired"
    FAILED_BEFORE = "failed_before"
    FULL_REFRESH = "full_refresh"
    NOT_INCREMENTAL = "not_incremental"
    OUTPUT_COLUMNS_CHANGED = "output_columns_changed"
    FINGERPRINT_VERSION_CHANGED = "fingerprint_version_changed"
    INPUT = "input"


#: What each reason means, and what to look at when its count is unexpected (one row per reason).
SEND_REASONS: Mapping[SendReason, tuple[str, str]] = {
    SendReason.NEW: (
        "not in the target table yet",
        "a source query that lost its WHERE, or a new target table",
    ),
    SendReason.CHANGED: (
        "its request differs from the one stored with its result",
        "an upstream feed that rewrote the addresses",
    ),
    SendReason.EXPIRED: ("geocoded longer ago than max_age", "max_age"),
    SendReason.FAILED_BEFORE: ("its last geocoding failed (resend_failed=True)", "resend_failed"),
    SendReason.FULL_REFRESH: ("full_refresh asked for every record", "the full_refresh argument or param"),
    SendReason.NOT_INCREMENTAL: ("incremental=False: every record is sent", "incremental=True"),
    SendReason.OUTPUT_COLUMNS_CHANGED: (
        "its stored result was asked with other output columns (on_output_columns_change='resend')",
        "on_output_columns_change",
    ),
    SendReason.FINGERPRINT_VERSION_CHANGED: (
        "its stored fingerprint is of another version (on_fingerprint_version_change='resend')",
        "on_fingerprint_version_change",
    ),
    SendReason.INPUT: ("a record of the input file", "the input"),
}


class SkipReason(str, enum.Enum):
    """Why a source record is not sent (``records_skipped_by_reason``)."""

    EMPTY_QUERY = "empty_query"


#: What each skip reason means (the ``error_message`` of its row in the target table).
SKIP_REASONS: Mapping[SkipReason, str] = {
    SkipReason.EMPTY_QUERY: "the query is empty, NULL or blank: not sent (HERE would fail and bill it)",
}

#: Values of ``on_output_columns_change`` / ``on_fingerprint_version_change``: keep the stored results
#: (default: nothing re-sent for that reason, the count logged) or re-send the records.
ON_CHANGE_CHOICES = ("keep", "resend")


class SpendLimitExceeded(ValueError):
    """A run would send more records than its bound allows; nothing has been uploaded.

    :param count: records the run would send.
    :param bound: the bound.
    :param by_reason: the count by :class:`SendReason` value.
    """

    def __init__(self, message: str, *, count: int, bound: int, by_reason: Mapping[str, int]) -> None:
        super().__init__(message)
        self.count = count
        self.bound = bound
        self.by_reason = dict(by_reason)


@dataclass
class SendCounts:
    """Records of one run by reason.

    :param sent: records to send, by :class:`SendReason` value.
    :param skipped: records not sent, by :class:`SkipReason` value.
    :param would_resend: records kept by ``on_..._change="keep"`` that ``"resend"`` would send, by
        :class:`SendReason` value.
    """

    sent: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    would_resend: dict[str, int] = field(default_factory=dict)

    def add(self, reason: SendReason | str, n: int = 1) -> None:
        key = reason.value if isinstance(reason, SendReason) else str(reason)
        self.sent[key] = self.sent.get(key, 0) + n

    def skip(self, reason: SkipReason | str, n: int = 1) -> None:
        key = reason.value if isinstance(reason, SkipReason) else str(reason)
        self.skipped[key] = self.skipped.get(key, 0) + n

    def keep(self, reason: SendReason | str, n: int = 1) -> None:
        key = reason.value if isinstance(reason, SendReason) else str(reason)
        self.would_resend[key] = self.would_resend.get(key, 0) + n

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self, price_per_1000: float | None = None) -> dict[str, Any]:
        """The XCom/asset-event keys: ``records_sent_by_reason``, ``records_skipped``,
        ``records_skipped_by_reason``, ``records_would_resend`` and ``estimated_cost`` (``None``
        without a price)."""
        return {
            "records_sent_by_reason": _ordered(self.sent),
            "records_skipped": self.total_skipped,
            "records_skipped_by_reason": dict(sorted(self.skipped.items())),
            "records_would_resend": _ordered(self.would_resend),
            "estimated_cost": estimate_cost(self.total_sent, price_per_1000),
        }


def _ordered(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts in :class:`SendReason` order, zeros left out."""
    order = {r.value: i for i, r in enumerate(SendReason)}
    return {k: v for k, v in sorted(counts.items(), key=lambda kv: order.get(kv[0], 99)) if v}


def breakdown(counts: Mapping[str, int]) -> str:
    """``"300 new, 22 changed"`` (in :class:`SendReason` order), or ``"none"``."""
    parts = [f"{n:,} {reason.replace('_', ' ')}" for reason, n in _ordered(counts).items()]
    return ", ".join(parts) or "none"


def estimate_cost(records: int, price_per_1000: float | None) -> float | None:
    """``records / 1000 * price_per_1000``, rounded to 4 decimals; ``None`` without a price.

    The currency is the price's. HERE's prices are per contract (no price is built in).
    """
    if price_per_1000 is None:
        return None
    return round(records / 1000.0 * float(price_per_1000), 4)


def parse_bound(value: Any, *, name: str = BOUND_PARAM) -> int | None:
    """A bound as given (int, or a rendered template such as ``"5000"``); ``None``/``""``/``"None"``
    means no bound given.

    :raises ValueError: for a negative number or text that is not a whole number.
    """
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: give a whole number of records, e.g. 5000")
        return None
    text = str(value).strip().replace("_", "").replace(",", "")
    if text.lower() in ("", "none", "null"):
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{name}={value!r}: give a whole number of records, e.g. 5000") from None
    if not math.isfinite(number) or number < 0 or not number.is_integer():
        raise ValueError(f"{name}={value!r}: give a whole number of records (0 or more), e.g. 5000")
    return int(number)


def parse_price(value: Any, *, name: str = "price_per_1000_records") -> float | None:
    """A price per 1,000 records (a number or its text); ``None``/``""`` means none.

    :raises ValueError: for a negative or non-numeric price.
    """
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() in ("", "none", "null"):
        return None
    try:
        price = float(text)
    except ValueError:
        raise ValueError(f"{name}={value!r}: give a number, e.g. 0.83") from None
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"{name}={value!r}: give a number of 0 or more, e.g. 0.83")
    return price


def parse_bool(value: Any, *, name: str) -> bool:
    """A flag as given or rendered (``True``, ``"true"``, ``"{{ params.dry_run }}"`` -> ``"False"``).

    :raises ValueError: for text that is not a yes/no value.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off", "none"):
        return False
    raise ValueError(f"{name}={value!r}: give true or false")


def parse_choice(value: Any, *, name: str) -> str:
    """``"keep"`` or ``"resend"`` (``None``/``""``: ``"keep"``).

    :raises ValueError: for another value.
    """
    text = str(value or "keep").strip().lower()
    if text not in ON_CHANGE_CHOICES:
        raise ValueError(f"{name}={value!r}: use 'keep' (default) or 'resend'")
    return text


@dataclass(frozen=True)
class SpendBound:
    """The most records one run (a task, a split with all its parts, mapped submits together) may send.

    :param limit: the bound, or ``None`` for none.
    :param origin: where it came from, named in the refusal (``"the task's max_records_to_send"``,
        ``"[here_batch] max_records_to_send"``).
    :param price_per_1000: the price per 1,000 records for the estimate, or ``None``.
    """

    limit: int | None = None
    origin: str = "max_records_to_send"
    price_per_1000: float | None = None

    def check(
        self, count: int, by_reason: Mapping[str, int] | None = None, *, what: str = "this run"
    ) -> None:
        """Pass when ``count`` is within the bound (or there is none).

        :param count: records ``what`` would send.
        :param by_reason: the count by reason (``{"new": 300, "changed": 22}``).
        :param what: names the scope in the message (``"this split (3 parts together)"``).
        :raises SpendLimitExceeded: above the bound; the message names the count, the bound and its
            origin, the breakdown, the estimate and how to go on.
        """
        if self.limit is None or count <= self.limit:
            return
        reasons = dict(by_reason or {})
        cost = estimate_cost(count, self.price_per_1000)
        hints = {SEND_REASONS[SendReason(r)][1] for r in reasons if r in SendReason._value2member_map_}
        lines = [
            f"{what} would send {count:,} records to HERE, above the bound of {self.limit:,} "
            f"({self.origin}); nothing was uploaded.",
            f"  by reason: {breakdown(reasons)}",
        ]
        if cost is not None:
            lines.append(f"  estimated cost: {cost:,.2f} (at {self.price_per_1000:g} per 1,000 records)")
        lines.append(
            "  to go on: if these records are meant to be sent, raise the bound for this run (trigger the "
            f'DAG with the param {BOUND_PARAM}, e.g. {{"{BOUND_PARAM}": {count}}}, or the task\'s '
            f"{BOUND_PARAM}); if not, fix the source"
            + (f" (look at: {'; '.join(sorted(hints))})" if hints else "")
            + "; a dry run (dry_run=True) shows the same counts without sending"
        )
        raise SpendLimitExceeded("\n".join(lines), count=count, bound=self.limit, by_reason=reasons)

    def describe(self, count: int, by_reason: Mapping[str, int], *, dry_run: bool = False) -> str:
        """One log line: ``"would send 322 records (300 new, 22 changed), bound 5,000, estimated cost
        2.67"``."""
        verb = "would send" if dry_run else "sends"
        text = f"{verb} {count:,} records ({breakdown(by_reason)})"
        if self.limit is not None:
            text += f", bound {self.limit:,} ({self.origin})"
        cost = estimate_cost(count, self.price_per_1000)
        if cost is not None:
            text += f", estimated cost {cost:,.2f} at {self.price_per_1000:g} per 1,000"
        return text


def total(counts: Iterable[int]) -> int:
    """Sum of counts (``None`` entries, e.g. a mapped sibling that has not counted yet, as 0)."""
    return sum(int(c or 0) for c in counts)
