"""Everything that differs between the supported Airflow versions (3.0, 3.1, 3.2, 3.3), in one place.

Modules of this provider import the Airflow names that moved between versions from here, never with a
try/except of their own; names that are the same on every supported version (``airflow.sdk``'s
``BaseOperator``, ``BaseSensorOperator``, ``PokeReturnValue``, ``DAG``, ``ObjectStoragePath``,
``airflow.sdk.log.mask_secret``, ``airflow.triggers.base``) are imported directly.
The flags follow Airflow's own providers (``AIRFLOW_V_3_x_PLUS``, copied from
``airflow.providers.common.compat.version_compat`` as Airflow asks providers to do).

Why not ``airflow.providers.common.compat.sdk`` for the names below: it does not exist in the
common-compat that Airflow 3.0.6's constraints pin (1.7.3), and the one 3.1.8 and 3.2.2 pin (1.14.1,
1.15.0) has no ``ResumableJobMixin``; depending on a newer common-compat would pull a provider the
user's constraints file does not allow. Airflow itself offers every name we need on every version.

What degrades on older Airflow (also in the README's version table):

* ``BaseTrigger.on_kill`` (3.3): a user killing a deferred task stops the HERE job only on 3.3+;
  on 3.0-3.2 the trigger is cancelled and the job keeps running (``TRIGGER_ON_KILL``).
* The task-state store (3.3; ``ResumableJobMixin`` is ``None`` below, ``HAS_TASK_STATE_STORE``): the
  submit operator keeps its job id there on 3.3 and reattaches by the job's unique tag everywhere.
* Declarative connection fields (``conn-fields`` in the provider info, 3.2): on 3.0/3.1 the form
  comes from the hook's ``get_connection_form_widgets`` / ``get_ui_field_behaviour``
  (``DECLARATIVE_CONN_FIELDS``).
"""

from __future__ import annotations

from typing import Any


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The installed Airflow's ``(major, minor, micro)``, pre-release suffixes dropped."""
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_1_PLUS: bool = get_base_airflow_version_tuple() >= (3, 1, 0)
AIRFLOW_V_3_2_PLUS: bool = get_base_airflow_version_tuple() >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS: bool = get_base_airflow_version_tuple() >= (3, 3, 0)

#: Airflow calls ``BaseTrigger.on_kill`` when a user kills a deferred task.
TRIGGER_ON_KILL: bool = AIRFLOW_V_3_3_PLUS
#: Airflow keeps a task's external job id across tries (``ResumableJobMixin``).
HAS_TASK_STATE_STORE: bool = AIRFLOW_V_3_3_PLUS
#: Airflow builds the connection form from ``conn-fields`` in the provider info, without the hook.
DECLARATIVE_CONN_FIELDS: bool = AIRFLOW_V_3_2_PLUS

# BaseHook moved to the task SDK in 3.1.
if AIRFLOW_V_3_1_PLUS:
    from airflow.sdk import BaseHook
else:
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

# The task SDK has every exception from 3.2 on (3.1 has AirflowException only; it is the same class
# as airflow.exceptions' there). Before 3.2 the task runner catches airflow.exceptions' classes.
if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
else:
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )

ResumableJobMixin: Any
if HAS_TASK_STATE_STORE:
    from airflow.sdk import ResumableJobMixin
else:
    ResumableJobMixin = None

__all__ = [
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "DECLARATIVE_CONN_FIELDS",
    "HAS_TASK_STATE_STORE",
    "TRIGGER_ON_KILL",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "ResumableJobMixin",
    "get_base_airflow_version_tuple",
]
