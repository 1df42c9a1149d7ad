"""Typed views of HERE Batch API v7 job bodies.

HERE omits fields rather than sending ``null`` (``started``/``ended`` until set, ``tag`` when not given,
``outputType`` in the seed's ``failure`` body) and sends ``""`` for hrefs with nothing behind them, so
every field but ``id``/``serviceHrn``/``status`` is optional here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pendulum
from pendulum import DateTime

DEFAULT_BASE_URL = "https://batch.search.hereapi.com/v7"


class ServiceType(str, enum.Enum):
    """The three backends a batch job can run against, with HERE's service HRNs."""

    GEOCODE = "geocode"
    REVGEOCODE = "revgeocode"
    LOOKUP = "lookup"

    @property
    def hrn(self) -> str:
        return f"hrn:here:service::olp-here:search-{self.value}-7"

    @classmethod
    def from_name(cls, value: str | ServiceType) -> ServiceType:
        """Accept ``geocode``/``revgeocode``/``lookup`` (any case) or the service HRN itself."""
        if isinstance(value, ServiceType):
            return value
        text = str(value).strip()
        for member in cls:
            if text.lower() == member.value or text == member.hrn:
                return member
        names = ", ".join(m.value for m in cls)
        raise ValueError(f"service {value!r} is not a HERE Batch service: use one of {names} or its HRN")

    @classmethod
    def from_hrn(cls, hrn: str) -> ServiceType | None:
        """The service for an HRN, or None for one this client does not know (HERE may add services)."""
        for member in cls:
            if hrn == member.hrn:
                return member
        return None


class JobStatus(str, enum.Enum):
    """Every status HERE documents for a batch job.

    ``completed``, ``failure`` and ``deleted`` end a wait (HERE's own polling script stops on them).
    ``stopped`` is a resting state: the job halted on request, partial results are downloadable and
    ``start`` resumes it. It is not terminal; callers that wait decide what it means for them
    (see :attr:`is_resting`).
    """

    SUBMITTED = "submitted"
    QUEUED = "queued"
    PENDING = "pending"
    IN_PROGRESS = "inProgress"
    COMPLETED = "completed"
    FAILURE = "failure"
    STOPPED = "stopped"
    DELETED = "deleted"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_resting(self) -> bool:
        """Not running and not going anywhere without a ``start``: ``stopped`` (and ``submitted``)."""
        return self in (JobStatus.STOPPED, JobStatus.SUBMITTED)

    @property
    def is_active(self) -> bool:
        """Started and not yet ended: stopping the job makes sense."""
        return self in (JobStatus.QUEUED, JobStatus.PENDING, JobStatus.IN_PROGRESS)

    @classmethod
    def parse(cls, value: str) -> JobStatus:
        status = cls._value2member_map_.get(value)  # Enum's own lookup table: cls(value) is ~5x slower
        if status is None:
            raise ValueError(f"unknown HERE batch job status {value!r}")
        return status  # type: ignore[return-value]


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILURE, JobStatus.DELETED})


class OutputType(str, enum.Enum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class RecordCounts:
    """HERE's ``records`` counters.

    Before validation (``submitted``/``queued``) only ``total`` is filled and is an estimate; afterwards
    ``total = valid + invalid``, ``valid = processed + pending``, ``processed = succeeded + failed``.
    """

    total: int = 0
    valid: int = 0
    invalid: int = 0
    processed: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RecordCounts:
        if not data:
            return cls()
        return cls(*[int(data.get(name) or 0) for name in _COUNT_FIELDS])

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def progress(self) -> float:
        """Fraction of work done, 0.0-1.0, as ``processed / valid`` (``total`` before validation)."""
        denominator = self.valid or self.total
        if denominator <= 0:
            return 0.0
        return min(1.0, self.processed / denominator)


_COUNT_FIELDS = tuple(RecordCounts.__dataclass_fields__)


def _parse_time(value: Any) -> DateTime | None:
    if not value:
        return None
    text = str(value)
    # Fast path for HERE's usual UTC stamps ("2024-05-01T10:00:00.123Z"): a triggerer parses three per
    # status call, and pendulum.parse costs ~15x more. Anything else takes pendulum's full parser.
    if text.endswith("Z"):
        try:
            d = datetime.fromisoformat(text[:-1])
        except ValueError:
            pass
        else:
            if d.tzinfo is None:
                return DateTime(
                    d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, tzinfo=pendulum.UTC
                )
    parsed = pendulum.parse(text)
    if not isinstance(parsed, DateTime):
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}")
    return parsed


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A job as HERE describes it in any job body (``JobResponse`` or ``JobDetailResponse``)."""

    id: str
    service_hrn: str
    status: JobStatus
    href: str = ""
    tag: str | None = None
    billing_tags: tuple[str, ...] = ()
    created: DateTime | None = None
    started: DateTime | None = None
    ended: DateTime | None = None
    records: RecordCounts = field(default_factory=RecordCounts)
    results_href: str = ""
    errors_href: str = ""
    output_type: OutputType | None = None
    notification_ids: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchJob:
        """Build from a parsed job body; absent fields and ``""`` hrefs are normal, not errors."""
        try:
            job_id = str(data["id"])
            status = JobStatus.parse(str(data["status"]))
        except KeyError as missing:
            raise ValueError(f"job body has no {missing.args[0]!r} field") from None
        output_type = data.get("outputType")
        return cls(
            id=job_id,
            service_hrn=str(data.get("serviceHrn") or ""),
            status=status,
            href=str(data.get("href") or ""),
            tag=data.get("tag") or None,
            billing_tags=tuple(data.get("billingTags") or ()),
            created=_parse_time(data.get("created")),
            started=_parse_time(data.get("started")),
            ended=_parse_time(data.get("ended")),
            records=RecordCounts.from_dict(data.get("records")),
            results_href=str(data.get("resultsHref") or ""),
            errors_href=str(data.get("errorsHref") or ""),
            output_type=OutputType(output_type) if output_type else None,
            notification_ids=tuple(data.get("notificationIds") or ()),
        )

    @property
    def service(self) -> ServiceType | None:
        return ServiceType.from_hrn(self.service_hrn)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def has_results(self) -> bool:
        return bool(self.results_href)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors_href)

    def summary(self) -> dict[str, Any]:
        """A small JSON-serialisable summary, fit for XCom and trigger events (never a secret: the
        hrefs HERE sends are scrubbed of anything shaped like a credential, should it echo one)."""
        from airflow_here_batch.api.errors import scrub

        return {
            "job_id": self.id,
            "status": self.status.value,
            "service": self.service.value if self.service else self.service_hrn,
            "tag": self.tag,
            "records": self.records.to_dict(),
            "results_href": scrub(self.results_href) if self.results_href else self.results_href,
            "errors_href": scrub(self.errors_href) if self.errors_href else self.errors_href,
            "created": self.created.isoformat() if self.created else None,
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
        }


@dataclass(frozen=True)
class JobsPage:
    """One page of ``GET /batch/jobs``; HERE gives no total, so paging stops when ``count < limit``."""

    limit: int
    count: int
    items: tuple[BatchJob, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobsPage:
        items = tuple(BatchJob.from_dict(item) for item in data.get("items") or ())
        return cls(limit=int(data.get("limit") or 0), count=int(data.get("count", len(items))), items=items)

    def is_last(self, requested_limit: int) -> bool:
        return self.count < requested_limit or not self.items


@dataclass(frozen=True)
class DeletedJobs:
    """Answer of the bulk ``DELETE /batch/jobs``."""

    total: int
    job_ids: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeletedJobs:
        return cls(total=int(data.get("total") or 0), job_ids=tuple(data.get("jobIds") or ()))
