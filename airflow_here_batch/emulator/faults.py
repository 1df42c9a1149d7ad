"""Fault injection: answer the next N matching requests with an error, a dropped connection, a delay or
a truncated body, so clients' retry and resume logic can be exercised on purpose.

Kinds:

* ``status``: HTTP ``status`` with HERE's error body (and ``Retry-After`` when ``retry_after``).
* ``drop``: close the connection without an answer. ``slow``: wait ``delay`` s, then answer.
* ``truncate``: send half of the body, then close.
* ``late`` (``create_job``): create the job, drop the answer, and let the job appear (in listings, by
  id, in the engine) only ``delay`` seconds later, as HERE completing a create whose answer timed out.
* ``malformed``: answer with the real status and a body cut in half but delivered whole (a complete
  HTTP message whose JSON is broken, e.g. ``{"id": "JOB-x", "status": "inProg``).
* ``echo``: the next ``count`` error answers (any kind, any endpoint matching) echo the request in
  their texts: the full URL with its query (``apiKey``), the ``Authorization`` header (bearer token
  or OAuth signature) and, on the token endpoint, the access key secret. Not consumed by other faults;
  for testing that clients scrub server-supplied text.

Endpoint names (``endpoint`` of a fault): ``create_job``, ``list_jobs``, ``delete_jobs``, ``get_job``,
``delete_job``, ``start_job``, ``stop_job``, ``results``, ``errors``, ``token``, ``health``,
``version``, or ``*`` for any of them (admin endpoints are never faulted).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ENDPOINTS", "KINDS", "POST_KINDS", "Fault", "FaultRegistry"]

ENDPOINTS = (
    "create_job",
    "list_jobs",
    "delete_jobs",
    "get_job",
    "delete_job",
    "start_job",
    "stop_job",
    "results",
    "errors",
    "token",
    "health",
    "version",
)
KINDS = ("status", "drop", "slow", "truncate", "late", "malformed", "echo")
#: Kinds applied after the request took effect, whatever ``after_processing`` says.
POST_KINDS = frozenset({"late", "malformed"})


@dataclass
class Fault:
    """One injected fault, consumed request by request until ``count`` reaches 0."""

    endpoint: str = "*"
    kind: str = "status"
    status: int = 503
    retry_after: float | None = None
    count: int = 1
    delay: float = 1.0
    code: str | None = None  # ErrorResponse code; default derived from the status
    #: Apply the fault after the request took effect (e.g. the job is created, then the answer is lost).
    after_processing: bool = False

    def __post_init__(self) -> None:
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; one of {', '.join(ENDPOINTS)} or '*'")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if self.kind == "status" and not 400 <= int(self.status) <= 599:
            raise ValueError("status must be a 4xx or 5xx code")
        if self.kind == "late" and self.endpoint != "create_job":
            raise ValueError("kind 'late' applies to endpoint 'create_job'")

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return asdict(self)


class FaultRegistry:
    """Thread-safe FIFO of faults (the in-process API and the HTTP admin endpoint share one)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Queue a fault."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Remove all faults."""
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        """Copy of the pending faults."""
        with self._lock:
            return list(self._faults)

    def take(self, endpoint: str) -> Fault | None:
        """Consume one use of the first fault matching ``endpoint`` (``echo`` faults excepted)."""
        return self._consume(endpoint, echo=False)

    def echoing(self, endpoint: str) -> bool:
        """Consume one use of an ``echo`` fault matching ``endpoint``; True when there was one."""
        return self._consume(endpoint, echo=True) is not None

    def _consume(self, endpoint: str, *, echo: bool) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.kind == "echo") == echo and fault.endpoint in ("*", endpoint):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None
