"""The one small client of Airflow's REST API v2 used by the demo and the real-Airflow tests.

Loopback only, no authentication (the local set-ups run the simple auth manager with everyone admin),
JSON in and out. :func:`wait_for` is the one bounded poll loop of the developer tools.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import requests

__all__ = ["AirflowApi", "ApiError", "WaitTimeout", "wait_for"]

T = TypeVar("T")

#: The states a DAG run ends in.
RUN_ENDED = ("success", "failed")


class ApiError(OSError):
    """An answer with an HTTP error status. An ``OSError``, like a refused connection, so that
    :func:`wait_for` polls again on either.

    :ivar status: the HTTP status code.
    :ivar body: the decoded JSON body, or the text when it is not JSON.
    """

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {str(body)[:500]}")
        self.status = status
        self.body = body


class WaitTimeout(AssertionError):
    """A :func:`wait_for` ran out of time (an ``AssertionError``: a test that waits fails with it)."""


def wait_for(
    predicate: Callable[[], T],
    what: str,
    timeout: float,
    *,
    interval: float = 1.0,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something true; return that value.

    An ``OSError`` from ``predicate`` (no answer yet, :class:`ApiError`) counts as "not yet"; any other
    exception propagates (a ``predicate`` may raise to stop early, e.g. when a process died).

    :param what: what is awaited, for the error message.
    :param timeout: seconds, at most.
    :param describe: called on time-out; its text (e.g. log tails) is added to the message.
    :raises WaitTimeout: when ``timeout`` passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{describe()}" if describe else ""
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class AirflowApi:
    """REST API v2 of one Airflow api-server.

    :param base_url: e.g. ``http://127.0.0.1:8080`` (no trailing ``/api/v2``).
    :param timeout: seconds per request.
    """

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # loopback: no proxy, no .netrc

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One call; the decoded JSON answer (``None`` for an empty one).

        :param path: from ``/api/v2/...`` on, query string included.
        :raises ApiError: on an HTTP error status.
        :raises OSError: (``requests.RequestException``) when the server does not answer.
        """
        response = self._session.request(
            method,
            self.base_url + path,
            json=body,
            headers={"Accept": "application/json"},
            timeout=self.timeout,
        )
        try:
            decoded = response.json() if response.content else None
        except ValueError:
            decoded = response.text
        if response.status_code >= 400:
            raise ApiError(method, path, response.status_code, decoded)
        return decoded

    # -- the deployment --------------------------------------------------------------------------------

    def health(self) -> dict[str, str | None]:
        """``{component: status}`` of ``/api/v2/monitor/health`` (``metadatabase``, ``scheduler``,
        ``triggerer``, ``dag_processor``; status ``healthy`` / ``unhealthy`` / ``None``)."""
        body = self.call("GET", "/api/v2/monitor/health")
        return {k: v.get("status") for k, v in (body or {}).items() if isinstance(v, dict)}

    def healthy(self, components: tuple[str, ...] = ("scheduler", "triggerer", "dag_processor")) -> bool:
        """Whether every component reported, and each of ``components``, is ``healthy``."""
        states = self.health()
        return all(c in states for c in components) and all(s == "healthy" for s in states.values())

    def import_errors(self) -> list[dict[str, Any]]:
        """The DAG files that failed to import: ``[{"filename", "stack_trace", ...}]``."""
        return list(self.call("GET", "/api/v2/importErrors").get("import_errors") or [])

    def dag_ids(self) -> list[str]:
        """The ids of the parsed DAGs (the first 100), sorted."""
        return sorted(d["dag_id"] for d in self.call("GET", "/api/v2/dags?limit=100").get("dags", []))

    def has_dag(self, dag_id: str) -> bool:
        """Whether ``dag_id`` is parsed (``False`` on 404)."""
        try:
            return bool(self.call("GET", f"/api/v2/dags/{_q(dag_id)}").get("dag_id"))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/api/v2/dags/{_q(dag_id)}", {"is_paused": False})

    # -- runs ------------------------------------------------------------------------------------------

    def trigger(
        self,
        dag_id: str,
        *,
        logical_date: dt.datetime | None = None,
        conf: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> str:
        """Create a run (``logical_date`` ``None``: a manual run now); its run id."""
        body: dict[str, Any] = {
            "logical_date": logical_date.isoformat().replace("+00:00", "Z") if logical_date else None,
            "conf": conf or {},
        }
        if note is not None:
            body["note"] = note
        return str(self.call("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """The run's state (``queued``, ``running``, ``success``, ``failed``)."""
        return self.call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}").get("state")

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        *,
        interval: float = 1.0,
        describe: Callable[[], str] | None = None,
    ) -> str:
        """Until the run ended; its state (``success`` or ``failed``). :raises WaitTimeout:"""

        def ended() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in RUN_ENDED else None

        return wait_for(ended, f"the run {run_id} of {dag_id}", timeout, interval=interval, describe=describe)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances (the first 100; a mapped task's ones each with their ``map_index``)."""
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances?limit=100"
        return list(self.call("GET", path)["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id: state}`` (for DAGs without mapped tasks)."""
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance (``try_number``, ``state``, ``hostname``, dates)."""
        index = f"/{map_index}" if map_index >= 0 else ""
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}{index}/tries"
        return list(self.call("GET", path)["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, deserialized (``None`` when there is none).

        :raises ApiError: on an error other than 404.
        """
        path = (
            f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/xcomEntries/"
            f"{_q(key)}?deserialize=true&stringify=false"
        )
        try:
            return self.call("GET", path).get("value")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
