"""The spend settings of a task: its arguments first, then the deployment's ``[here_batch]`` config.

* ``[here_batch] max_records_to_send`` (env ``AIRFLOW__HERE_BATCH__MAX_RECORDS_TO_SEND``): the most
  records one run of a task (a split: all its parts together) may send, for every DAG of the
  deployment; empty: no bound.
* ``[here_batch] price_per_1000_records``: the price for the estimate in logs and XCom; empty: no
  estimate. No price is built in (HERE's prices are per contract).

A task's own ``max_records_to_send`` (e.g. ``"{{ params.max_records_to_send }}"``, so one run can be
given a higher bound when it is meant to send more) wins over the config; a rendered empty value or
``None`` falls back to it. The rules themselves (parsing, the check, the message) are
:mod:`airflow_here_batch.api.spend`'s.
"""

from __future__ import annotations

from typing import Any

from airflow_here_batch.api.spend import SpendBound, parse_bool, parse_bound, parse_price

__all__ = ["BOUND_OPTION", "PRICE_OPTION", "SECTION", "resolve_bound", "resolve_dry_run"]

SECTION = "here_batch"
BOUND_OPTION = "max_records_to_send"
PRICE_OPTION = "price_per_1000_records"


def _config(option: str) -> str:
    from airflow.configuration import conf

    return (conf.get(SECTION, option, fallback="") or "").strip()


def resolve_bound(max_records_to_send: Any = None, price_per_1000_records: Any = None) -> SpendBound:
    """The task's bound and price (rendered arguments), else the deployment's.

    :raises ValueError: for a bound or price that is not a number (the option or argument is named).
    """
    limit = parse_bound(max_records_to_send)
    origin = "the task's max_records_to_send"
    if limit is None:
        limit = parse_bound(_config(BOUND_OPTION), name=f"[{SECTION}] {BOUND_OPTION}")
        origin = f"[{SECTION}] {BOUND_OPTION}"
    price = parse_price(price_per_1000_records)
    if price is None:
        price = parse_price(_config(PRICE_OPTION), name=f"[{SECTION}] {PRICE_OPTION}")
    return SpendBound(limit, origin, price)


def resolve_dry_run(value: Any) -> bool:
    """A rendered ``dry_run`` (``True``, ``"{{ params.dry_run }}"`` -> ``"True"``) as a bool.

    :raises ValueError: for text that is not a yes/no value.
    """
    return parse_bool(value, name="dry_run")
