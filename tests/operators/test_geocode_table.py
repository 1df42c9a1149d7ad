"""``geocode_table``: a user's DAG that is a schedule and one call, run twice through real Airflow
(``dag.test()``) against the emulator and real SQLite and PostgreSQL databases, the second run sending only
the changed rows; the change-column path; and every argument it takes reaching its task."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta, timezone
from typing import Any

import pendulum
import pytest

from airflow_here_batch.api.quality import AcceptancePolicy, Verdict
from tests.airflow.support import RunDag
from tests.operators.test_arguments import SAMPLES as SUBMIT_SAMPLES
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

START = pendulum.datetime(2025, 1, 1, tz="UTC")
CITIES = [
    ("Invalidenstraße 116", "10115", "Berlin", "DEU"),
    ("Jungfernstieg 7", "20354", "Hamburg", "DEU"),
    ("Marienplatz 8", "80331", "München", "DEU"),
    ("Rue de Rivoli 99", "75001", "Paris", "FRA"),
    ("Via Roma 1", "00184", "Roma", "ITA"),
    ("Main Street 5", "SW1A 1AA", "London", "GBR"),
]


def _at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T02:00:00").replace(tzinfo=timezone.utc)


def _job_records(result: Any) -> list[int]:
    """Records HERE saw per job (the mapped ``run``'s XComs, in part order)."""
    found = {
        i: v for (task, i, key), v in result.xcoms.items() if task.endswith(".run") and key == "return_value"
    }
    return [found[i]["records"]["total"] for i in sorted(found)]


@pytest.mark.usefixtures("here_conn")
def test_a_schedule_and_one_call_geocode_a_table_then_only_its_changed_rows(
    run_dag: RunDag,
    any_db: Database,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HERE_TEST_TABLE_CONN_ID", any_db.conn_id)
    any_db.execute(
        "CREATE TABLE customers "
        "(customer_id INTEGER PRIMARY KEY, street TEXT, postcode TEXT, city TEXT, country TEXT)"
    )
    ph = ", ".join([any_db.ph] * 5)
    for n in range(12):
        street, postcode, city, country = CITIES[n % len(CITIES)]
        row = (n + 1, f"{street}-{n}", postcode, city, country)
        any_db.execute(f"INSERT INTO customers VALUES ({ph})", row)

    first = run_dag("test_geocode_table", logical_date=_at("2025-10-01"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    summary = first.xcom("geocode.summary")
    counts = ("records_total", "records_sent", "records_reused", "records_written")
    assert tuple(summary[k] for k in counts) == (12, 12, 0, 12)
    assert summary["table"] == "customers_geocoded" and len(summary["job_ids"]) == 1
    assert summary["results"].startswith("file://") and _job_records(first) == [12]
    assert any_db.query("SELECT COUNT(*), COUNT(DISTINCT job_id) FROM customers_geocoded") == [(12, 1)]

    any_db.execute("UPDATE customers SET street = 'Unter den Linden 77' WHERE customer_id IN (2, 7)")
    any_db.execute(f"INSERT INTO customers VALUES ({ph})", (13, "Karlsplatz 1", "1010", "Wien", "AUT"))
    second = run_dag("test_geocode_table", logical_date=_at("2025-10-02"))
    assert set(second.task_states.values()) == {"success"}, second.describe()
    summary = second.xcom("geocode.summary")
    assert tuple(summary[k] for k in counts) == (13, 3, 10, 3)
    assert _job_records(second) == [3]  # HERE saw exactly the changed and the new rows
    (job,) = summary["job_ids"]
    rows = any_db.query(f"SELECT rec_id FROM customers_geocoded WHERE job_id = {any_db.ph}", (job,))
    assert sorted(r[0] for r in rows) == ["13", "2", "7"]
    assert any_db.query("SELECT COUNT(*) FROM customers_geocoded") == [(13,)]


def _stamp_type(db: Database) -> str:
    return "TIMESTAMP WITH TIME ZONE" if db.dialect == "postgresql" else "TEXT"


def _stamp(db: Database, moment: datetime) -> Any:
    return moment if db.dialect == "postgresql" else moment.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.usefixtures("here_conn")
def test_with_a_change_column_a_night_reads_only_the_rows_changed_since_the_last_run(
    run_dag: RunDag,
    any_db: Database,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HERE_TEST_TABLE_CONN_ID", any_db.conn_id)
    stamp = _stamp_type(any_db)
    any_db.execute(f"CREATE TABLE shops (id INTEGER PRIMARY KEY, address TEXT, updated_at {stamp})")
    old = datetime(2025, 6, 1, tzinfo=timezone.utc)
    for n in range(1, 31):
        street, postcode, city, _ = CITIES[n % len(CITIES)]
        any_db.execute(
            f"INSERT INTO shops VALUES ({any_db.ph}, {any_db.ph}, {any_db.ph})",
            (n, f"{street}-{n}, {postcode} {city}", _stamp(any_db, old - timedelta(days=n))),
        )
    first = run_dag("test_geocode_table_changes", logical_date=_at("2025-10-01"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    assert first.xcom("shops.summary")["records_sent"] == 30
    marks = any_db.query("SELECT target_table, change_column FROM here_batch_watermarks")
    assert marks == [("shops_geocoded", "updated_at")]  # kept beside the target, once written

    mark = old - timedelta(days=1)  # the highest stamp read (shop 1)
    for shop, hours in ((3, 1), (4, 2)):
        any_db.execute(
            f"UPDATE shops SET address = 'Karlsplatz 1, 1010 Wien', updated_at = {any_db.ph} "
            f"WHERE id = {shop}",
            (_stamp(any_db, mark + timedelta(hours=hours)),),
        )
    second = run_dag("test_geocode_table_changes", logical_date=_at("2025-10-02"))
    summary = second.xcom("shops.summary")
    # read: shop 1 (at the mark, inside the window) and the two changed shops; 27 rows never read
    assert (summary["records_total"], summary["records_sent"], summary["records_reused"]) == (3, 2, 1)
    assert _job_records(second) == [2]

    third = run_dag("test_geocode_table_changes", logical_date=_at("2025-10-03"))  # nothing changed
    for task_id in ("shops.plan", "shops.run", "shops.merge"):
        assert third.task_states[task_id] == "skipped", third.describe()
    summary = third.xcom("shops.summary")
    assert (summary["records_total"], summary["records_sent"], summary["job_ids"]) == (2, 0, [])

    forced = run_dag(
        "test_geocode_table_changes", logical_date=_at("2025-10-04"), run_conf={"full_refresh": True}
    )
    assert forced.xcom("shops.summary")["records_sent"] == 30  # a full refresh reads and sends every row


# --- every argument reaches its task -----------------------------------------------------------------

#: geocode_table's name of an operator's argument where it differs, or None: set by geocode_table itself.
EXTRACT_NAMES: dict[str, str | None] = {
    "sql": "source",
    "destination": None,  # the extract's working folder (under the base location), not the user's
    "destination_conn_id": None,
    "delimiter": None,  # the extract's file and the plan agree on "|"
}
WRITE_NAMES: dict[str, str | None] = {
    "conn_id": "target_conn_id",
    "table": "target_table",
    "batch_size": "write_batch_size",
    "job_id": None,  # the parts' job ids, results and errors, and the extract's XCom: wired
    "results": None,
    "errors": None,
    "extract": None,
    "storage_conn_id": None,  # the parts live under the base location (its own connection)
    "parts": None,
}
SPLIT_NAMES: dict[str, str | None] = {
    "input": None,  # the extract's file
    "part_retries": "retries",
    "part_retry_delay": "retry_delay",
}
#: A valid value, other than the default, per argument of the extract, the write and the split.
SAMPLES: dict[str, Any] = {
    "conn_id": "db2",
    "source": "SELECT id, a, b, lat, lng FROM t",
    "key_column": "id",
    "service": "revgeocode",
    "columns": {"in": "a"},
    "templates": {"lang": "{b}"},
    "constants": {"limit": "2"},
    "at_columns": ("lat", "lng"),
    "output_columns": ["positionLat", "addressLabel"],
    "parameters": [1, 2],
    "incremental": False,
    "target_table": "other_geo",
    "target_conn_id": "db_other",
    "max_age": timedelta(days=3),
    "resend_failed": True,
    "change_column": None,  # (needs incremental; tried on its own below)
    "change_window": timedelta(minutes=5),
    "on_bad_record": "skip",
    "on_empty_query": "fail",
    "on_output_columns_change": "resend",
    "on_fingerprint_version_change": "resend",
    "max_records_to_send": 500,
    "price_per_1000_records": 0.83,
    "dry_run": "{{ params.dry_run }}",
    "fetch_size": 77,
    "full_refresh": "{{ params.full_refresh }}",
    "write_batch_size": 55,
    "destination": "file:///tmp/merged/",
    "destination_conn_id": "fs_other",
    "max_records_per_job": 10,
    "max_bytes_per_job": 100_000,
    "max_active_jobs": 7,
    "cleanup_parts": False,
    "compress": False,
    "deferrable": False,
    "poll_interval": 4.5,
    "retries": 5,
    "retry_delay": timedelta(seconds=9),
    "policy": AcceptancePolicy(accepted=frozenset({Verdict.EXACT}), min_scores={"queryScore": 0.9}),
    "review_table": "geo_to_check",
    "min_accepted_share": 0.75,
    "on_low_match_rate": "warn",
}
BASE = {"conn_id": "db", "source": "t", "key_column": "id", "columns": {"q": "a"}, "target_table": "geo"}


def _tasks(**kwargs: Any) -> dict[str, Any]:
    from airflow.sdk import DAG

    from airflow_here_batch.operators.geocode_table import geocode_table

    with DAG(dag_id="fwd", schedule=None, start_date=START) as dag:
        geocode_table(**{**BASE, **kwargs})
    return {task.task_id.removeprefix("geocode."): task for task in dag.tasks}


def _forwarded(operator_class: type, names: dict[str, str | None]) -> list[str]:
    """Each argument of ``operator_class``: geocode_table's name for it (the ones it sets itself left out)."""
    from airflow_here_batch.operators.split import operator_arguments

    accepted = inspect.signature(_geocode_table()).parameters
    mine = []
    for name in operator_arguments(operator_class):
        ours = names.get(name, name)
        if ours is None:
            continue
        assert ours in accepted, f"geocode_table drops {operator_class.__name__}'s {name!r}"
        mine.append(name)
    return mine


def _geocode_table() -> Any:
    from airflow_here_batch.operators.geocode_table import geocode_table

    return geocode_table


def test_every_extract_and_write_argument_reaches_its_task() -> None:
    from airflow_here_batch.operators.geocode_table import GeocodeTableWriteOperator
    from airflow_here_batch.operators.sql import SqlToBatchInputOperator

    for name in _forwarded(SqlToBatchInputOperator, EXTRACT_NAMES):
        ours = EXTRACT_NAMES.get(name, name)
        assert ours in SAMPLES, f"add a sample value for {ours!r} (an argument of the extract)"
        value = SAMPLES[ours]
        if value is None:
            continue
        kwargs = {ours: value}
        if ours in ("service", "at_columns", "templates", "columns", "constants"):
            kwargs = {k: SAMPLES[k] for k in ("service", "at_columns", "templates", "columns", "constants")}
            kwargs["source"] = SAMPLES["source"]
        if ours == "incremental":
            kwargs["change_column"] = None
        extract = _tasks(**kwargs)["extract"]
        got = getattr(extract, name)
        expected = {"at_columns": tuple, "output_columns": list}.get(name, lambda v: v)(value)
        assert got == expected, f"{ours}={value!r} reached the extract as {name}={got!r}"
    extract = _tasks(change_column="updated_at")["extract"]
    assert (extract.change_column, extract.incremental) == ("updated_at", True)

    for name in _forwarded(GeocodeTableWriteOperator, WRITE_NAMES):
        ours = WRITE_NAMES.get(name, name)
        if name == "output_columns":
            continue  # checked above; the same list goes to the write
        assert ours in SAMPLES, f"add a sample value for {ours!r} (an argument of the write)"
        write = _tasks(**{ours: SAMPLES[ours]})["write"]
        assert getattr(write, name) == SAMPLES[ours], ours
    tasks = _tasks(output_columns=SAMPLES["output_columns"], target_conn_id="db_other")
    assert tasks["write"].output_columns == SAMPLES["output_columns"] and tasks["write"].conn_id == "db_other"
    assert tasks["write"].outlets[0].uri.startswith("here-batch-table://db_other/geo")
    assert _tasks()["write"].conn_id == "db"  # the source's connection by default


def _split_value(tasks: dict[str, Any], name: str) -> Any:
    """Where a split_batch_job argument ends up in the group's tasks."""
    plan, run, merge = tasks["plan"], tasks["run"], tasks["merge"]
    where = {
        "max_records_per_job": plan.limits.max_records,
        "max_bytes_per_job": plan.limits.max_bytes,
        "max_active_jobs": run.max_active_tis_per_dagrun,
        "destination": merge.destination,
        "destination_conn_id": merge.destination_conn_id,
        "cleanup_parts": merge.cleanup_parts,
        "part_retries": run.partial_kwargs["retries"],
        "part_retry_delay": run.partial_kwargs["retry_delay"],
    }
    return where[name] if name in where else run.partial_kwargs[name]


def test_every_split_and_submit_argument_reaches_the_jobs() -> None:
    from airflow_here_batch.operators.batch_job import JOB_OPTION_FIELDS, SubmitBatchJobOperator
    from airflow_here_batch.operators.geocode_table import FIXED_BY_TABLE
    from airflow_here_batch.operators.split import FIXED_BY_SPLIT, operator_arguments, split_batch_job

    accepted = inspect.signature(_geocode_table()).parameters
    for name in inspect.signature(split_batch_job).parameters:
        if name in ("group_id", "submit_kwargs"):
            continue
        ours = SPLIT_NAMES.get(name, name)
        if ours is None:
            continue
        assert ours in accepted, f"geocode_table drops split_batch_job's {name!r}"
        assert ours in SAMPLES, f"add a sample value for {ours!r}"
        got = _split_value(_tasks(**{ours: SAMPLES[ours]}), name)
        assert got == SAMPLES[ours], f"{ours}={SAMPLES[ours]!r} reached the split as {got!r}"
    tasks = _tasks(retries=SAMPLES["retries"], retry_delay=SAMPLES["retry_delay"])
    for task_id in ("extract", "plan", "write", "merge", "summary"):
        assert tasks[task_id].retries == SAMPLES["retries"], task_id
        assert tasks[task_id].retry_delay == SAMPLES["retry_delay"], task_id

    for name, parameter in operator_arguments(SubmitBatchJobOperator).items():
        if name in FIXED_BY_TABLE or name in FIXED_BY_SPLIT or name in accepted:
            continue  # set by the table job or the split, or one of geocode_table's own (above)
        value = SUBMIT_SAMPLES.get(name, parameter.default)
        run = _tasks(**{name: value})["run"]
        options = run.partial_kwargs["options"]
        got = options.get(name) if name in JOB_OPTION_FIELDS else run.partial_kwargs.get(name)
        assert got == value, f"{name}={value!r} reached the jobs as {got!r}"
    for name in FIXED_BY_TABLE:
        with pytest.raises(TypeError, match=name):
            _tasks(**{name: SUBMIT_SAMPLES.get(name, "x")})
    with pytest.raises(TypeError, match="no_such_argument"):
        _tasks(no_such_argument=1)
    run = _tasks(service="geocode", output_columns=["positionLat"])["run"]
    expected = {"service": "geocode", "output_columns": ["positionLat"], "input_delimiter": "|"}
    assert run.partial_kwargs["options"] == expected


def test_the_spend_arguments_reach_the_extract_and_the_plan() -> None:
    """Issue 21 through geocode_table: the bound, the price and the dry run hold for the extract and for
    the plan (all parts together); the choices on a change go to the extract."""
    spend = {k: SAMPLES[k] for k in ("max_records_to_send", "price_per_1000_records", "dry_run")}
    choices = {
        k: SAMPLES[k] for k in ("on_empty_query", "on_output_columns_change", "on_fingerprint_version_change")
    }
    tasks = _tasks(**spend, **choices)
    for task_id in ("extract", "plan"):
        got = {k: getattr(tasks[task_id], k) for k in spend}
        assert got == spend, task_id
    assert {k: getattr(tasks["extract"], k) for k in choices} == choices
    for name in spend:  # the parts create the jobs the plan allowed: they take none of it
        assert name not in tasks["run"].partial_kwargs, name
    defaults = _tasks()
    assert (defaults["extract"].dry_run, defaults["plan"].dry_run) == (False, False)
    assert defaults["extract"].max_records_to_send is None and defaults["plan"].max_records_to_send is None
    extract = defaults["extract"]
    assert (extract.on_empty_query, extract.on_output_columns_change) == ("skip", "keep")
