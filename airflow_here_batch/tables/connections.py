"""Which database a task talks to: the common.sql hook of a connection, the embedded SQLite default,
the Asset of a written table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

__all__ = ["EMBEDDED_CONN_ID", "embedded_database_path", "get_db_hook", "table_asset"]

#: Connection id of the embedded SQLite database used when no such connection is defined:
#: :func:`embedded_database_path` (one file every worker of one machine reaches by path).
EMBEDDED_CONN_ID = "here_batch_sqlite_default"


def embedded_database_path() -> str:
    """Path of the embedded SQLite database, its folder created.

    ``here_batch.db`` in the provider's base location when that is a local ``file://`` folder (default
    ``$AIRFLOW_HOME/here_batch``, so ``$AIRFLOW_HOME/here_batch/here_batch.db``; set ``[here_batch]
    base_location`` to a folder every worker shares when workers have different homes), else in
    ``$AIRFLOW_HOME/here_batch``.
    """
    from pathlib import Path

    from airflow.configuration import AIRFLOW_HOME

    from airflow_here_batch.files.locations import base_location_uri

    uri = base_location_uri()
    folder = (
        Path(uri.removeprefix("file://")) if uri.startswith("file://") else Path(AIRFLOW_HOME) / "here_batch"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "here_batch.db")


def get_db_hook(conn_id: str) -> DbApiHook:
    """The common.sql hook of an Airflow connection (``conn.get_hook()``).

    ``here_batch_sqlite_default``, when no connection of that id is defined, is the embedded SQLite
    database (:func:`embedded_database_path`).

    :raises TypeError: when the connection's hook is not a ``DbApiHook`` (not a SQL database).
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_here_batch.version_compat import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if conn_id != EMBEDDED_CONN_ID or type(exc).__name__ != "AirflowNotFoundException":
            raise
        return _embedded_hook()
    hook = connection.get_hook()
    if not isinstance(hook, DbApiHook):
        raise TypeError(
            f"connection {conn_id!r} (type {connection.conn_type!r}) is not a SQL database: use a "
            "connection whose hook is a common.sql DbApiHook (postgres, sqlite, mysql, ...)"
        )
    return hook


def table_asset(conn_id: str, table: str) -> Any:
    """The Airflow Asset of a table written by :class:`BatchResultsToSqlOperator` (its default outlet).

    Name and URI are ``here-batch-table://<conn_id>/<table>``: unique per database, as Airflow requires
    of asset names. A consumer DAG schedules on ``table_asset("my_db", "addresses_geocoded")``.
    """
    from airflow.sdk import Asset

    uri = f"here-batch-table://{conn_id}/{table}"
    return Asset(name=uri, uri=uri)


def _embedded_hook() -> DbApiHook:
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook
    from airflow.sdk import Connection

    path = embedded_database_path()

    class _EmbeddedSqliteHook(SqliteHook):
        def get_connection(self, conn_id: str) -> Connection:  # type: ignore[override]
            return Connection(conn_id=conn_id, conn_type="sqlite", host=path)

    return _EmbeddedSqliteHook(sqlite_conn_id=EMBEDDED_CONN_ID)
