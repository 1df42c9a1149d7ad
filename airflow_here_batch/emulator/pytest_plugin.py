"""pytest plugin with the ``here_emulator`` fixture: a local HERE Batch emulator per test.

Opt in from your top-level ``conftest.py`` (the provider registers no ``pytest11`` entry point, so
installing it changes no other pytest run)::

    pytest_plugins = ["airflow_here_batch.emulator.pytest_plugin"]

The module imports nothing heavy: the emulator (aiohttp) is imported when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_here_batch.emulator.runner import EmulatorServer

__all__ = ["here_emulator"]


@pytest.fixture
def here_emulator() -> Iterator[EmulatorServer]:
    """A started emulator on a free loopback port, fast pacing, any API key, stopped after the test.

    Yields an :class:`~airflow_here_batch.emulator.runner.EmulatorServer`: ``base_url`` is the
    ``.../v7`` address to put in a ``here_batch`` connection, ``admin`` drives faults and settings.
    """
    from airflow_here_batch.emulator.runner import EmulatorServer

    with EmulatorServer(records_per_second=float("inf"), queue_delay=0.0) as emu:
        yield emu
