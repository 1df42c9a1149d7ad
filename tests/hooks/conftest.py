"""Hooks under test talk to a real emulator over loopback HTTP, through a real Airflow connection."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_here_batch.api import RetryPolicy
from airflow_here_batch.emulator import EmulatorServer

API_KEY = "test-key-7f3a9c"
FAST_RETRIES = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=2.0)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(api_key=API_KEY, queue_delay=0, records_per_second=1_000_000) as emu:
        yield emu


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "here_batch", **fields}))


@pytest.fixture
def hook(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    set_connection(monkeypatch, "here_test", host=emulator.base_url, password=API_KEY)
    hook = HereBatchHook("here_test", retry_policy=FAST_RETRIES)
    yield hook
    hook.close()
