"""Names HERE defines (service HRNs, job statuses, error codes), kept local to the emulator.

The emulator must start without importing Airflow, and ``airflow_here_batch.api`` (the client side's
definitions) may pull in more than we need; these are plain string constants with HERE's exact values.
"""

from __future__ import annotations

GEOCODE_HRN = "hrn:here:service::olp-here:search-geocode-7"
REVGEOCODE_HRN = "hrn:here:service::olp-here:search-revgeocode-7"
LOOKUP_HRN = "hrn:here:service::olp-here:search-lookup-7"

#: serviceHrn -> short service name used inside the emulator.
SERVICES: dict[str, str] = {
    GEOCODE_HRN: "geocode",
    REVGEOCODE_HRN: "revgeocode",
    LOOKUP_HRN: "lookup",
}

SUBMITTED = "submitted"
QUEUED = "queued"
PENDING = "pending"
IN_PROGRESS = "inProgress"
COMPLETED = "completed"
FAILURE = "failure"
STOPPED = "stopped"
DELETED = "deleted"

ALL_STATUSES = (SUBMITTED, QUEUED, PENDING, IN_PROGRESS, COMPLETED, FAILURE, STOPPED, DELETED)
#: Values accepted by the ``status`` filter of list / bulk delete (``deleted`` is not one).
FILTER_STATUSES = ("any", SUBMITTED, QUEUED, PENDING, IN_PROGRESS, COMPLETED, STOPPED, FAILURE)
#: States that occupy a "running job" slot.
RUNNING_STATUSES = (PENDING, IN_PROGRESS)
#: States HERE counts against the queue limit of 500 "startable" jobs.
STARTABLE_STATUSES = (QUEUED, SUBMITTED, FAILURE)

# Error codes (HERE's, plus a few emulator-specific ones documented in docs/emulator.md).
E_ID_INVALID = "E6004001"
E_ARG_TOO_LONG = "E6004002"
E_INPUT_TOO_LARGE = "E6004003"
E_INPUT_INVALID = "E6004004"
E_DELIMITER = "E6004005"
E_JOB_NOT_MODIFIABLE = "E6004006"
E_JOB_NOT_FOUND = "E6004041"
E_RESULTS_UNAVAILABLE = "E6004042"
E_SERVICE_NOT_FOUND = "E6004043"
E_INPUT_NOT_DEFINED = "E6004044"
E_TOO_MANY_RUNNING = "E6004291"
# Emulator choices where HERE gives no code:
E_ARG_INVALID = "E6004000"
E_ERRORS_UNAVAILABLE = "E6004045"
E_TOO_MANY_STARTABLE = "E6004292"
E_NOT_FOUND = "E6004040"
E_METHOD = "E6004050"

#: Marker that makes a job fail when the engine reaches the record (any column value equal to it).
FAIL_JOB_MARKER = "__EMULATOR_FAIL_JOB__"
