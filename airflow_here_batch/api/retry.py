"""When to retry a request and how long to wait, shared by the sync and async transports."""

from __future__ import annotations

import random
from dataclasses import dataclass

from airflow_here_batch.api.errors import (
    HereBatchError,
    MalformedAnswerError,
    RateLimitError,
    ServerError,
    TooManyJobsError,
    TransportError,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; ``Retry-After`` wins when HERE sends it.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param backoff_base: first backoff in seconds; doubles with each attempt.
    :param backoff_max: cap of one computed backoff. HERE's ``Retry-After`` is honoured as sent, even
        above it (asking earlier only earns another 429); only the caller's deadline bounds it.
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
        a 429 refusal, a connection that was never established (``TransportError.connect_failed``),
        or a failure before the request was sent (``request_not_sent``: the OAuth token endpoint
        failed, so the request itself never left).
        """
        if isinstance(error, TooManyJobsError):
            return self.retry_too_many_jobs
        if isinstance(error, RateLimitError):
            return True
        if not idempotent and not getattr(error, "request_not_sent", False):
            return isinstance(error, TransportError) and bool(getattr(error, "connect_failed", False))
        if isinstance(error, ServerError):
            return error.status in RETRYABLE_STATUSES
        return isinstance(error, (TransportError, MalformedAnswerError))

    def delay(
        self, attempt: int, error: HereBatchError | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
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

    def after(self, error: BaseException, *, remaining: float | None = None) -> float | None:
        """Seconds before the next attempt, or None to give up.

        :param remaining: seconds until the caller's deadline: the delay never runs past it, and a
            wait that would have to is given up.
        """
        self.attempts += 1
        if self.attempts > self.policy.max_retries or not isinstance(error, HereBatchError):
            return None
        if not self.policy.is_retryable(error, idempotent=self.idempotent):
            return None
        delay = self.policy.delay(self.attempts, error)
        if remaining is not None:
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        return delay
