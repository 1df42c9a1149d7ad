"""The submit operator's arguments: job options as one value (keywords folded in, templated), and
``split_batch_job`` forwarding every SubmitBatchJobOperator argument by construction."""

from __future__ import annotations

import inspect
from typing import Any

import pendulum
import pytest

from tests.airflow.support import RunDag

START = pendulum.datetime(2025, 1, 1, tz="UTC")

#: A valid value, other than the default, per SubmitBatchJobOperator argument. An argument added later
#: without an entry here is tried with its default (or "sample" when that is None).
SAMPLES: dict[str, Any] = {
    "here_conn_id": "here_other",
    "options": {"output_delimiter": ";"},
    "service": "revgeocode",
    "input_columns": ["recId", "at"],
    "input_delimiter": ",",
    "output_columns": ["id", "lat"],
    "output_delimiter": ";",
    "output_type": "jsonl",
    "output_filter": "items.position",
    "tag": "fwd",
    "billing_tags": ["b1"],
    "notification_ids": ["N-1"],
    "start_job": True,
    "compress": False,
    "deferrable": False,
    "poll_interval": 7.5,
    "max_poll_interval": 77.0,
    "timeout": 123.0,
    "cancel_on_kill": False,
    "reattach": False,
    "allow_stopped": True,
    "max_outage": 99.0,
    "input_conn_id": "aws_other",
    "validate_input": True,
    "on_bad_record": "fail",
    "wait_for_completion": True,
    "max_records_to_send": 5000,
    "price_per_1000_records": 0.83,
    "dry_run": True,
}


def _sample(name: str, parameter: inspect.Parameter) -> Any:
    if name in SAMPLES:
        return SAMPLES[name]
    default = parameter.default
    return "sample" if default in (None, inspect.Parameter.empty) else default


def _split(**kwargs: Any) -> tuple[Any, Any]:
    from airflow.sdk import DAG

    from airflow_here_batch.operators.split import split_batch_job

    with DAG(dag_id="forwarding", schedule=None, start_date=START) as dag:
        split_batch_job(group_id="geo", input="q\nBerlin\n", **kwargs)
    return dag.get_task("geo.plan"), dag.get_task("geo.run")


def test_split_batch_job_forwards_every_submit_argument() -> None:
    from airflow_here_batch.operators.batch_job import JOB_OPTION_FIELDS, SubmitBatchJobOperator
    from airflow_here_batch.operators.split import FIXED_BY_SPLIT, operator_arguments, split_batch_job

    accepted = inspect.signature(split_batch_job).parameters
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    arguments = operator_arguments(SubmitBatchJobOperator)
    assert len(arguments) > 20  # the introspection sees the whole chain, not only the subclass
    for name, parameter in arguments.items():
        if name == "input":
            continue  # split_batch_job's own: the plan reads it
        value = _sample(name, parameter)
        plan, run = _split(**{name: value})
        options = run.partial_kwargs["options"]
        if name in FIXED_BY_SPLIT:
            with pytest.raises(ValueError, match=name):
                _split(**{name: not value if isinstance(value, bool) else "other"})
        elif name == "options":
            assert options == {"service": "geocode", **value}
        elif name in JOB_OPTION_FIELDS:
            assert options[name] == value, name
        elif name in run.partial_kwargs:
            assert run.partial_kwargs[name] == value, name
        else:
            assert getattr(plan, name) == value, f"{name} reaches neither the parts nor the plan"
    plan, _ = _split(service="lookup", input_columns=["recId", "q"], input_delimiter=";", input_conn_id="s3c")
    assert (plan.service, plan.input_columns, plan.input_delimiter) == ("lookup", ["recId", "q"], ";")
    assert plan.input_conn_id == "s3c"


def test_split_batch_job_refuses_what_submit_does_not_take() -> None:
    with pytest.raises(TypeError, match="no_such_argument"):
        _split(no_such_argument=1)
    with pytest.raises(ValueError, match="given twice"):
        _split(options={"tag": "a"}, tag="b")
    with pytest.raises(ValueError, match="start_job"):
        _split(options={"start_job": False})


def test_split_keeps_its_own_defaults() -> None:
    plan, run = _split()
    assert run.partial_kwargs["options"] == {"service": "geocode"} and plan.service == "geocode"
    assert (run.partial_kwargs["compress"], run.partial_kwargs["deferrable"]) == (True, True)
    assert run.partial_kwargs["poll_interval"] == 30.0


def test_job_options_fold_into_one_value() -> None:
    from airflow_here_batch.api.protocol import JobOptions
    from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

    by_keywords = SubmitBatchJobOperator(
        task_id="a", input="x.csv", service="geocode", output_type="jsonl", tag="t", billing_tags=["b"]
    )
    by_dict = SubmitBatchJobOperator(
        task_id="b", input="x.csv", options={"service": "geocode", "output_type": "jsonl", "tag": "t"},
        billing_tags=["b"],
    )
    by_object = SubmitBatchJobOperator(
        task_id="c", input="x.csv", options=JobOptions(output_type="jsonl", tag="t", billing_tags=["b"]),
        service="geocode",
    )
    expected = {"service": "geocode", "output_type": "jsonl", "tag": "t", "billing_tags": ["b"]}
    assert by_keywords.options == by_dict.options == by_object.options == expected
    assert {"options", "input"} <= set(SubmitBatchJobOperator.template_fields)
    for bad, match in (
        ({"options": {"tag": "a"}, "tag": "b"}, "given twice"),
        ({"options": {"outptu_type": "csv"}}, "unknown fields"),
        ({"options": None}, "service is required"),
        ({"notification_ids": ["a", "a"]}, "an id twice"),
        ({"start_job": False, "wait_for_completion": True}, "needs start_job"),
    ):
        kwargs = {"service": "geocode", **bad} if "options" not in bad else bad
        with pytest.raises(ValueError, match=match):
            SubmitBatchJobOperator(task_id="bad", input="x.csv", **kwargs)


def test_option_keywords_still_map_and_take_default_args() -> None:
    from airflow.sdk import DAG

    from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

    with DAG(dag_id="mapped", schedule=None, start_date=START, default_args={"tag": "from-defaults"}) as dag:
        SubmitBatchJobOperator.partial(task_id="m", service="geocode").expand(input=["a.csv", "b.csv"])
        single = SubmitBatchJobOperator(task_id="s", service="geocode", input="a.csv")
    assert dag.get_task("m").partial_kwargs["service"] == "geocode"
    assert single.options == {"service": "geocode", "tag": "from-defaults"}


def test_options_are_templated_and_reach_here(run_dag: RunDag, emu: Any) -> None:
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    result = run_dag("test_ops_options")
    assert set(result.task_states.values()) == {"success"}, result.describe()
    hook = HereBatchHook()
    by_dict = hook.get_job(result.xcom("submit_dict")["job_id"])
    assert by_dict.tag is not None and by_dict.tag.startswith("opts-test_ops_options_af")
    assert by_dict.status.value == "completed"
    by_object = hook.get_job(result.xcom("submit_object")["job_id"])
    assert (by_object.tag, by_object.status.value, by_object.output_type.value) == (
        "opts-object",
        "submitted",
        "jsonl",
    )
