"""Names HERE defines (service HRNs, job statuses, error codes) as plain strings for the emulator.

The values come from the client side's enums in ``airflow_here_batch.api`` (one definition of HERE's
names for both sides; that package does not import Airflow). Plain ``str`` constants keep the hot
paths free of enum lookups. Codes HERE does not define are the emulator's own (docs/emulator.md).
"""

from __future__ import annotations

from airflow_here_batch.api.errors import ErrorCode
from airflow_here_batch.api.models import JobStatus, ServiceType

GEOCODE_HRN = ServiceType.GEOCODE.hrn
REVGEOCODE_HRN = ServiceType.REVGEOCODE.hrn
LOOKUP_HRN = ServiceType.LOOKUP.hrn

#: serviceHrn -> short service name used inside the emulator.
SERVICES: dict[str, str] = {
    GEOCODE_HRN: "geocode",
    REVGEOCODE_HRN: "revgeocode",
    LOOKUP_HRN: "lookup",
}

SUBMITTED: str = JobStatus.SUBMITTED.value
QUEUED: str = JobStatus.QUEUED.value
PENDING: str = JobStatus.PENDING.value
IN_PROGRESS: str = JobStatus.IN_PROGRESS.value
COMPLETED: str = JobStatus.COMPLETED.value
FAILURE: str = JobStatus.FAILURE.value
STOPPED: str = JobStatus.STOPPED.value
DELETED: str = JobStatus.DELETED.value

ALL_STATUSES = (SUBMITTED, QUEUED, PENDING, IN_PROGRESS, COMPLETED, FAILURE, STOPPED, DELETED)
#: Values accepted by the ``status`` filter of list / bulk delete (``deleted`` is not one).
FILTER_STATUSES = ("any", SUBMITTED, QUEUED, PENDING, IN_PROGRESS, COMPLETED, STOPPED, FAILURE)
#: States that occupy a "running job" slot.
RUNNING_STATUSES = (PENDING, IN_PROGRESS)
#: States HERE counts against the queue limit of 500 "startable" jobs.
STARTABLE_STATUSES = (QUEUED, SUBMITTED, FAILURE)

# Error codes (HERE's, plus a few emulator-specific ones documented in docs/emulator.md).
E_ID_INVALID: str = ErrorCode.ID_INVALID.value
E_ARG_TOO_LONG: str = ErrorCode.ARGUMENT_TOO_LONG.value
E_INPUT_TOO_LARGE: str = ErrorCode.INPUT_TOO_LARGE.value
E_INPUT_INVALID: str = ErrorCode.INPUT_INVALID.value
E_DELIMITER: str = ErrorCode.DELIMITER_UNSUPPORTED.value
E_JOB_NOT_MODIFIABLE: str = ErrorCode.JOB_RUNNING.value
E_JOB_NOT_FOUND: str = ErrorCode.JOB_NOT_FOUND.value
E_RESULTS_UNAVAILABLE: str = ErrorCode.RESULTS_UNAVAILABLE.value
E_SERVICE_NOT_FOUND: str = ErrorCode.SERVICE_NOT_FOUND.value
E_INPUT_NOT_DEFINED: str = ErrorCode.INPUT_UNDEFINED.value
E_TOO_MANY_RUNNING: str = ErrorCode.TOO_MANY_JOBS.value
# Emulator choices where HERE gives no code:
E_ARG_INVALID = "E6004000"
E_ERRORS_UNAVAILABLE = "E6004045"
E_TOO_MANY_STARTABLE = "E6004292"
E_NOT_FOUND = "E6004040"
E_METHOD = "E6004050"

#: Marker that makes a job fail when the engine reaches the record (any column value equal to it).
FAIL_JOB_MARKER = "__EMULATOR_FAIL_JOB__"
