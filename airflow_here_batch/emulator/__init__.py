"""Local emulator of the HERE Batch API v7 for offline development and tests.

Start it with ``here-batch-emulator`` (or ``python -m airflow_here_batch.emulator``), or in-process::

    from airflow_here_batch.emulator import EmulatorServer

    with EmulatorServer(records_per_second=float("inf"), queue_delay=0) as emu:
        ...  # point an Airflow connection / client at emu.base_url

Never imports Airflow. See docs/emulator.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EmulatorAdmin", "EmulatorServer", "EmulatorSettings", "Fault"]

if TYPE_CHECKING:
    from airflow_here_batch.emulator.admin import EmulatorAdmin
    from airflow_here_batch.emulator.faults import Fault
    from airflow_here_batch.emulator.runner import EmulatorServer
    from airflow_here_batch.emulator.store import EmulatorSettings

_LAZY = {
    "EmulatorAdmin": "airflow_here_batch.emulator.admin",
    "EmulatorServer": "airflow_here_batch.emulator.runner",
    "EmulatorSettings": "airflow_here_batch.emulator.store",
    "Fault": "airflow_here_batch.emulator.faults",
}


def __getattr__(name: str) -> Any:
    # Lazy so that importing the package (e.g. for EmulatorAdmin only) does not import aiohttp.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
