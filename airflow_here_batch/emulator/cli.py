"""``here-batch-emulator`` / ``python -m airflow_here_batch.emulator``: run the emulator in the foreground.

The first line on stdout is the base URL (``http://127.0.0.1:8765/v7``), flushed at once, so a parent
process started with ``--port 0`` can read the real port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from airflow_here_batch.emulator.runner import start_site
from airflow_here_batch.emulator.state import DEFAULT_OAUTH_CREDENTIALS, Emulator
from airflow_here_batch.emulator.store import EmulatorSettings

__all__ = ["build_parser", "main"]


def _rate(value: str) -> float:
    if value.lower() in ("inf", "unlimited", "max"):
        return float("inf")
    rate = float(value)
    if rate < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 holds jobs, 'inf' = unlimited)")
    return rate


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    d = EmulatorSettings()
    p = argparse.ArgumentParser(
        prog="here-batch-emulator",
        description="Local emulator of the HERE Batch API v7 (geocode, revgeocode, lookup).",
    )
    # Every option says what it does and its default (tests/emulator/test_cli_help.py).
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s, loopback only)"
    )
    p.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder where jobs are kept and survive a restart (default: a temporary folder, removed "
        "on exit)",
    )
    p.add_argument(
        "--api-key", help="accept only this apiKey (default: none, any non-empty key is accepted)"
    )
    p.add_argument(
        "--records-per-second",
        type=_rate,
        default=d.records_per_second,
        help="records per second per job; 0 holds jobs in inProgress, inf = unlimited (default: %(default)g)",
    )
    p.add_argument(
        "--queue-delay",
        type=float,
        default=d.queue_delay,
        help="seconds a started job stays queued, then half as long pending (default: %(default)g)",
    )
    p.add_argument(
        "--max-running-jobs",
        type=int,
        default=d.max_running_jobs,
        help="pending + inProgress jobs at once; more wait in queued, a start answers 429 "
        "(default: %(default)s; HERE does not publish its value)",
    )
    p.add_argument(
        "--max-startable-jobs",
        type=int,
        default=d.max_startable_jobs,
        help="submitted + queued + failure jobs; more are refused with 429 (default: %(default)s, HERE's)",
    )
    p.add_argument(
        "--max-records",
        type=int,
        default=d.max_records,
        help="records per job; more are refused with 413 (default: %(default)s, HERE's)",
    )
    p.add_argument(
        "--max-input-bytes",
        type=int,
        default=d.max_input_bytes,
        help="uncompressed input bytes per job; more are refused with 413 (default: %(default)s, "
        "HERE's 500 MB)",
    )
    key_id, secret = next(iter(DEFAULT_OAUTH_CREDENTIALS.items()))
    p.add_argument(
        "--access-key-id",
        default=key_id,
        help="OAuth access key id the token endpoint accepts (default: %(default)s)",
    )
    p.add_argument(
        "--access-key-secret",
        default=secret,
        help="the secret of --access-key-id (default: %(default)s)",
    )
    p.add_argument(
        "--token-ttl",
        type=float,
        default=d.token_ttl,
        help="lifetime of issued OAuth tokens, seconds (default: %(default)g)",
    )
    workers = min(2, os.cpu_count() or 1)
    p.add_argument(
        "--workers",
        type=_positive,
        default=workers,
        help="processes sharing a large unpaced job (of at least --parallel-min-records records); 1 = "
        "all work in the emulator's process (default: %(default)s, 1 on a one-core machine)",
    )
    p.add_argument(
        "--parallel-min-records",
        type=_positive,
        default=d.parallel_min_records,
        help="records a job needs to be shared among --workers (default: %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no access log on stderr (default: logged)")
    return p


async def _serve(args: argparse.Namespace, data_dir: Path) -> None:
    settings = EmulatorSettings(
        records_per_second=args.records_per_second,
        queue_delay=args.queue_delay,
        max_running_jobs=args.max_running_jobs,
        max_startable_jobs=args.max_startable_jobs,
        max_records=args.max_records,
        max_input_bytes=args.max_input_bytes,
        token_ttl=args.token_ttl,
        workers=args.workers,
        parallel_min_records=args.parallel_min_records,
    )
    emulator = Emulator(
        data_dir,
        api_key=args.api_key,
        settings=settings,
        oauth_credentials={args.access_key_id: args.access_key_secret},
    )
    runner, port = await start_site(emulator, args.host, args.port, access_log=not args.quiet)
    host = f"[{args.host}]" if ":" in args.host else args.host
    sys.stdout.write(f"http://{host}:{port}/v7\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="here-batch-emulator-")
        data_dir = Path(tmp)
    try:
        asyncio.run(_serve(args, data_dir))
    except KeyboardInterrupt:
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
