"""HERE Batch API v7 protocol core: models, request builders, answer interpretation, errors.

Nothing here does I/O, imports Airflow or reads the clock except where a function says so; the hooks
are thin transports over it, and the tests exercise it without a server.

The names below load their module on first use, so a DAG file that imports one operator does not pay
for the whole core at parse time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_here_batch.api.errors import (
        AuthenticationError,
        CreateOutcomeUnknownError,
        ErrorCode,
        HereBatchError,
        InvalidRequestError,
        JobNotFoundError,
        MalformedAnswerError,
        NotFoundError,
        ProtocolError,
        RateLimitError,
        ResultsNotReadyError,
        SecretScrubber,
        ServerError,
        ServiceNotFoundError,
        TooManyJobsError,
        TransportError,
    )
    from airflow_here_batch.api.models import (
        DEFAULT_BASE_URL,
        BatchJob,
        DeletedJobs,
        JobsPage,
        JobStatus,
        OutputType,
        RecordCounts,
        ServiceType,
    )
    from airflow_here_batch.api.outcome import JobOutcome, JobWait, JobWaitError, OutcomeKind, is_transient
    from airflow_here_batch.api.polling import PollSchedule, ProgressTracker
    from airflow_here_batch.api.protocol import ApiRequest, InvalidJobOptionsError, JobOptions, redact_url
    from airflow_here_batch.api.retry import RetryPolicy

_MODULE_OF = {
    **dict.fromkeys(
        (
            "AuthenticationError",
            "CreateOutcomeUnknownError",
            "ErrorCode",
            "HereBatchError",
            "InvalidRequestError",
            "JobNotFoundError",
            "MalformedAnswerError",
            "NotFoundError",
            "ProtocolError",
            "RateLimitError",
            "ResultsNotReadyError",
            "ServerError",
            "SecretScrubber",
            "ServiceNotFoundError",
            "TooManyJobsError",
            "TransportError",
        ),
        "errors",
    ),
    **dict.fromkeys(
        (
            "DEFAULT_BASE_URL",
            "BatchJob",
            "DeletedJobs",
            "JobsPage",
            "JobStatus",
            "OutputType",
            "RecordCounts",
            "ServiceType",
        ),
        "models",
    ),
    **dict.fromkeys(("JobOutcome", "JobWait", "JobWaitError", "OutcomeKind", "is_transient"), "outcome"),
    "PollSchedule": "polling",
    "ProgressTracker": "polling",
    "ApiRequest": "protocol",
    "InvalidJobOptionsError": "protocol",
    "JobOptions": "protocol",
    "redact_url": "protocol",
    "RetryPolicy": "retry",
}

__all__ = [
    "DEFAULT_BASE_URL",
    "ApiRequest",
    "AuthenticationError",
    "BatchJob",
    "CreateOutcomeUnknownError",
    "DeletedJobs",
    "ErrorCode",
    "HereBatchError",
    "InvalidJobOptionsError",
    "InvalidRequestError",
    "JobNotFoundError",
    "JobOptions",
    "JobOutcome",
    "JobStatus",
    "JobWait",
    "JobWaitError",
    "JobsPage",
    "MalformedAnswerError",
    "NotFoundError",
    "OutcomeKind",
    "OutputType",
    "PollSchedule",
    "ProgressTracker",
    "ProtocolError",
    "RateLimitError",
    "RecordCounts",
    "ResultsNotReadyError",
    "RetryPolicy",
    "SecretScrubber",
    "ServerError",
    "ServiceNotFoundError",
    "ServiceType",
    "TooManyJobsError",
    "TransportError",
    "is_transient",
    "redact_url",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
