"""When to retry a request and how long to wait, shared by the sync and async transports."""

from __future__ import annotations

import random
from dataclasses import dataclass

from airflow_here_batch.api.errors import (
    HereBatchError,
    RateLimitError,
    ServerError,
    TooManyJobsError,
    TransportError,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; ``Retry-After`` wins when HERE sends it.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param backoff_base: first backoff in seconds; doubles with each attempt.
    :param backoff_max: cap of one backoff (and of an honoured ``Retry-After``).
    :param retry_too_many_jobs: retry 429 ``E6004291`` (too many running jobs) too. Off by default for
        ``start``: the job then simply waits in ``queued``-like state on the caller's side.
    """

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_too_many_jobs: bool = True

    def is_retryable(self, error: BaseException, *, idempotent: bool = True) -> bool:
        """Whether ``error`` is worth another attempt.

        A non-idempotent request (job creation) is retried only where HERE surely did not act on it:
        a 429 refusal, or a connection that was never established (``TransportError.connect_failed``).
        """
        if isinstance(error, TooManyJobsError):
            return self.retry_too_many_jobs
        if isinstance(error, RateLimitError):
            return True
        if not idempotent:
            return isinstance(error, TransportError) and bool(getattr(error, "connect_failed", False))
        if isinstance(error, ServerError):
            return error.status in RETRYABLE_STATUSES
        return isinstance(error, TransportError)

    def delay(
        self, attempt: int, error: HereBatchError | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass
class RetryState:
    """The attempts of one logical request; ``after`` says whether and when to try again.

    Both transports run the same loop around it::

        state = RetryState(policy, idempotent=True)
        while True:
            try:
                return attempt()
            except HereBatchError as error:
                delay = state.after(error)
                if delay is None:
                    raise
                sleep(delay)
    """

    policy: RetryPolicy
    idempotent: bool = True
    attempts: int = 0

    def after(self, error: BaseException) -> float | None:
        self.attempts += 1
        if self.attempts > self.policy.max_retries or not isinstance(error, HereBatchError):
            return None
        if not self.policy.is_retryable(error, idempotent=self.idempotent):
            return None
        return self.policy.delay(self.attempts, error)
