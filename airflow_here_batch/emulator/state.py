"""The emulator's state: jobs, engine, settings, faults, tokens, notifications and request statistics.

One :class:`Emulator` per running emulator; :func:`~.server.create_app` stores it on the application
(:data:`EMULATOR_KEY`), handlers find it with :func:`emulator_of`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from airflow_here_batch.emulator.auth import TokenIssuer
from airflow_here_batch.emulator.engine import Engine
from airflow_here_batch.emulator.faults import Fault, FaultRegistry
from airflow_here_batch.emulator.notifications import NotificationStore, Notifier
from airflow_here_batch.emulator.store import EmulatorSettings, JobStore

__all__ = ["DEFAULT_OAUTH_CREDENTIALS", "EMULATOR_KEY", "Emulator", "emulator_of"]

#: Used when no OAuth credentials are configured.
DEFAULT_OAUTH_CREDENTIALS = {"emulator-access-key-id": "emulator-access-key-secret"}
#: Application key of the :class:`Emulator` an app serves.
EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator")


class Emulator:
    """All emulator state: jobs, engine, settings, faults, tokens, notifications and request statistics."""

    def __init__(
        self,
        data_dir: Path,
        *,
        api_key: str | None = None,
        oauth_credentials: dict[str, str] | None = None,
        settings: EmulatorSettings | None = None,
        forbidden_api_keys: set[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.oauth_credentials = dict(oauth_credentials or DEFAULT_OAUTH_CREDENTIALS)
        self.settings = settings or EmulatorSettings()
        self._initial_settings = EmulatorSettings(**self.settings.__dict__)
        self.forbidden_api_keys = set(forbidden_api_keys or ())
        self.store = JobStore(self.data_dir)
        self.engine = Engine(self.store, self.settings)
        self.faults = FaultRegistry()
        self.tokens = TokenIssuer()
        self.stats: Counter[str] = Counter()
        self.notifications = NotificationStore(self.data_dir)  # HERE's BETA webhooks
        self.notifier = Notifier(self.notifications)

    def inject_fault(self, **kwargs: Any) -> Fault:
        """In-process fault injection (same fields as ``POST /_emulator/faults``)."""
        fault = Fault(**kwargs)
        self.faults.add(fault)
        return fault

    def reset(self) -> None:
        """Forget jobs, faults, tokens and statistics; restore the settings given at start."""
        for job_id in list(self.store.jobs):
            self.engine.forget(job_id)
        self.store.clear()
        self.notifications.clear()
        self.faults.clear()
        self.tokens.clear()
        self.stats.clear()
        self.engine.peak_running = 0
        self.settings.__dict__.update(self._initial_settings.__dict__)


def emulator_of(request: web.Request) -> Emulator:
    """The :class:`Emulator` behind the app that received ``request``."""
    return request.app[EMULATOR_KEY]
