"""The emulator's admin API (``/_emulator``): the client (:mod:`.client`, stdlib only).

Importing this package imports no aiohttp: ``from airflow_here_batch.emulator.admin import
EmulatorAdmin`` works in a DAG test, a subprocess or a notebook without extra imports.
"""

from __future__ import annotations

from airflow_here_batch.emulator.admin.client import EmulatorAdmin, EmulatorAdminError

__all__ = ["EmulatorAdmin", "EmulatorAdminError"]
