"""OpenLineage: the submit and download operators report input -> HERE job -> results, with a facet.

The run goes through ``airflow dags test`` in a subprocess with the OpenLineage provider's file transport
(the provider reads its transport once per process, so the pytest process cannot switch it on for one
test). Every event is read back from the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_DAGS_DIR, REPO_ROOT, TEST_DAGS_DIR

SAMPLE = EXAMPLE_DAGS_DIR / "data" / "addresses_default.csv"
SECRET = "lineage-api-key-must-not-leak"


def _airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    bundles = [
        {
            "name": "here_test_dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(TEST_DAGS_DIR), "refresh_interval": 0},
        }
    ]
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS_DIR),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            "PYTHONWARNINGS": "ignore",
            **extra,
        }
    )
    return env


@pytest.fixture(scope="module")
def lineage_events(tmp_path_factory: pytest.TempPathFactory, here_emulator_session: Any) -> dict[str, Any]:
    pytest.importorskip("airflow.providers.openlineage", reason="needs apache-airflow-providers-openlineage")
    home = tmp_path_factory.mktemp("lineage")
    events_file = home / "events.jsonl"
    out = home / "out"
    conn = {"conn_type": "here_batch", "host": here_emulator_session.base_url, "password": SECRET}
    env = _airflow_env(
        home,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        AIRFLOW__OPENLINEAGE__NAMESPACE="here-batch-tests",
        AIRFLOW_CONN_HERE_BATCH_DEFAULT=json.dumps(conn),
        HERE_BATCH_LINEAGE_INPUT=str(SAMPLE),
        HERE_BATCH_LINEAGE_OUTPUT=f"file://{out}/",
    )
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    run = subprocess.run(
        [*airflow, "dags", "test", "test_lineage"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    text = events_file.read_text(encoding="utf-8")
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {"events": events, "text": text, "out": out, "logs": run.stdout + run.stderr}


def _complete(events: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    found = [
        e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"test_lineage.{task_id}"
    ]
    assert found, f"no COMPLETE event for {task_id}: {[(e['eventType'], e['job']['name']) for e in events]}"
    return found[-1]


def _named(datasets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def test_submit_reports_input_file_and_here_job(lineage_events: dict[str, Any], here_conn: str) -> None:
    event = _complete(lineage_events["events"], "submit")
    facet = event["run"]["facets"]["hereBatch"]
    job_id = facet["jobId"]
    port = here_conn.split("//", 1)[1].split("/", 1)[0]
    assert _named(event["inputs"]) == {("file", str(SAMPLE))}
    assert _named(event["outputs"]) == {(f"here-batch://{port}", f"jobs/{job_id}")}
    assert facet["service"] == "geocode" and facet["status"] == "completed"
    rows = sum(1 for _ in SAMPLE.open(encoding="utf-8")) - 1
    assert facet["records"]["total"] == rows
    assert facet["records"]["succeeded"] + facet["records"]["failed"] == rows


def test_download_reports_here_job_and_written_files(lineage_events: dict[str, Any], here_conn: str) -> None:
    submitted = _complete(lineage_events["events"], "submit")["run"]["facets"]["hereBatch"]["jobId"]
    event = _complete(lineage_events["events"], "download")
    out = lineage_events["out"]
    port = here_conn.split("//", 1)[1].split("/", 1)[0]
    assert _named(event["inputs"]) == {(f"here-batch://{port}", f"jobs/{submitted}")}
    assert _named(event["outputs"]) == {("file", f"{out}/results.csv"), ("file", f"{out}/errors.txt")}
    assert (out / "results.csv").is_file()
    assert event["run"]["facets"]["hereBatch"]["jobId"] == submitted


def test_no_key_in_any_event(lineage_events: dict[str, Any]) -> None:
    assert lineage_events["events"]
    assert SECRET not in lineage_events["text"]
    assert "apiKey" not in lineage_events["text"]


def test_without_the_provider_nothing_is_imported() -> None:
    """Operators and the lineage module import no OpenLineage code; a DAG parse does not either."""
    code = (
        "import sys\n"
        "import airflow_here_batch.operators.batch_job, airflow_here_batch.utils.lineage\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(EXAMPLE_DAGS_DIR)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        # Airflow's ProvidersManager reads every installed provider's get_provider_info: not ours.
        "meta = {'airflow.providers.openlineage', 'airflow.providers.openlineage.get_provider_info'}\n"
        "ol = ('openlineage', 'airflow.providers.openlineage')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(ol) and m not in meta)\n"
        "assert not bad, bad\n"
    )
    env = _airflow_env(Path(os.environ["AIRFLOW_HOME"]))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(EXAMPLE_DAGS_DIR)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_lineage_module_names_datasets() -> None:
    from airflow_here_batch.utils.lineage import asset_event_extra, dataset_name, here_namespace

    assert dataset_name("s3://bucket/a/b.csv") == ("s3://bucket", "a/b.csv")
    assert dataset_name("s3://aws_default@bucket/a/b.csv") == ("s3://bucket", "a/b.csv")  # conn id dropped
    assert dataset_name("file:///data/x.csv") == ("file", "/data/x.csv")
    assert dataset_name("/data/x.csv") == ("file", "/data/x.csv")
    assert dataset_name("recId|q\n1|Berlin\n") is None  # inline text
    assert here_namespace("https://user:pw@batch.search.hereapi.com/v7?apiKey=x") == (
        "here-batch://batch.search.hereapi.com"
    )
    extra = asset_event_extra(
        "J1", {"results": {"path": "s3://b/r.csv", "rows": 3}, "errors": {"path": None}}
    )
    assert extra == {
        "job_id": "J1",
        "results": {"location": "s3://b/r.csv", "rows": 3},
        "errors": {"location": None, "rows": None},
    }
    rows = asset_event_extra("J2", {"path": None, "rows": [{"a": 1}, {"a": 2}], "count": 2})
    assert rows == {"job_id": "J2", "results": {"location": None, "rows": 2}}
