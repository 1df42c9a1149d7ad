"""moto's S3 server for tests that write to ``s3://`` for real (no in-process mock: s3fs talks HTTP).

:func:`moto_s3` starts ``moto.server`` (moto's S3-compatible HTTP server, as Airflow's own tests do) in
its own process on a free loopback port, points the Airflow connection ``aws_moto`` at it
(``AIRFLOW_CONN_AWS_MOTO``, ``extra.endpoint_url``), creates :data:`BUCKET` and yields the server URL.
Tests that use it skip unless the amazon provider and ``moto[server]`` (the test extra) are installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BUCKET = "here-batch-test"
CONN_ID = "aws_moto"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_client(url: str) -> Any:
    """A boto3 S3 client of the server at ``url`` (to put and inspect objects behind the code's back)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@contextlib.contextmanager
def moto_s3(log_dir: Path) -> Iterator[str]:
    """moto's server in its own process (its log in ``log_dir/moto.log``); yields its URL."""
    port = _free_port()
    log = log_dir / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": url, "region_name": "us-east-1"},
        }
        os.environ["AIRFLOW_CONN_AWS_MOTO"] = json.dumps(conn)
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        os.environ.pop("AIRFLOW_CONN_AWS_MOTO", None)
        _forget_filesystems()
        proc.terminate()
        proc.wait(timeout=30)


def _forget_filesystems() -> None:
    """Drop Airflow's cached ``aws_moto`` filesystems: they point at this server's port, and the next
    server has another (Airflow caches one store per protocol and connection for the process)."""
    if "airflow.sdk.io.store" in sys.modules:
        from airflow.sdk.io import store

        for protocol in ("s3", "s3a", "s3n"):
            store._STORE_CACHE.pop(f"{protocol}-{CONN_ID}", None)
