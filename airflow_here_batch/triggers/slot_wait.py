"""Trigger of a split part waiting for a free HERE job slot (429 ``E6004291``): fires once at a moment.

Moved from ``airflow_here_batch.operators.split``; that name still imports it, so a trigger serialised
there before the move (a part deferred across an upgrade) still loads.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_here_batch.api.outcome import Deadline

__all__ = ["SlotWaitTrigger", "as_deadline"]


def as_deadline(value: Deadline | Mapping[str, Any] | None) -> Deadline | None:
    """A deadline from its serialised form ``{"at": epoch seconds, "reason": ...}`` (or as it is)."""
    if value is None or isinstance(value, Deadline):
        return value
    return Deadline(float(value["at"]), str(value["reason"]))


class SlotWaitTrigger(BaseTrigger):
    """Fires once at ``moment``, handing the part's deadline back to the task (a deferral while HERE
    has no free job slot, 429 ``E6004291``).

    The deadline travels in the event, not in ``ti.start_date``: that is the resume time on some
    runners (``dag.test()``), which would move ``execution_timeout`` on at every slot deferral.

    :param moment: when to fire, epoch seconds.
    :param deadline: the part's deadline, or None.
    """

    def __init__(self, moment: float, deadline: Deadline | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.moment = float(moment)
        self.deadline = as_deadline(deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"moment": self.moment, **self._payload()},
        )

    def _payload(self) -> dict[str, Any]:
        if self.deadline is None:
            return {"deadline": None}
        return {"deadline": {"at": self.deadline.at, "reason": self.deadline.reason}}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import asyncio

        await asyncio.sleep(max(0.0, self.moment - time.time()))
        yield TriggerEvent(self._payload())
