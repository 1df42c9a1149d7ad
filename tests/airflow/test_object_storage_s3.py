"""s3:// for real: inputs and outputs through the Amazon provider's ObjectStoragePath against moto's server.

The tests start ``moto.server`` (moto's S3-compatible HTTP server, as Airflow's own tests do) in a
separate process on a free loopback port and point the Airflow connection ``aws_moto`` at it
(``extra.endpoint_url``; :mod:`tests.moto_s3`). Nothing is mocked in-process: s3fs talks HTTP to the
server.

- a DAG reads its input from ``s3://`` and writes results and errors to ``s3://`` (``dag.test()``);
- a 1,000,000-record job's results (about 200 MB) go to ``s3://`` through ``DownloadBatchResultsOperator``
  in a fresh process whose peak RSS must grow by less than ``MAX_GROWTH_MB``: the file is streamed to a
  temporary file and uploaded in parts, never held in memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.support import RunDag
from tests.conftest import EXAMPLE_DAGS_DIR
from tests.moto_s3 import BUCKET, moto_s3, s3_client

pytest.importorskip(
    "airflow.providers.amazon", reason="needs the amazon extra (apache-airflow-providers-amazon)"
)
pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")

PROBE = Path(__file__).with_name("s3_probe.py")
SAMPLE = EXAMPLE_DAGS_DIR / "data" / "addresses_default.csv"
MAX_GROWTH_MB = 64
BIG_RECORDS = 1_000_000


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server in its own process; the ``aws_moto`` connection points at it."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as url:
        yield url


def test_s3_input_and_outputs(run_dag: RunDag, here_conn: str, moto_url: str, monkeypatch: Any) -> None:
    s3 = s3_client(moto_url)
    s3.put_object(Bucket=BUCKET, Key="in/addresses.csv", Body=SAMPLE.read_bytes())
    monkeypatch.setenv("HERE_BATCH_S3_INPUT", f"s3://{BUCKET}/in/addresses.csv")
    monkeypatch.setenv("HERE_BATCH_S3_OUTPUT", f"s3://{BUCKET}/out/")

    result = run_dag("test_s3_roundtrip")
    records = result.xcom("submit")["records"]
    assert records["total"] == sum(1 for _ in SAMPLE.open(encoding="utf-8")) - 1  # header
    files = result.xcom("download")
    assert files["results"]["path"].endswith(f"{BUCKET}/out/results.csv")
    assert files["results"]["path"].startswith("s3://")
    body = s3.get_object(Bucket=BUCKET, Key="out/results.csv")["Body"].read()
    assert len(body) == files["results"]["bytes"]
    assert body.startswith(b"recId") and body.count(b"\n") - 1 == files["results"]["rows"]
    errors = s3.get_object(Bucket=BUCKET, Key="out/errors.txt")["Body"].read()
    assert errors.count(b"\n") - 1 == files["errors"]["rows"] >= records["failed"] > 0
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/")["Contents"]}
    assert keys == {"out/results.csv", "out/errors.txt"}, keys  # no temporary object left behind


def test_a_download_bucket_that_does_not_exist_fails_before_any_job(
    run_dag: RunDag, emu: Any, moto_url: str, monkeypatch: Any, capfd: Any
) -> None:
    """Issue 19 §3: the download's destination is checked by the submit task before the job is created
    (a missing bucket used to fail only after HERE billed the job); no bucket is created."""
    s3 = s3_client(moto_url)
    s3.put_object(Bucket=BUCKET, Key="in/few.csv", Body=b"recId|q\n1|Berlin\n")
    monkeypatch.setenv("HERE_BATCH_S3_INPUT", f"s3://{BUCKET}/in/few.csv")
    monkeypatch.setenv("HERE_BATCH_S3_OUTPUT", "s3://no-such-bucket-19/out/")
    emu.admin.reset_stats()
    result = run_dag("test_s3_roundtrip", expect="failed")
    assert result.tasks["submit"].state == "failed"
    log = result.describe() + capfd.readouterr().out
    assert "destination of task 'download' s3://no-such-bucket-19/out/: bucket 'no-such-bucket-19'" in log
    assert emu.admin.stats()["requests"].get("create_job") is None
    assert "no-such-bucket-19" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_200_mb_result_streams_to_s3_with_flat_memory(
    here_emulator_session: Any, here_conn: str, moto_url: str, tmp_path: Path
) -> None:
    from airflow_here_batch.api import JobOptions
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    source = tmp_path / "big.csv"
    with source.open("w", encoding="utf-8") as handle:
        handle.write("recId|q\n")
        for i in range(BIG_RECORDS):
            handle.write(f"{i:07d}|Invalidenstrasse {i % 200 + 1}, 10115 Berlin, Germany\n")
    admin = here_emulator_session.admin
    previous = admin.settings()["records_per_second"]
    admin.settings(records_per_second=1e12)
    try:
        hook = HereBatchHook()
        job = hook.create_job(
            source,
            options=JobOptions(service="geocode", output_columns=_COLUMNS),
            compress=True,
        )
        job = hook.wait_for_job(job.id, timeout=600)
    finally:
        admin.settings(records_per_second=previous)
    assert job.status.value == "completed", job

    destination = f"s3://{BUCKET}/big/results.csv"
    out = subprocess.run(
        [sys.executable, str(PROBE), job.id, destination],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    size = s3_client(moto_url).head_object(Bucket=BUCKET, Key="big/results.csv")["ContentLength"]
    print(f"\n200 MB to s3: {probe['bytes'] / 1e6:.0f} MB, peak RSS growth {probe['growth_mb']:.1f} MB")
    assert size == probe["bytes"] >= 200_000_000, probe
    assert probe["rows"] >= BIG_RECORDS
    assert probe["growth_mb"] < MAX_GROWTH_MB, probe


# HERE's default geocode columns plus the place id: about 230 bytes a result row here.
_COLUMNS = [
    "positionLat",
    "positionLng",
    "addressLabel",
    "addressCountryCode",
    "addressCountryName",
    "addressState",
    "addressCounty",
    "addressCity",
    "addressDistrict",
    "addressStreet",
    "addressPostalCode",
    "addressHouseNumber",
    "title",
    "id",
    "resultType",
]
