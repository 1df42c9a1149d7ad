"""HERE's error bodies mapped to one exception hierarchy.

Every exception carries HERE's ``cause``, ``action`` and ``correlationId``, and the ``X-Request-ID`` the
request was sent with, so a failed task's log says what went wrong and what to quote to HERE support.
None of them ever carries a URL: request URLs may hold the ``apiKey``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus


class ErrorCode(str, enum.Enum):
    """HERE Batch v7 error codes (shared doc §10)."""

    ID_INVALID = "E6004001"
    ARGUMENT_TOO_LONG = "E6004002"
    INPUT_TOO_LARGE = "E6004003"
    INPUT_INVALID = "E6004004"
    DELIMITER_UNSUPPORTED = "E6004005"
    JOB_RUNNING = "E6004006"
    JOB_NOT_FOUND = "E6004041"
    RESULTS_UNAVAILABLE = "E6004042"
    SERVICE_NOT_FOUND = "E6004043"
    INPUT_UNDEFINED = "E6004044"
    TOO_MANY_JOBS = "E6004291"


class HereBatchError(Exception):
    """Base of every error this provider raises about the HERE Batch API.

    :param message: what happened, in words.
    :param status: HTTP status, when there was an answer.
    :param code: HERE's error code (``E6004041`` …), when given.
    :param title: HERE's short title.
    :param cause: HERE's explanation.
    :param action: what HERE suggests doing about it.
    :param correlation_id: HERE's id of the failed request (``correlationId``, ``X-Correlation-ID``).
    :param request_id: our id of the failed request (the ``X-Request-ID`` it was sent with).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        cause: str | None = None,
        action: str | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.title = title
        self.cause = cause
        self.action = action
        self.correlation_id = correlation_id
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.cause and self.cause not in self.message:
            parts.append(f"Cause: {self.cause}")
        if self.action:
            parts.append(f"Action: {self.action}")
        if trace := self.trace():
            parts.append(f"({trace})")
        return " ".join(parts)

    def trace(self) -> str:
        """What to quote to HERE support: ``X-Request-ID <ours>, correlationId <HERE's>`` (those known)."""
        ids = []
        if getattr(self, "request_id", None):  # getattr: errors pickled before the field existed
            ids.append(f"X-Request-ID {self.request_id}")
        if self.correlation_id:
            ids.append(f"correlationId {self.correlation_id}")
        return ", ".join(ids)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword fields when pickled (Airflow ships exceptions between processes).
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[HereBatchError], message: str, state: dict[str, Any]) -> HereBatchError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthenticationError(HereBatchError):
    """401/403: missing, wrong or insufficient credentials (or an OAuth token request refused)."""


class InvalidRequestError(HereBatchError):
    """400/413 and other client errors: fix the request, retrying will not help."""


class NotFoundError(HereBatchError):
    """404 that is not one of the more specific cases below."""


class JobNotFoundError(NotFoundError):
    """404 ``E6004041``: no job with this id (or it expired: metadata is kept 60 days)."""


class ResultsNotReadyError(NotFoundError):
    """404 ``E6004042`` (or the errors report's equivalent): the job has not ended yet."""


class ServiceNotFoundError(NotFoundError):
    """404 ``E6004043``: the ``serviceHrn`` is unknown or not enabled for these credentials."""


class RateLimitError(HereBatchError):
    """429: too many requests or too many jobs; ``retry_after`` is HERE's ``Retry-After`` in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TooManyJobsError(RateLimitError):
    """429 ``E6004291``: the account's limit of concurrently running jobs is reached."""


class ServerError(HereBatchError):
    """5xx from HERE."""


class TransportError(HereBatchError):
    """No usable answer: connection refused or reset, timeout, truncated body.

    :param connect_failed: the connection was never established, so HERE cannot have acted on the
        request (what makes retrying a job creation safe).
    """

    def __init__(self, message: str, *, connect_failed: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.connect_failed = connect_failed


class ProtocolError(HereBatchError):
    """An answer that does not match HERE's documented format."""


class MalformedAnswerError(ProtocolError):
    """A 2xx answer whose body is not the JSON HERE documents (cut short, garbled by a proxy).

    Transient: the same request asked again usually gets a whole answer, so reads retry it and waits
    treat it like a dropped connection (never as a verdict on the job).
    """


class CreateOutcomeUnknownError(HereBatchError):
    """A job creation got no answer and no job with its tag appeared while the hook looked for it.

    HERE may still create the job later; uploading again could create (and bill) a second one, so the
    hook never does. The task try fails; the next try finds the job by its tag (reattach).
    """


# -------------------------------------------------------------------------------------------------
# Secrets in server-supplied text

_SECRET_PATTERNS = (
    re.compile(r"(?i)(api_?key\s*[=:]\s*\"?)[^&\s\"'<>,;)}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/=]+"),
    re.compile(r"(?i)(\"?access_token\"?\s*[=:]\s*\"?)[^&\s\"'<>,;)}]+"),
    re.compile(r"(?i)(oauth_signature\s*=\s*\"?)[^&\s\"'<>,;)}]+"),
)
MASK = "***"
#: Shorter values are not scrubbed verbatim (they would blank ordinary words); patterns still apply.
MIN_SECRET_LENGTH = 4


class SecretScrubber:
    """Removes credentials from text a server sent: the given secrets (verbatim and URL-encoded), and
    anything shaped like ``apiKey=…``, ``Bearer …``, ``access_token …`` or ``oauth_signature=…``.

    Airflow's masker only knows the secrets its own process loaded; a trigger event is read by a worker
    that may never have loaded the connection. So every server text is scrubbed where it enters the
    code (:func:`error_from_response`, the errors report's lines), before any exception, event or log.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Scrub ``secret`` from now on (no-op for empty or very short values)."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        self._secrets.update({secret, quote(secret, safe=""), quote_plus(secret)})

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without the given secrets and without anything shaped like a credential."""
    return SecretScrubber(secrets)(text)


def scrub_error(error: HereBatchError, scrubber: Callable[[str], str]) -> HereBatchError:
    """Scrub every text field of ``error`` in place (and its ``args``); returns it."""
    for name in ("message", "title", "cause", "action", "code", "correlation_id", "request_id"):
        value = getattr(error, name, None)
        if isinstance(value, str):
            setattr(error, name, scrubber(value))
    error.args = tuple(scrubber(a) if isinstance(a, str) else a for a in error.args)
    return error


_BY_CODE: dict[str, type[HereBatchError]] = {
    ErrorCode.JOB_NOT_FOUND.value: JobNotFoundError,
    ErrorCode.RESULTS_UNAVAILABLE.value: ResultsNotReadyError,
    ErrorCode.SERVICE_NOT_FOUND.value: ServiceNotFoundError,
    ErrorCode.TOO_MANY_JOBS.value: TooManyJobsError,
}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds; HTTP dates are rare for APIs and treated as unknown."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def _decode_body(body: bytes | str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if body is None:
        return {}
    if isinstance(body, Mapping):
        return body
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, Mapping) else {}


def _excerpt(body: bytes | str | Mapping[str, Any] | None) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        return " ".join(body[:100_000].split())
    return ""


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | None,
    *,
    operation: str,
    not_found: type[NotFoundError] | None = None,
    error_class: type[HereBatchError] | None = None,
    default_action: str | None = None,
    scrub: Callable[[str], str] | None = None,
    request_id: str | None = None,
) -> HereBatchError:
    """Map a non-2xx answer to the matching exception.

    :param status: the HTTP status.
    :param headers: response headers (``X-Correlation-ID``, ``Retry-After`` are read).
    :param body: the raw or parsed body: an ``ErrorResponse``, an ``AuthErrorResponse`` or anything.
    :param operation: what was attempted, in words (``"get job JOB-…"``); never a URL.
    :param not_found: the class of a 404 that carries none of the specific codes (default
        :class:`NotFoundError`); the errors endpoint uses it for "not ended yet".
    :param error_class: the class of every refusal (4xx but 429: the token endpoint's are all auth
        errors); 429 and 5xx keep their own, retryable, classes.
    :param default_action: HERE's ``action`` when the body has none.
    :param scrub: removes secrets from every text taken from the answer (see :class:`SecretScrubber`);
        the generic credential patterns apply even without one.
    :param request_id: the ``X-Request-ID`` the request was sent with (else the answer's echo of it).
    """
    clean = scrub or SecretScrubber()
    data = _decode_body(body)
    lowered = {k.lower(): v for k, v in headers.items()}

    def text(*values: Any) -> str | None:
        for value in values:
            if value:
                return clean(str(value))
        return None

    correlation_id = text(data.get("correlationId"), lowered.get("x-correlation-id"))
    code = text(data.get("code"))
    title = text(data.get("title"), data.get("error"))
    cause = text(data.get("cause"), data.get("error_description"))
    action = text(data.get("action")) or default_action
    # Scrubbed whole, then cut: a cut first could leave half a secret the scrubber no longer recognises.
    detail = title or (text(_excerpt(body)) or "")[:200] or "no details"
    message = f"HERE Batch API refused to {operation}: HTTP {status}" + (f" {code}" if code else "")
    message += f" {detail}."
    fields: dict[str, Any] = {
        "status": status,
        "code": code,
        "title": title,
        "cause": cause,
        "action": action,
        "correlation_id": correlation_id,
        "request_id": request_id or text(lowered.get("x-request-id")),
    }
    if error_class is not None and status < 500 and status != 429:
        return error_class(message, **fields)
    if status == 429:
        cls429 = TooManyJobsError if code == ErrorCode.TOO_MANY_JOBS.value else RateLimitError
        return cls429(message, retry_after=parse_retry_after(lowered.get("retry-after")), **fields)
    cls: type[HereBatchError]
    if code in _BY_CODE:
        cls = _BY_CODE[code]
    elif status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = not_found or NotFoundError
    elif status >= 500:
        cls = ServerError
    else:
        cls = InvalidRequestError
    return cls(message, **fields)
