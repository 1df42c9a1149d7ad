"""Every job body in the seed document parses, with HERE's absent fields and empty hrefs."""

from __future__ import annotations

import json

import pytest

from airflow_here_batch.api import BatchJob, JobsPage, JobStatus, RecordCounts, ServiceType
from tests.seed import seed_bodies


def test_seed_has_every_status() -> None:
    assert set(seed_bodies()) == {s.value for s in JobStatus}


@pytest.mark.parametrize("status", [s.value for s in JobStatus])
def test_every_seed_body_parses(status: str) -> None:
    body = seed_bodies()[status]
    job = BatchJob.from_dict(body)
    assert job.status is JobStatus(status)
    assert job.service is ServiceType.GEOCODE
    assert job.records == RecordCounts.from_dict(body["records"])
    assert job.created is not None and job.created.year == 2025
    assert (job.started is None) == ("started" not in body)
    assert (job.ended is None) == ("ended" not in body)
    assert job.has_results == bool(body["resultsHref"])
    assert job.has_errors == bool(body["errorsHref"])
    assert (job.output_type is None) == ("outputType" not in body)
    summary = job.summary()
    json.dumps(summary)
    assert summary["job_id"] == "<jobId>" and summary["status"] == status


def test_terminal_and_resting_states() -> None:
    assert {s for s in JobStatus if s.is_terminal} == {
        JobStatus.COMPLETED,
        JobStatus.FAILURE,
        JobStatus.DELETED,
    }
    assert JobStatus.STOPPED.is_resting and not JobStatus.STOPPED.is_terminal
    assert JobStatus.IN_PROGRESS.is_active and not JobStatus.COMPLETED.is_active


def test_failure_body_without_output_type_and_counters() -> None:
    job = BatchJob.from_dict(seed_bodies()["failure"])
    assert job.output_type is None
    assert job.records.invalid == 6 and job.records.failed == 6
    assert job.errors_href.endswith("/errors") and not job.has_results


def test_progress_fraction() -> None:
    assert RecordCounts(total=6).progress == 0.0
    assert RecordCounts(total=5, valid=5, processed=3, pending=2).progress == pytest.approx(0.6)
    assert RecordCounts().progress == 0.0


def test_minimal_job_response() -> None:
    job = BatchJob.from_dict({"id": "JOB-1", "serviceHrn": "hrn:x", "status": "deleted"})
    assert job.service is None and job.records == RecordCounts() and job.billing_tags == ()


def test_missing_status_is_an_error() -> None:
    with pytest.raises(ValueError, match="status"):
        BatchJob.from_dict({"id": "JOB-1"})
    with pytest.raises(ValueError, match="unknown HERE batch job status"):
        BatchJob.from_dict({"id": "JOB-1", "status": "weird"})


def test_jobs_page_paging_rule() -> None:
    page = JobsPage.from_dict(
        {
            "limit": 2,
            "count": 2,
            "items": [
                {"id": "a", "serviceHrn": "", "status": "queued"},
                {"id": "b", "serviceHrn": "", "status": "completed"},
            ],
        }
    )
    assert not page.is_last(2) and page.is_last(3)
    assert JobsPage.from_dict({"limit": 100, "count": 0, "items": []}).is_last(100)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("geocode", ServiceType.GEOCODE),
        ("RevGeocode", ServiceType.REVGEOCODE),
        ("hrn:here:service::olp-here:search-lookup-7", ServiceType.LOOKUP),
    ],
)
def test_service_names(name: str, expected: ServiceType) -> None:
    assert ServiceType.from_name(name) is expected


def test_unknown_service_names_the_choices() -> None:
    with pytest.raises(ValueError, match="geocode, revgeocode, lookup"):
        ServiceType.from_name("autosuggest")


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-28T13:40:27Z",
        "2026-11-28T13:40:27.123Z",
        "2026-11-28T13:40:27.123456789Z",  # nanoseconds: Python 3.10 refuses them, pendulum does not
        "2026-11-28T14:40:27.5+01:00",
    ],
)
def test_timestamps_parse_as_pendulum_parses_them(stamp: str) -> None:
    import pendulum

    job = BatchJob.from_dict({"id": "JOB-1", "status": "completed", "created": stamp, "ended": stamp})
    expected = pendulum.parse(stamp)
    assert job.created == expected and job.ended == expected
    assert isinstance(job.created, pendulum.DateTime) and job.created.utcoffset() == expected.utcoffset()


def test_bad_timestamp_is_an_error() -> None:
    with pytest.raises(ValueError):
        BatchJob.from_dict({"id": "JOB-1", "status": "completed", "created": "2026-13-45T99:00:00Z"})
