"""Run the emulator: in the foreground (CLI) or in a background thread (:class:`EmulatorServer`)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from airflow_here_batch.emulator.admin import EmulatorAdmin
from airflow_here_batch.emulator.faults import Fault
from airflow_here_batch.emulator.server import RedactingAccessLogger, create_app
from airflow_here_batch.emulator.state import Emulator
from airflow_here_batch.emulator.store import EmulatorSettings

__all__ = ["EmulatorServer", "start_site"]


async def start_site(
    emulator: Emulator, host: str, port: int, access_log: bool = True
) -> tuple[web.AppRunner, int]:
    """Start the app on ``host:port`` (``0`` = a free port); returns the runner and the bound port."""
    app = create_app(emulator)
    runner = web.AppRunner(
        app,
        access_log_class=RedactingAccessLogger,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        handle_signals=False,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)


class EmulatorServer:
    """The emulator in a background thread on a free loopback port, as a context manager.

    ``with EmulatorServer(records_per_second=float("inf"), queue_delay=0) as emu:`` then point a client
    at ``emu.base_url``. ``data_dir=None`` uses a temporary directory removed on exit.
    """

    def __init__(
        self,
        api_key: str | None = None,
        records_per_second: float = 5.0,
        queue_delay: float = 1.0,
        data_dir: str | Path | None = None,
        oauth_credentials: dict[str, str] | None = None,
        token_ttl: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
        forbidden_api_keys: set[str] | None = None,
        **settings: Any,
    ) -> None:
        self.host = host
        self._port = port
        self._tmp: str | None = None
        if data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="here-batch-emulator-")
            data_dir = self._tmp
        self.data_dir = Path(data_dir)
        self.settings = EmulatorSettings(
            records_per_second=float(records_per_second),
            queue_delay=float(queue_delay),
            token_ttl=float(token_ttl),
            **settings,
        )
        self.emulator = Emulator(
            self.data_dir,
            api_key=api_key,
            oauth_credentials=oauth_credentials,
            settings=self.settings,
            forbidden_api_keys=forbidden_api_keys,
        )
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    # ---- URLs -------------------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """HERE base URL of this emulator: ``http://127.0.0.1:PORT/v7``."""
        return f"{self.root_url}/v7"

    @property
    def token_url(self) -> str:
        """OAuth token endpoint: ``http://127.0.0.1:PORT/oauth2/token``."""
        return f"{self.root_url}/oauth2/token"

    @property
    def admin(self) -> EmulatorAdmin:
        """HTTP admin client for this emulator."""
        return EmulatorAdmin(self.root_url)

    @property
    def oauth_credentials(self) -> dict[str, str]:
        """Accepted access key id -> secret pairs."""
        return dict(self.emulator.oauth_credentials)

    def inject_fault(self, **kwargs: Any) -> Fault:
        """In-process fault injection (see :class:`~airflow_here_batch.emulator.faults.Fault`)."""
        return self.emulator.inject_fault(**kwargs)

    def clear_faults(self) -> None:
        """Remove pending faults (in-process)."""
        self.emulator.faults.clear()

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        """Start the server thread; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="here-batch-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("emulator failed to start") from self._error
        if not self._ready.is_set():
            raise RuntimeError("emulator did not start within 30 s")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        runner, self.port = await start_site(self.emulator, self.host, self._port, access_log=False)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop the server, wait for the thread, remove the temporary data dir."""
        if self._loop is not None and self._stop is not None and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
