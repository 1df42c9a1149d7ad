"""Every destination of a run checked before its first HERE job is created (issue 19 §3).

The files and tables a run writes are written by tasks that run after HERE's jobs, so after they were
billed: a download folder, a split's merge folder, the table of the SQL sink. The task that creates the
jobs (:class:`~airflow_here_batch.operators.batch_job.SubmitBatchJobOperator`, the split's
:class:`~airflow_here_batch.operators.split.PlanSplitOperator`) calls :func:`check_destinations` first:
each task downstream of it that writes somewhere says where (``here_batch_destinations(context)``, a
list of :class:`Destination`, its templated fields rendered with the caller's context), and each place
is checked by the rule of its kind:

===========  ===========================================================================================
kind         check
===========  ===========================================================================================
``folder``   :func:`airflow_here_batch.files.destinations.check_folder` (the bucket exists, a marker can be
             written and removed; no bucket, folder or other file is made)
``table``    :func:`airflow_here_batch.tables.targets.check_target_table` (an existing table has every
             column, of a type that holds what the sink writes; only the catalogue is read)
===========  ===========================================================================================

A destination that cannot be known before the jobs ran (rendered from an XCom not pushed yet: ``None`` or
empty) is left to its task.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["Destination", "DestinationCheckError", "check_destinations", "known"]

log = logging.getLogger(__name__)


class DestinationCheckError(ValueError):
    """A destination of the run cannot take what it will be given; raised before any HERE job exists."""


@dataclass(frozen=True)
class Destination:
    """A place a task will write to.

    :param kind: ``folder`` (object storage or local) or ``table``.
    :param location: the folder (URI, path or ``ObjectStoragePath``) or the table name (``name`` or
        ``schema.name``).
    :param conn_id: the storage or database connection.
    :param task_id: the task that writes there (named in messages).
    :param output_columns: a table's jobs' output columns (its columns follow them).
    """

    kind: str
    location: Any
    conn_id: str | None
    task_id: str
    output_columns: Sequence[str] = ()

    def check(self) -> None:
        """:raises DestinationCheckError: naming the task, the place and the problem."""
        from airflow_here_batch.files.destinations import DestinationError, check_folder
        from airflow_here_batch.tables.dialect import UnsupportedDialectError
        from airflow_here_batch.tables.targets import TargetTableError

        try:
            if self.kind == "folder":
                check_folder(self.location, self.conn_id, what=f"destination of task {self.task_id!r}")
                return
            from airflow_here_batch.tables.connections import get_db_hook
            from airflow_here_batch.tables.records import target_columns
            from airflow_here_batch.tables.targets import check_target_table

            check_target_table(get_db_hook(self.conn_id), self.location, target_columns(self.output_columns))
        except DestinationError as exc:
            raise DestinationCheckError(str(exc)) from None
        except (TargetTableError, UnsupportedDialectError) as exc:
            raise DestinationCheckError(
                f"target of task {self.task_id!r}: {exc}; nothing was uploaded to HERE"
            ) from None
        except Exception as exc:  # the database unreachable, a login refused: not known to fit
            first = _scrubbed((str(exc).strip().splitlines() or [""])[0][:200], self.conn_id)
            raise DestinationCheckError(
                f"target of task {self.task_id!r}: table {self.location} cannot be checked "
                f"({type(exc).__name__}: {first}); nothing was uploaded to HERE"
            ) from None


def _scrubbed(text: str, conn_id: str | None) -> str:
    """``text`` without the connection's password or anything shaped like a credential."""
    from airflow_here_batch.api.errors import scrub

    secrets: list[str | None] = []
    with contextlib.suppress(Exception):  # no such connection: nothing of it to scrub
        from airflow.sdk import BaseHook

        secrets = [BaseHook.get_connection(conn_id).password] if conn_id else []
    return scrub(text, secrets)


def known(value: Any) -> str | None:
    """A rendered location as text, or ``None`` when it cannot be known yet (``None``, ``""``, ``"None"``:
    an XCom not pushed yet)."""
    text = "" if value is None else str(value).strip()
    return None if text in ("", "None") else text


def check_destinations(task: Any, context: Context) -> int:
    """Check where every task downstream of ``task`` will write, before ``task`` creates a HERE job.

    :returns: the number of places checked.
    :raises DestinationCheckError: for the first place that cannot take its files or rows.
    """
    checked = 0
    for other in sorted(task.get_flat_relatives(upstream=False), key=lambda t: t.task_id):
        declare = getattr(other, "here_batch_destinations", None)
        if not callable(declare):
            continue
        try:
            destinations = declare(context)
        except Exception as exc:  # a template that needs what only the run will make
            log.info("HERE Batch: where %s writes is known only later (%s)", other.task_id, exc)
            continue
        for destination in destinations:
            destination.check()
            checked += 1
    if checked:
        log.info("HERE Batch: %d destinations of this run checked before any job is created", checked)
    return checked
