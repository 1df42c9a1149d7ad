"""Real databases for the SQL source/sink tests: a SQLite file, a throwaway PostgreSQL database and a
throwaway MariaDB/MySQL database.

PostgreSQL: ``HERE_BATCH_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) is a
server where the tests may create and drop databases; each test gets its own database
``here_batch_t_<random>``, dropped afterwards. MariaDB/MySQL: ``HERE_BATCH_TEST_MYSQL_URL`` (default
``mysql://root@127.0.0.1:3306/test``), the same way; the Airflow connection uses ``MySqlHook`` with the
client ``mysql-connector-python``. When a server is unreachable its tests skip with a message saying how
to point them at one, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

POSTGRES_URI_ENV = "HERE_BATCH_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URI = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URI_ENV = "HERE_BATCH_TEST_MYSQL_URL"
DEFAULT_MYSQL_URI = "mysql://root@127.0.0.1:3306/test"
#: The databases every ``any_db`` test runs against (``Database.dialect`` values).
DIALECTS = ("sqlite", "postgresql", "mysql")


@dataclass
class Database:
    """A database the test owns: its Airflow connection id (set as ``AIRFLOW_CONN_<ID>``) and dialect."""

    conn_id: str
    dialect: str  # sqlite, postgresql, mysql (MariaDB or MySQL)
    dsn: str  # sqlite: the file path; postgresql: a libpq URI; mysql: mysql://user:password@host:port/db

    def connect(self) -> Any:
        if self.dialect == "sqlite":
            import sqlite3

            return sqlite3.connect(self.dsn)
        if self.dialect == "mysql":
            return _mysql_connect(self.dsn)
        import psycopg

        return psycopg.connect(self.dsn)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def execute(self, sql: str, params: tuple = ()) -> None:
        self.query(sql, params)

    @property
    def ph(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"

    def concat(self, *parts: str) -> str:
        """SQL joining text ``parts`` (``||`` is OR on MySQL)."""
        return f"CONCAT({', '.join(parts)})" if self.dialect == "mysql" else " || ".join(parts)


def _mysql_connect(uri: str, **kwargs: Any) -> Any:
    import mysql.connector

    parts = urlsplit(uri)
    return mysql.connector.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or None,
        charset="utf8mb4",
        **kwargs,
    )


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))


def postgres_admin_uri() -> str:
    return os.environ.get(POSTGRES_URI_ENV) or DEFAULT_POSTGRES_URI


def mysql_admin_uri() -> str:
    return os.environ.get(MYSQL_URI_ENV) or DEFAULT_MYSQL_URI


def _unreachable(reason: str, server: str = "postgresql") -> None:
    if server == "mysql":
        message = (
            f"MariaDB/MySQL not reachable at {mysql_admin_uri()} ({reason}): set {MYSQL_URI_ENV}="
            "mysql://user:password@host:3306/db (a user allowed to CREATE DATABASE) to run these tests"
        )
    else:
        message = (
            f"PostgreSQL not reachable at {postgres_admin_uri()} ({reason}): set {POSTGRES_URI_ENV}="
            "postgresql://user:password@host:5432/db (a user allowed to CREATE DATABASE) to run these tests"
        )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    conn_id = f"here_t_sqlite_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "geo.db"
    _set_conn(monkeypatch, conn_id, {"conn_type": "sqlite", "host": str(path)})
    return Database(conn_id, "sqlite", str(path))


@pytest.fixture
def postgres_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg comes with the test extra
        _unreachable(f"psycopg missing: {exc}")
    admin = postgres_admin_uri()
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unreachable(str(exc).strip().splitlines()[0])
    name = f"here_batch_t_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin)
    dsn = parts._replace(path=f"/{name}").geturl()
    conn_id = f"here_t_pg_{uuid.uuid4().hex[:8]}"
    _set_conn(
        monkeypatch,
        conn_id,
        {
            "conn_type": "postgres",
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "login": parts.username or "postgres",
            "password": parts.password or "",
            "schema": name,
        },
    )
    try:
        yield Database(conn_id, "postgresql", dsn)
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextmanager
def _mysql_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    try:
        import mysql.connector
    except ImportError as exc:  # pragma: no cover - the driver comes with the test extra
        _unreachable(f"mysql-connector-python missing: {exc}", "mysql")
    admin = mysql_admin_uri()
    try:
        conn = _mysql_connect(admin, connection_timeout=3, autocommit=True)
    except mysql.connector.Error as exc:
        _unreachable(str(exc).strip().splitlines()[0], "mysql")
    name = f"here_batch_t_{uuid.uuid4().hex[:10]}"
    cursor = conn.cursor()
    cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    parts = urlsplit(admin)
    dsn = parts._replace(path=f"/{name}").geturl()
    conn_id = f"here_t_my_{uuid.uuid4().hex[:8]}"
    _set_conn(
        monkeypatch,
        conn_id,
        {
            "conn_type": "mysql",
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "login": parts.username or "root",
            "password": parts.password or "",
            "schema": name,
            "extra": {"client": "mysql-connector-python"},
        },
    )
    try:
        yield Database(conn_id, "mysql", dsn)
    finally:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.close()
        conn.close()


@pytest.fixture
def mysql_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A throwaway database on the MariaDB/MySQL server (``MySqlHook``, client mysql-connector-python)."""
    with _mysql_database(monkeypatch) as db:
        yield db


_FIXTURES = {"sqlite": "sqlite_db", "postgresql": "postgres_db", "mysql": "mysql_db"}


@pytest.fixture(params=DIALECTS)
def any_db(request: pytest.FixtureRequest) -> Database:
    """Each test runs against SQLite, PostgreSQL and MariaDB/MySQL (a test module need not import
    ``mysql_db``)."""
    if request.param == "mysql":
        database = _mysql_database(request.getfixturevalue("monkeypatch"))
        db = database.__enter__()
        request.addfinalizer(lambda: database.__exit__(None, None, None))
        return db
    return request.getfixturevalue(_FIXTURES[request.param])
