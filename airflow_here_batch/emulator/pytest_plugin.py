"""pytest plugin (entry point ``here_batch_emulator``): the ``here_emulator`` fixture.

The plugin is loaded by every pytest run of every project that installs this package, so it imports
nothing heavy at module level: the emulator (aiohttp) is imported only when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_here_batch.emulator.runner import EmulatorServer


@pytest.fixture
def here_emulator() -> Iterator[EmulatorServer]:
    """A started emulator on a free loopback port, fast pacing, any API key, stopped after the test."""
    from airflow_here_batch.emulator.runner import EmulatorServer

    with EmulatorServer(records_per_second=float("inf"), queue_delay=0.0) as emu:
        yield emu
