"""HERE Batch API v7 protocol core: models, request builders, answer interpretation, errors.

Nothing here does I/O, imports Airflow or reads the clock except where a function says so; the hooks
are thin transports over it, and the tests exercise it without a server.
"""

from airflow_here_batch.api.errors import (
    AuthenticationError,
    ErrorCode,
    HereBatchError,
    InvalidRequestError,
    JobNotFoundError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ResultsNotReadyError,
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
from airflow_here_batch.api.polling import PollSchedule, ProgressTracker
from airflow_here_batch.api.protocol import ApiRequest, InvalidJobOptionsError, JobOptions, redact_url
from airflow_here_batch.api.retry import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URL",
    "ApiRequest",
    "AuthenticationError",
    "BatchJob",
    "DeletedJobs",
    "ErrorCode",
    "HereBatchError",
    "InvalidJobOptionsError",
    "InvalidRequestError",
    "JobNotFoundError",
    "JobOptions",
    "JobStatus",
    "JobsPage",
    "NotFoundError",
    "OutputType",
    "PollSchedule",
    "ProgressTracker",
    "ProtocolError",
    "RateLimitError",
    "RecordCounts",
    "ResultsNotReadyError",
    "RetryPolicy",
    "ServerError",
    "ServiceNotFoundError",
    "ServiceType",
    "TooManyJobsError",
    "TransportError",
    "redact_url",
]
