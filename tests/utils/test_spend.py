"""The spend settings of a task: its own arguments first, then ``[here_batch]`` (the deployment's)."""

from __future__ import annotations

import pytest


def test_the_tasks_bound_wins_and_an_empty_one_falls_back_to_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_here_batch.utils.spend import resolve_bound

    monkeypatch.delenv("AIRFLOW__HERE_BATCH__MAX_RECORDS_TO_SEND", raising=False)
    monkeypatch.delenv("AIRFLOW__HERE_BATCH__PRICE_PER_1000_RECORDS", raising=False)
    assert resolve_bound().limit is None and resolve_bound().price_per_1000 is None
    monkeypatch.setenv("AIRFLOW__HERE_BATCH__MAX_RECORDS_TO_SEND", "5000")
    monkeypatch.setenv("AIRFLOW__HERE_BATCH__PRICE_PER_1000_RECORDS", "0.83")
    deployment = resolve_bound("None")  # a DAG param left empty, rendered
    assert (deployment.limit, deployment.origin, deployment.price_per_1000) == (
        5000,
        "[here_batch] max_records_to_send",
        0.83,
    )
    task = resolve_bound("20000", 1.5)
    assert (task.limit, task.origin, task.price_per_1000) == (20000, "the task's max_records_to_send", 1.5)
    monkeypatch.setenv("AIRFLOW__HERE_BATCH__MAX_RECORDS_TO_SEND", "lots")
    with pytest.raises(ValueError, match=r"\[here_batch\] max_records_to_send='lots'"):
        resolve_bound()


def test_the_options_are_declared_in_the_providers_config_section() -> None:
    from airflow_here_batch.get_provider_info import get_provider_info

    options = get_provider_info()["config"]["here_batch"]["options"]
    assert options["max_records_to_send"]["type"] == "integer"
    assert options["price_per_1000_records"]["type"] == "float"
