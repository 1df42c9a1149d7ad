"""Hooks for the HERE Batch API v7: ``HereBatchHook`` (requests) and ``HereBatchAsyncHook`` (aiohttp).

Both are thin transports over :mod:`airflow_here_batch.api`: the core builds each request and reads
each answer; the hooks add the base URL and credentials, send, retry and stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import socket
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from airflow.sdk.log import mask_secret

from airflow_here_batch import DEFAULT_CONN_ID
from airflow_here_batch.api import notifications, protocol
from airflow_here_batch.api.errors import (
    AuthenticationError,
    CreateOutcomeUnknownError,
    HereBatchError,
    JobNotFoundError,
    ResultsNotReadyError,
    SecretScrubber,
    TransportError,
    scrub_error,
)
from airflow_here_batch.api.models import DEFAULT_BASE_URL, BatchJob, DeletedJobs, JobStatus
from airflow_here_batch.api.notifications import Notification
from airflow_here_batch.api.oauth import (
    DEFAULT_TOKEN_URL,
    AccessToken,
    OAuthCredentials,
    interpret_token_response,
    token_request,
)
from airflow_here_batch.api.outcome import (
    ERRORS_HEAD_LINES,
    Deadline,
    JobOutcome,
    JobWait,
    OutcomeKind,
    is_transient,
)
from airflow_here_batch.api.polling import PollSchedule
from airflow_here_batch.api.protocol import ApiRequest, JobOptions, redact_url
from airflow_here_batch.api.retry import RetryPolicy, RetryState
from airflow_here_batch.api.transfer import CHUNK_SIZE, DownloadDecoder, gzip_chunks, iter_lines_as_chunks
from airflow_here_batch.api.wait import READ_ERRORS_HEAD, READ_STATUS, STOP_JOB, WaitFlow, wait_flow
from airflow_here_batch.files.atomic import AtomicFile
from airflow_here_batch.version_compat import BaseHook

if TYPE_CHECKING:
    import datetime

    import requests

log = logging.getLogger(__name__)

T = TypeVar("T")
UploadData = str | os.PathLike[str] | bytes | BinaryIO | Iterable[str | bytes]
Destination = str | os.PathLike[str] | BinaryIO
DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
#: What an empty Host and an empty Path (the connection's schema) stand for.
DEFAULT_HOST = "batch.search.hereapi.com"
DEFAULT_API_PATH = "v7"


class _RedactApiKeyFilter(logging.Filter):
    """Blanks ``apiKey=…`` in urllib3's DEBUG lines, which print each request's full URL.

    Airflow's secret masker already hides the registered key in task logs; this keeps it out of any
    other handler too (a developer's console at DEBUG, pytest's log capture).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "apiKey=" in message:
            record.msg, record.args = _API_KEY_IN_TEXT.sub("apiKey=***", message), None
        return True


_API_KEY_IN_TEXT = re.compile(r"apiKey=[^&\s\"']*")
_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactApiKeyFilter) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_RedactApiKeyFilter())


def _mask_secret(value: str | None) -> None:
    """Register a secret with Airflow's masker so no log line shows it."""
    if not value:
        return
    mask_secret(value)


# -------------------------------------------------------------------------------------------------
# Connection settings


@dataclass(frozen=True)
class ConnectionSettings:
    """What a ``here_batch`` connection says, resolved. ``repr`` shows no secret.

    :param base_url: API root including ``/v7``.
    :param api_key: HERE API key (the connection's password), or None when OAuth is used.
    :param oauth: HERE platform credentials for bearer tokens, or None.
    :param timeout: read timeout per request, seconds.
    :param retry: retry policy for 429, 5xx and connection errors.
    :param proxies: requests-style proxies by scheme.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    oauth: OAuthCredentials | None = None
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    proxies: Mapping[str, str] | None = None


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__here_batch__{name}")
    return None if value in (None, "") else value


def base_url_from_connection(
    host: str | None, port: int | str | None, schema: str | None, scheme: str | None
) -> str:
    """The API root (``scheme://host[:port]/path``) from a connection's fields.

    Every part has one field, all of them shown in the connection form, so a connection made from a
    URI (``here-batch://:KEY@127.0.0.1:8765/v7?scheme=http``) and the same connection saved from the
    form give the same URL:

    * ``host``: a host name (default ``batch.search.hereapi.com``), or a whole URL
      (``http://127.0.0.1:8765/v7``) whose parts then fill the fields below;
    * ``port``: optional;
    * ``schema`` (shown as **Path**): default ``v7``, HERE's API version root;
    * the extra ``scheme``: ``https`` (default) or ``http``.

    :raises ValueError: when a whole URL in ``host`` and a field disagree (e.g. ``http://...`` with
        ``scheme=https``, or two different ports), the scheme is neither http nor https, or ``host``
        carries credentials, a query or a fragment (the API key belongs in the password field).
    """
    text = (host or "").strip().rstrip("/")
    url = urlsplit(text if "://" in text else f"//{text}")
    if url.username or url.password or url.query or url.fragment:
        raise ValueError(
            "Host must be a host name or a base URL without credentials, query or fragment; "
            "put the API key in the password (API key) field"
        )
    try:
        url_port = url.port
    except ValueError as exc:
        raise ValueError(f"Host has an invalid port: {exc}") from None

    def one(name: str, from_host: Any, from_field: Any) -> Any:
        if from_host and from_field and str(from_host) != str(from_field):
            raise ValueError(
                f"the {name} in Host ({from_host}) differs from the {name} field ({from_field}); "
                "set it in one place"
            )
        return from_host or from_field

    final_scheme = one("scheme", url.scheme.lower(), (scheme or "").strip().lower()) or "https"
    if final_scheme not in ("http", "https"):
        raise ValueError(f"scheme must be https or http, not {final_scheme!r}")
    final_port = one("port", url_port, int(port) if port not in (None, "") else None)
    path = one("path", url.path.strip("/"), (schema or "").strip().strip("/")) or DEFAULT_API_PATH
    hostname = url.hostname or DEFAULT_HOST
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if final_port:
        netloc = f"{netloc}:{final_port}"
    return f"{final_scheme}://{netloc}/{path}"


#: Largest credentials file read; HERE's is a few hundred bytes.
MAX_CREDENTIALS_FILE_BYTES = 64 * 1024


def read_credentials_file(path: str) -> OAuthCredentials:
    """The OAuth credentials in a HERE ``credentials.properties`` file (``~`` expanded).

    :raises AuthenticationError: naming the path and the problem: missing, a directory or not a
        regular file, unreadable (permissions), larger than 64 KB, binary or not UTF-8, a key missing
        (see :meth:`OAuthCredentials.from_properties`). A message never holds the file's content.
    """
    shown = f"credentials_file {path!r}"
    target = Path(os.path.expanduser(path))
    try:
        info = target.stat()
        if stat.S_ISDIR(info.st_mode):
            raise AuthenticationError(
                f"{shown} is a directory: name the credentials.properties file in it (e.g. "
                f"{os.path.join(path, 'credentials.properties')!r})"
            )
        if not stat.S_ISREG(info.st_mode):
            raise AuthenticationError(f"{shown} is not a regular file (a device, pipe or socket)")
        with target.open("rb") as handle:
            data = handle.read(MAX_CREDENTIALS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise AuthenticationError(
            f"{shown} does not exist (on the machine running the task: {socket.gethostname()!r}): "
            "put the file there, or set access_key_id and access_key_secret in the connection's extras"
        ) from None
    except PermissionError:
        raise AuthenticationError(
            f"{shown} cannot be read: permission denied for the user running the task "
            f"({_user_name()}); make it readable by that user (and by no one else: chmod 600)"
        ) from None
    except OSError as exc:
        raise AuthenticationError(f"{shown} cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_CREDENTIALS_FILE_BYTES:
        raise AuthenticationError(
            f"{shown} is larger than {MAX_CREDENTIALS_FILE_BYTES // 1024} KB: not a credentials.properties "
            "file (HERE's holds a few lines); is it the right file?"
        )
    return OAuthCredentials.from_properties(data, source=shown)


def _user_name() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no user name known for the uid
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def settings_from_connection(
    conn: Any, *, timeout: float | None = None, retry_policy: RetryPolicy | None = None
) -> ConnectionSettings:
    """Resolve an Airflow connection (type ``here_batch``) into :class:`ConnectionSettings`.

    Reads a ``credentials_file`` when one is named, so call it off the event loop in async code.
    """
    extra: Mapping[str, Any] = conn.extra_dejson or {}
    api_key = conn.password or None
    oauth = None
    if not api_key:
        key_id, secret = _extra(extra, "access_key_id"), _extra(extra, "access_key_secret")
        token_url = _extra(extra, "token_url") or DEFAULT_TOKEN_URL
        if key_id and secret:
            oauth = OAuthCredentials(str(key_id), str(secret), str(token_url))
        elif path := _extra(extra, "credentials_file"):
            oauth = read_credentials_file(str(path))
            if _extra(extra, "token_url"):
                oauth = OAuthCredentials(oauth.access_key_id, oauth.access_key_secret, str(token_url))
        else:
            raise AuthenticationError(
                f"connection {conn.conn_id!r} has no credentials: put the HERE API key in the password "
                "field, or OAuth access_key_id + access_key_secret (or credentials_file) in the extras"
            )
    _mask_secret(api_key)
    if oauth:
        _mask_secret(oauth.access_key_secret)
    policy = retry_policy or RetryPolicy(
        max_retries=int(_extra(extra, "max_retries") if _extra(extra, "max_retries") is not None else 5),
        backoff_base=float(_extra(extra, "backoff_base") or 1.0),
        backoff_max=float(_extra(extra, "backoff_max") or 60.0),
    )
    try:
        base_url = base_url_from_connection(conn.host, conn.port, conn.schema, _extra(extra, "scheme"))
    except ValueError as exc:
        raise ValueError(f"connection {conn.conn_id!r}: {exc}") from None
    proxies = _extra(extra, "proxies")
    if isinstance(proxies, str):
        proxies = json.loads(proxies)
    return ConnectionSettings(
        base_url=base_url,
        api_key=api_key,
        oauth=oauth,
        timeout=float(timeout or _extra(extra, "timeout") or DEFAULT_TIMEOUT),
        retry=policy,
        proxies=proxies or None,
    )


# -------------------------------------------------------------------------------------------------
# Connections are shared by the async hooks of one event loop (a triggerer runs thousands of waits).


class _LoopConnectors:
    """One ``aiohttp.TCPConnector`` per event loop, reference-counted by the sessions using it.

    Each ``async with HereBatchAsyncHook`` still opens and closes its own ``ClientSession`` (its own
    headers, timeouts and lifetime), but the sessions borrow their connections from this pool, so a
    triggerer waiting on 10,000 jobs keeps as many sockets open as it has requests in flight, not
    10,000, and a waiting trigger holds no connector of its own. The last session to leave closes
    the connector; no session can close it under another.
    """

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = (
            weakref.WeakKeyDictionary()
        )

    def acquire(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is None or entry[0].closed:
            # At most 100 calls in flight (aiohttp's default), also after a triggerer restart that
            # starts thousands of waits at once. A call queued for a socket waits within its own
            # deadline; one that runs out is a transient error, retried like any other.
            entry = self._pools[loop] = [aiohttp.TCPConnector(limit=100), 0]
        entry[1] += 1
        return entry[0]

    async def release(self, connector: Any) -> None:
        entry = self._pools.get(asyncio.get_running_loop())
        if entry is None or entry[0] is not connector:
            await connector.close()  # not the loop's current pool (already replaced): just close it
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._pools[asyncio.get_running_loop()]
            await connector.close()


_connectors = _LoopConnectors()


# -------------------------------------------------------------------------------------------------
# Tokens are shared by every hook of a process (a triggerer runs many), keyed by credentials: the
# token URL, the key id and a digest of the secret, so a wrong secret never borrows a token that the
# right one obtained (and a connection test with it never reports "Connected").

_tokens: dict[tuple[str, str, str], AccessToken] = {}
_token_lock = threading.Lock()
_async_token_locks: dict[tuple[int, str, str, str], asyncio.Lock] = {}


def _token_key(creds: OAuthCredentials) -> tuple[str, str, str]:
    digest = hashlib.sha256(creds.access_key_secret.encode("utf-8")).hexdigest()
    return (creds.token_url, creds.access_key_id, digest)


def _scrubber(settings: ConnectionSettings) -> SecretScrubber:
    """The secrets to scrub from server texts: the API key, the OAuth secret, the process's tokens."""
    scrubber = SecretScrubber(
        [settings.api_key, settings.oauth.access_key_secret if settings.oauth else None]
    )
    for token in list(_tokens.values()):
        scrubber.add(token.value)
    return scrubber


def _not_sent(error: HereBatchError) -> HereBatchError:
    """Mark an error raised before the request left (the token endpoint failed): safe to retry."""
    error.request_not_sent = True  # type: ignore[attr-defined]
    return error


def _cached_token(creds: OAuthCredentials) -> AccessToken | None:
    token = _tokens.get(_token_key(creds))
    return token if token and token.is_fresh() else None


def _store_token(creds: OAuthCredentials, token: AccessToken) -> None:
    _tokens[_token_key(creds)] = token


def _forget_token(creds: OAuthCredentials) -> None:
    _tokens.pop(_token_key(creds), None)


def _auth_parts(
    settings: ConnectionSettings, token: AccessToken | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Query parameters and headers that authenticate one request."""
    if settings.api_key:
        return {"apiKey": settings.api_key}, {}
    assert token is not None
    return {}, {"Authorization": f"Bearer {token.value}"}


def _may_have_acted(error: HereBatchError) -> bool:
    """Whether HERE may have carried out a request that failed this way (no answer, 5xx, garbled)."""
    from airflow_here_batch.api.errors import MalformedAnswerError, ServerError

    if getattr(error, "request_not_sent", False):
        return False
    if isinstance(error, TransportError):
        return not error.connect_failed
    return isinstance(error, (ServerError, MalformedAnswerError))


def _log_failure(request: ApiRequest, error: HereBatchError, delay: float | None) -> None:
    trace = error.trace()
    where = f" ({trace})" if trace else ""
    if delay is None:
        log.error("HERE Batch: %s failed%s: %s", request.operation, where, error.message)
    else:
        log.warning(
            "HERE Batch: %s failed%s, retrying in %.1f s: %s", request.operation, where, delay, error.message
        )


# -------------------------------------------------------------------------------------------------
# Sync hook


class _HereBatchHookBase(BaseHook):
    """What both hooks share: the connection type and how a connection becomes settings."""

    conn_name_attr = "here_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "here_batch"
    hook_name = "HERE Batch"

    def __init__(
        self,
        here_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.here_conn_id = here_conn_id
        self._retry_policy = retry_policy
        self._timeout = timeout
        #: Epoch seconds after which no retry starts and no backoff (Retry-After included) sleeps past.
        self.deadline = deadline
        self._settings: ConnectionSettings | None = None
        self._session: Any = None  # requests.Session or aiohttp.ClientSession, opened on first use
        #: The X-Request-ID of the last request sent, named by an error raised after its answer.
        self._last_request_id: str | None = None

    def _traced(self, error: HereBatchError) -> HereBatchError:
        """``error`` naming the last request's X-Request-ID (when it names none yet)."""
        if not getattr(error, "request_id", None):
            error.request_id = self._last_request_id
        return error


def _sending(method: str, url_path: str, request_id: str) -> None:
    """The debug line of every request: method, path (never the query, where apiKey travels), id."""
    log.debug("HERE Batch: %s %s (X-Request-ID %s)", method, url_path, request_id)


class _RetryLoop:
    """After a failed attempt: refresh the OAuth token once on a 401, back off, or give up.

    The sync and async hooks run the same loop around it and differ only in how they sleep.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        idempotent: bool = True,
        retry: bool = True,
        deadline: float | None = None,
    ) -> None:
        policy = settings.retry if retry else RetryPolicy(max_retries=0)
        self._state = RetryState(policy, idempotent=idempotent)
        self._oauth = settings.oauth
        self._refreshed = not retry  # no token refresh either: that would be a second attempt
        self._deadline = deadline
        self._settings = settings

    def after(self, request: ApiRequest, error: HereBatchError) -> float | None:
        """Seconds to wait before the next attempt, or None to raise ``error``.

        Every error passes here before it is raised or logged: its texts are scrubbed once more (the
        core already scrubbed what HERE sent; this also covers tokens obtained meanwhile).
        """
        scrub_error(error, _scrubber(self._settings))
        if isinstance(error, AuthenticationError) and not getattr(error, "request_not_sent", False):
            if self._oauth and not self._refreshed and error.status == 401:
                self._refreshed = True
                _forget_token(self._oauth)
                return 0.0
            _log_failure(request, error, None)
            return None
        remaining = None if self._deadline is None else self._deadline - time.time()
        delay = self._state.after(error, remaining=remaining)
        _log_failure(request, error, delay)
        return delay


class HereBatchHook(_HereBatchHookBase):
    """Talks to the HERE Batch API v7 with ``requests`` over one pooled session.

    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param retry_policy: overrides the connection's retry settings.
    :param timeout: overrides the connection's request timeout, seconds.
    """

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form behaviour on Airflow 3.0/3.1 (3.2+ reads the provider info's copy).

        ``{"hidden_fields": [...], "relabeling": {field: label}, "placeholders": {field: text}}``.
        """
        from airflow_here_batch.get_provider_info import UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields of the connection form on Airflow 3.0/3.1, built from ``CONN_FIELDS``.

        Airflow >= 3.2 reads ``conn-fields`` from the provider info and never calls this. Only wtforms
        field classes Airflow accepts (String, Integer, Password) and no Flask-AppBuilder widget, so the
        3.0/3.1 API server (which stands in for wtforms while it reads the form) shows them whenever
        wtforms is importable (it comes with the FAB provider); without it Airflow shows no provider's
        extra fields, and the Extra JSON field holds them.
        """
        from wtforms import IntegerField, PasswordField, StringField
        from wtforms.validators import Optional

        from airflow_here_batch.get_provider_info import CONN_FIELDS

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec.get("schema", {})
            types = schema.get("type", [])
            if schema.get("format") == "password":
                field_class: Any = PasswordField
            elif "integer" in types:
                field_class = IntegerField
            else:  # strings, and numbers as text: wtforms' FloatField is not among Airflow's allowed ones
                field_class = StringField
            kwargs: dict[str, Any] = {"validators": [Optional()], "description": spec.get("description", "")}
            if schema.get("default") is not None:
                kwargs["default"] = schema["default"]
            widgets[name] = field_class(spec["label"], **kwargs)
        return widgets

    @property
    def settings(self) -> ConnectionSettings:
        if self._settings is None:
            conn = self.get_connection(self.here_conn_id)
            self._settings = settings_from_connection(
                conn, timeout=self._timeout, retry_policy=self._retry_policy
            )
        return self._settings

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def get_conn(self) -> requests.Session:
        """The pooled ``requests`` session (created on first use)."""
        if self._session is None:
            import requests  # here, not at module level: DAG files import this module via operators

            session = requests.Session()
            session.headers.update(protocol.DEFAULT_HEADERS)
            if self.settings.proxies:
                session.proxies.update(self.settings.proxies)
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- sending ----------------------------------------------------------------------------------

    def _token(self, *, force: bool = False) -> AccessToken | None:
        creds = self.settings.oauth
        if creds is None:
            return None
        with _token_lock:
            if not force and (token := _cached_token(creds)):
                return token
            import requests

            signed = token_request(creds)
            failure: TransportError | None = None
            request_id = self._last_request_id = protocol.new_request_id()
            _sending("POST", urlsplit(signed.url).path, request_id)
            headers = {**signed.headers, protocol.REQUEST_ID_HEADER: request_id}
            try:
                response = self.get_conn().post(
                    signed.url, data=signed.body, headers=headers, timeout=self._timeouts()
                )
            except requests.RequestException as exc:
                failure = TransportError(f"could not reach HERE's token endpoint ({type(exc).__name__})")
            if failure is not None:
                # Outside the except block: requests' error (and its URL) is not chained. Marked as
                # not sent: the API request waiting for this token never left, so it may be retried.
                raise _not_sent(self._traced(failure))
            try:
                token = interpret_token_response(
                    response.status_code, response.headers, response.content, scrub=_scrubber(self.settings)
                )
            except HereBatchError as error:
                raise _not_sent(self._traced(error)) from None
            _mask_secret(token.value)
            _store_token(creds, token)
            log.info("HERE Batch: obtained an OAuth access token for key id %s", creds.access_key_id)
            return token

    def _timeouts(self) -> tuple[float, float]:
        return (min(CONNECT_TIMEOUT, self.settings.timeout), self.settings.timeout)

    def _send_once(self, request: ApiRequest, *, body: Any = None, stream: bool = False) -> requests.Response:
        """One HTTP exchange; non-2xx answers raise the core's mapped exception, never requests' (URL!)."""
        import requests

        settings = self.settings
        token = self._token()
        params, auth_headers = _auth_parts(settings, token)
        request_id = self._last_request_id = protocol.new_request_id()
        headers = {**request.headers, **auth_headers, protocol.REQUEST_ID_HEADER: request_id}
        _sending(request.method, request.path, request_id)
        failure: TransportError | None = None
        try:
            response = self.get_conn().request(
                request.method,
                request.url(settings.base_url),
                params={**request.params, **params},
                headers=headers,
                data=body,
                stream=stream,
                timeout=self._timeouts(),
            )
        except requests.ConnectionError as exc:
            connect_failed = isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in repr(exc)
            failure = TransportError(
                f"could not {request.operation}: connection to {redact_url(settings.base_url)} failed "
                f"({type(exc).__name__})",
                connect_failed=connect_failed,
            )
        except requests.Timeout as exc:
            failure = TransportError(
                f"could not {request.operation}: no answer from {redact_url(settings.base_url)} within "
                f"{settings.timeout:.0f} s ({type(exc).__name__})"
            )
        except requests.RequestException as exc:
            failure = TransportError(f"could not {request.operation}: {type(exc).__name__}")
        if failure is not None:
            # Raised outside the except block so requests' exception, whose text holds the full URL
            # with the apiKey, is neither chained nor shown in a traceback.
            raise self._traced(failure)
        if not 200 <= response.status_code < 300:
            content = response.content
            response.close()
            protocol.raise_for_status(
                request,
                response.status_code,
                response.headers,
                content,
                scrub=_scrubber(settings),
                request_id=request_id,
            )
        return response

    def _call(
        self, request: ApiRequest, attempt: Callable[[], T], *, idempotent: bool = True, retry: bool = True
    ) -> T:
        """Run ``attempt`` with the connection's retry policy (and one token refresh on a 401).

        ``retry=False`` runs it once (an upload body that cannot be sent a second time).
        """
        loop = _RetryLoop(self.settings, idempotent=idempotent, retry=retry, deadline=self.deadline)
        while True:
            try:
                return attempt()
            except HereBatchError as error:
                delay = loop.after(request, self._traced(error))
                if delay is None:
                    raise
                time.sleep(delay)

    def _json_call(self, request: ApiRequest, interpret: Callable[..., T], *, idempotent: bool = True) -> T:
        def attempt() -> T:
            response = self._send_once(request)
            return interpret(request, response.status_code, response.headers, response.content)

        return self._call(request, attempt, idempotent=idempotent)

    # -- endpoints --------------------------------------------------------------------------------

    def create_job(
        self,
        data: UploadData,
        *,
        options: JobOptions,
        compress: bool = False,
        reattach_by_tag: bool = False,
    ) -> BatchJob:
        """Create a job (``POST /batch/jobs``), uploading ``data`` with a ``Content-Length``.

        The body is never sent chunked (HERE documents no chunked request bodies). A path, or a
        binary file object that can tell its size, is streamed from disk as it is; ``bytes`` are sent
        from memory; anything else (``compress=True`` on a file, an iterable of lines, a stream of
        unknown size) is first written to an anonymous temporary file in the system's temporary
        directory (``TMPDIR``; it needs room for the upload, compressed when ``compress``), memory one
        chunk, removed whatever happens, and streamed from there.

        :param data: a local file path, ``bytes``, a binary file object, or an iterable of lines
            (``str`` or ``bytes``, with or without the newline).
        :param options: the job's parameters (service, columns, delimiters, tag, ``start_job`` …).
        :param compress: gzip the upload (level 1; ``Content-Encoding: gzip``).
        :param reattach_by_tag: ``options.tag`` is unique to this submission, so after an ambiguous
            failure (timeout, reset, 5xx, a garbled answer) a job carrying that tag is the one this
            request created.

        Creating a job is not idempotent, and HERE may complete a create whose answer was lost
        seconds later. So the upload is repeated only where HERE surely did not act on it (429, a
        connection never established, the OAuth token endpoint failing before the request left), and
        never after an ambiguous failure. Then, with ``reattach_by_tag``, the hook looks for the job
        under its tag for :attr:`late_create_window` seconds (twice the read timeout: longer than
        HERE can have been answering) and returns it when it appears; if it does not, it raises
        :class:`CreateOutcomeUnknownError` and the task's next try finds the job by its tag (the
        operator's reattach, which also stops any second job found under that tag). A body that
        cannot be replayed (an iterator, a non-seekable file) is sent once.

        :raises CreateOutcomeUnknownError: the create's outcome stayed unknown (see above).
        """
        request = protocol.create_job_request(options, gzip_body=compress)
        body = _UploadBody(data, compress)

        def attempt() -> BatchJob:
            # A retry (only where HERE surely did not act) reads the body again from its start.
            response = self._send_once(request, body=body.payload())
            return protocol.interpret_job(request, response.status_code, response.headers, response.content)

        try:
            job = self._call(request, attempt, idempotent=False, retry=body.replayable)
        except HereBatchError as error:
            body.close()
            if not (reattach_by_tag and options.tag and _may_have_acted(error)):
                raise
            job = self._await_late_create(options.tag, error)
        finally:
            body.close()
        log.info("HERE Batch: created job %s (%s, status %s)", job.id, job.service_hrn, job.status.value)
        return job

    @property
    def late_create_window(self) -> float:
        """Seconds to look for a job under its tag after a create without a usable answer."""
        return 2 * self.settings.timeout

    def _await_late_create(self, tag: str, error: HereBatchError) -> BatchJob:
        window = self.late_create_window
        if self.deadline is not None:
            window = max(0.0, min(window, self.deadline - time.time()))
        log.warning(
            "HERE Batch: the create request got no usable answer (%s); HERE may still create the job, so "
            "nothing is uploaded again: looking for it under its tag %s for up to %.0f s",
            error.message,
            tag,
            window,
        )
        give_up = time.monotonic() + window
        while True:
            try:
                jobs = self.find_jobs_by_tag(tag)
            except HereBatchError as exc:
                if not is_transient(exc):
                    raise
                log.warning("HERE Batch: could not list jobs by tag %s (%s); looking again", tag, exc.message)
                jobs = []
            if jobs:
                job = jobs[0]
                log.info("HERE Batch: job %s was created by the request that got no answer; using it", job.id)
                return job
            left = give_up - time.monotonic()
            if left <= 0:
                raise CreateOutcomeUnknownError(
                    f"could not tell whether HERE created the job: {error.message} No job with tag {tag} "
                    f"appeared within {window:.0f} s. Nothing was uploaded again (that could create and "
                    "bill a second job); the task's next try looks for the job by its tag first."
                )
            time.sleep(min(left, max(0.5, window / 8)))

    def get_job(self, job_id: str) -> BatchJob:
        """Job details and status (``GET /batch/jobs/{jobId}``)."""
        return self._json_call(protocol.get_job_request(job_id), protocol.interpret_job)

    def start_job(self, job_id: str) -> BatchJob:
        """Start, or resume a stopped job (``PUT …/start``); a running job is left as it is."""
        return self._json_call(protocol.start_job_request(job_id), protocol.interpret_job)

    def stop_job(self, job_id: str) -> BatchJob:
        """Ask HERE to halt the job (``PUT …/stop``); the status turns ``stopped`` asynchronously."""
        return self._json_call(protocol.stop_job_request(job_id), protocol.interpret_job)

    def delete_job(self, job_id: str) -> BatchJob:
        """Delete the job and its files (``DELETE …``); its metadata stays readable by id."""
        return self._json_call(protocol.delete_job_request(job_id), protocol.interpret_job)

    def list_jobs(
        self, *, status: JobStatus | str | None = None, tag: str | None = None, page_size: int = 100
    ) -> Iterator[BatchJob]:
        """Every job matching ``status``/``tag``, page after page (HERE does not list deleted jobs)."""
        offset = 0
        while True:
            request = protocol.list_jobs_request(status=status, tag=tag, offset=offset, limit=page_size)
            page = self._json_call(request, protocol.interpret_jobs_page)
            yield from page.items
            if page.is_last(page_size):
                return
            offset += page_size

    def find_job_by_tag(self, tag: str) -> BatchJob | None:
        """The newest job carrying ``tag``, or None."""
        jobs = self.find_jobs_by_tag(tag)
        return jobs[0] if jobs else None

    def find_jobs_by_tag(self, tag: str) -> list[BatchJob]:
        """Every (not deleted) job carrying exactly ``tag``, newest first."""
        jobs = list(self.list_jobs(tag=tag))
        return sorted(jobs, key=lambda j: j.created.timestamp() if j.created else 0.0, reverse=True)

    def delete_jobs(self, *, status: JobStatus | str, tag: str | None = None) -> DeletedJobs:
        """Bulk delete by ``status`` (required; ``"any"`` for all) and optional ``tag``."""
        request = protocol.delete_jobs_request(status=status, tag=tag)
        return self._json_call(request, protocol.interpret_deleted_jobs)

    def download_results(self, job_id: str, destination: Destination) -> int | None:
        """Stream the results to ``destination``; bytes written, or None when there are none (204).

        A path is written atomically: a temporary file beside it, renamed when complete, so a failed
        download leaves nothing at the destination. Raises ``ResultsNotReadyError`` before the job ends.
        """
        return self._download(protocol.results_request(job_id), destination)

    def download_errors(self, job_id: str, destination: Destination) -> int | None:
        """Stream the errors report to ``destination``, like :meth:`download_results`."""
        return self._download(protocol.errors_request(job_id), destination)

    def download_errors_head(self, job_id: str, max_lines: int = 20) -> list[str]:
        """The first lines of the errors report (for messages, secrets scrubbed).

        ``[]`` when there is none: no errors (204), or the report cannot exist any more (the job is
        unknown or deleted: :func:`~airflow_here_batch.api.protocol.errors_report_gone`, the rule the
        async hook follows too).

        :raises ResultsNotReadyError: the job has not ended yet.
        """
        request = protocol.errors_request(job_id)

        def attempt() -> list[str]:
            response = self._send_once(request, stream=True)
            with contextlib.closing(response):
                if response.status_code == 204:
                    return []
                lines = _head_lines(_iter_raw(response), response.headers.get("Content-Encoding"), max_lines)
                scrub = _scrubber(self.settings)  # HERE's report quotes the input: never a secret further
                return [scrub(line) for line in lines]

        try:
            return self._call(request, attempt)
        except (JobNotFoundError, ResultsNotReadyError) as error:
            status = self._status_or_none(job_id) if protocol.errors_head_needs_status(error) else None
            if protocol.errors_report_gone(error, status):
                return []
            raise

    def _status_or_none(self, job_id: str) -> JobStatus | None:
        """The job's status, None when HERE does not know the job."""
        try:
            return self.get_job(job_id).status
        except JobNotFoundError:
            return None

    def _download(self, request: ApiRequest, destination: Destination) -> int | None:
        with _DestinationWriter(destination) as writer:

            def attempt() -> int | None:
                writer.rewind()
                response = self._send_once(request, stream=True)
                with contextlib.closing(response):
                    if response.status_code == 204:
                        return None
                    decoder = _decoder_for(response.headers)
                    for chunk in _iter_raw(response):
                        writer.write(decoder.feed(chunk))
                    writer.write(decoder.finish())
                    return decoder.bytes_out

            written = self._call(request, attempt)
            if written is None:
                writer.discard()
            else:
                writer.commit()
                log.info("HERE Batch: %s: %d bytes", request.operation, written)
            return written

    def wait_for_job(
        self,
        job_id: str,
        *,
        schedule: PollSchedule | None = None,
        timeout: float | None = None,
    ) -> BatchJob:
        """Poll until the job is terminal (completed, failure, deleted) or stopped; return it.

        The one wait (:func:`~airflow_here_batch.api.wait.wait_flow`), without the outage rule: an
        error the hook's own retries did not overcome is raised.

        :param schedule: the poll schedule (default: start at 10 s, grow to 5 min).
        :param timeout: give up after this many seconds with ``TimeoutError``.
        :raises HereBatchError: a status call failed.
        """
        now = time.time()
        wait = JobWait(
            job_id,
            schedule=schedule or PollSchedule(),
            deadline=None if timeout is None else Deadline(now + timeout),
            allow_stopped=True,
            started=now,
        )
        outcome = self.drive_wait(wait_flow(wait, errors_head=False, log=log), job_id, raise_errors=True)
        assert outcome is not None  # a driver that sleeps always gets to the outcome
        job = wait.last_job
        if outcome.kind is OutcomeKind.TIMEOUT or job is None:
            status = job.status.value if job is not None else "unseen"
            raise TimeoutError(f"job {job_id} still {status} after {timeout or 0:.0f} s")
        return job

    def wait_outcome(
        self, wait: JobWait, *, stop_on_timeout: bool = False, sleep: Callable[[float], None] = time.sleep
    ) -> JobOutcome:
        """Poll until ``wait`` ends (:func:`~airflow_here_batch.api.wait.wait_flow`, the flow
        :class:`~airflow_here_batch.triggers.batch_job.BatchJobTrigger` runs too), on a worker.

        :param stop_on_timeout: ask HERE to stop the job when the deadline passes.
        :param sleep: how to wait between polls (seconds).
        """
        flow = wait_flow(wait, stop_on_timeout=stop_on_timeout, log=log)
        outcome = self.drive_wait(flow, wait.job_id, sleep=sleep)
        assert outcome is not None  # a driver that sleeps always gets to the outcome
        return outcome

    def drive_wait(
        self,
        flow: WaitFlow,
        job_id: str,
        *,
        sleep: Callable[[float], None] | None = time.sleep,
        raise_errors: bool = False,
    ) -> JobOutcome | None:
        """The sync driver of a :data:`~airflow_here_batch.api.wait.WaitFlow`: make the calls it asks
        for, sleep when it says so, and return its outcome.

        :param job_id: the job the flow waits for (its ``JobWait.job_id``).
        :param sleep: ``None``: return ``None`` where the flow would sleep, leaving it there (one poll;
            a sensor's poke). Sending the same flow here again goes on with the next poll.
        :param raise_errors: raise a failed status call's ``HereBatchError`` instead of handing it to
            the flow (no outage rule: :meth:`wait_for_job`).
        """
        answer: Any = None
        while True:
            step = flow.send(answer)
            answer = None
            if step is READ_STATUS:
                try:
                    answer = self.get_job(job_id)
                except HereBatchError as exc:
                    if raise_errors:
                        raise
                    answer = exc
            elif step is READ_ERRORS_HEAD:
                try:
                    answer = self.download_errors_head(job_id, ERRORS_HEAD_LINES)
                except HereBatchError as exc:
                    answer = exc
            elif step is STOP_JOB:
                try:
                    self.stop_job(job_id)
                except HereBatchError as exc:
                    answer = exc
            elif isinstance(step, JobOutcome):
                return step
            elif sleep is None:
                return None
            else:
                sleep(step)

    def test_connection(self) -> tuple[bool, str]:
        """An authenticated, cheap call (list one job), for the UI's Test button."""
        try:
            request = protocol.list_jobs_request(limit=1)
            response = self._send_once(request)  # once, no retries: the UI button should answer quickly
            protocol.interpret_jobs_page(request, response.status_code, response.headers, response.content)
        except HereBatchError as exc:
            return False, str(self._traced(exc))
        except (OSError, ValueError) as exc:
            return False, str(exc)
        return True, f"Connected to the HERE Batch API at {redact_url(self.base_url)}"

    # -- list filtering by age ----------------------------------------------------------------------

    def list_jobs_created_before(
        self,
        cutoff: datetime.datetime,
        *,
        status: JobStatus | str | None = None,
        tag: str | None = None,
    ) -> Iterator[BatchJob]:
        """Every job matching ``status``/``tag`` whose ``created`` time is before ``cutoff``.

        HERE's ``GET /batch/jobs`` has no time filter (shared doc §4), so every page is read and the
        filter runs here. ``cutoff`` must be timezone-aware (HERE's times are UTC). A job without a
        ``created`` time (HERE marks it required) is never matched: a clean-up must not guess.

        :raises ValueError: ``cutoff`` is naive.
        """
        if cutoff.tzinfo is None or cutoff.utcoffset() is None:
            raise ValueError("cutoff must be timezone-aware, e.g. pendulum.now('UTC') - timedelta(days=7)")
        for job in self.list_jobs(status=status, tag=tag):
            if job.created is not None and job.created < cutoff:
                yield job

    # -- notifications (HERE BETA webhooks) ---------------------------------------------------------

    def create_notification(self, url: str) -> Notification:
        """Register a webhook (``POST /batch/notifications``); returns it with HERE's id.

        HERE calls ``url`` with HTTP GET when a job that lists the notification's id ends, after
        substituting ``${JOB_ID}``, ``${JOB_STATUS}`` … (see
        :data:`airflow_here_batch.api.notifications.PLACEHOLDERS`). Not idempotent: retried only
        where HERE cannot have created it (429, connection never established).

        :raises InvalidNotificationError: ``url`` is not an absolute http(s) URL, or uses an unknown
            placeholder (checked before sending).
        """
        body = notifications.notification_body(url)
        request = notifications.create_notification_request()
        created = self._body_call(request, body, notifications.interpret_notification, idempotent=False)
        log.info("HERE Batch: created notification %s (%s)", created.id, redact_url(created.url))
        return created

    def list_notifications(self) -> list[Notification]:
        """Every notification of the caller (``GET /batch/notifications``)."""
        request = notifications.list_notifications_request()
        return self._json_call(request, notifications.interpret_notifications)

    def get_notification(self, notification_id: str) -> Notification:
        """One notification (``GET /batch/notifications/{id}``); :class:`NotFoundError` when unknown."""
        request = notifications.get_notification_request(notification_id)
        return self._json_call(request, notifications.interpret_notification)

    def replace_notification(self, notification_id: str, url: str) -> Notification:
        """Replace a notification's webhook URL (``PUT /batch/notifications/{id}``); idempotent."""
        body = notifications.notification_body(url)
        request = notifications.replace_notification_request(notification_id)
        return self._body_call(request, body, notifications.interpret_notification, idempotent=True)

    def delete_notification(self, notification_id: str) -> None:
        """Delete a notification (``DELETE /batch/notifications/{id}``, 204).

        A retry after an ambiguous failure may meet a 404 (the first attempt deleted it): raised as
        :class:`NotFoundError`, as for an id that never existed.
        """
        request = notifications.delete_notification_request(notification_id)
        self._json_call(request, _no_content)

    def test_notification(self, notification_id: str) -> None:
        """Ask HERE to call the webhook now with dummy values (``GET …/{id}/test``, 204)."""
        self._json_call(notifications.test_notification_request(notification_id), _no_content)

    # -- API information ----------------------------------------------------------------------------

    def get_health(self) -> str:
        """HERE's health (``GET /health``, public): ``"ok"`` or ``"fail"``."""
        return self._json_call(protocol.health_request(), protocol.interpret_health)

    def get_version(self) -> dict[str, Any]:
        """HERE's versions (``GET /version``): ``{"apiVersion", "serviceVersion", "dataVersions"?}``."""
        return self._json_call(protocol.version_request(), protocol.interpret_version)

    def _body_call(
        self, request: ApiRequest, body: bytes, interpret: Callable[..., T], *, idempotent: bool
    ) -> T:
        def attempt() -> T:
            response = self._send_once(request, body=body)
            return interpret(request, response.status_code, response.headers, response.content)

        return self._call(request, attempt, idempotent=idempotent)


def _no_content(request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str) -> None:
    """Answer of an endpoint whose success carries no body (204)."""
    protocol.raise_for_status(request, status, headers, body)


# -------------------------------------------------------------------------------------------------
# Upload bodies and download sinks


def _path_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk


def _file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_SIZE):
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        yield chunk


class _SizedChunks:
    """``length`` bytes of ``handle`` from ``start``, read in chunks of :data:`CHUNK_SIZE` each time it
    is iterated. Its ``len()`` makes requests send a ``Content-Length`` (an iterable without one goes
    out chunked) and stream the chunks as they are read."""

    def __init__(self, handle: IO[bytes], start: int, length: int) -> None:
        self._handle, self._start, self._length = handle, start, length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        self._handle.seek(self._start)
        left = self._length
        while left > 0:
            chunk = self._handle.read(min(CHUNK_SIZE, left))
            if not chunk:
                raise OSError(f"the upload's source ended {left} bytes short of its size: it changed")
            left -= len(chunk)
            yield chunk


def _extent(handle: Any) -> tuple[int | None, int | None]:
    """``(position, size)`` of a file object: position None when it cannot be read again (not
    seekable), size None when unknown (a text file, a stream that can only rewind, a GzipFile)."""
    try:
        position = handle.tell() if handle.seekable() else None
    except (OSError, ValueError):
        return None, None
    if position is None or isinstance(handle, io.TextIOBase):
        return position, None
    try:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(position)
    except (OSError, ValueError):
        return position, None
    return position, size if isinstance(size, int) and size >= position else None


class _UploadBody:
    """The body of one job creation, always of known length, read from its start at every attempt.

    ``bytes`` stay in memory (gzipped once with ``compress``); a path, or a binary file object whose
    size is known, is streamed from disk (a file object from its current position). Anything else is
    spooled first to an anonymous :func:`tempfile.TemporaryFile` (unlinked at once: nothing is left
    behind whatever happens; :meth:`close` frees its space), one chunk in memory at a time.

    ``replayable``: the caller's data could be read again (bytes, a path, a seekable file), so a
    request HERE surely did not act on may be sent again; an iterator or a one-way stream is sent
    once, as before spooling.
    """

    def __init__(self, data: UploadData, compress: bool) -> None:
        self.replayable = True
        self._payload: bytes | None = None
        self._source: tuple[IO[bytes], int, int] | None = None
        self._opened: list[IO[bytes]] = []  # files this body opened (the path, the spool): closed by close()
        try:
            self._prepare(data, compress)
        except BaseException:
            self.close()
            raise

    def _prepare(self, data: UploadData, compress: bool) -> None:
        if isinstance(data, bytes):
            self._payload = b"".join(gzip_chunks([data])) if compress else data
            return
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            if not path.is_file():
                raise FileNotFoundError(f"input file {path} does not exist")
            if compress:
                self._spool(gzip_chunks(_path_chunks(path)))
                return
            handle = path.open("rb")
            self._opened.append(handle)
            self._source = (handle, 0, os.fstat(handle.fileno()).st_size)
            return
        if hasattr(data, "read"):
            position, size = _extent(data)
            self.replayable = position is not None
            if not compress and position is not None and size is not None:
                self._source = (data, position, size - position)  # type: ignore[assignment]
                return
            chunks = _file_chunks(data)  # type: ignore[arg-type]
        else:
            self.replayable = False
            chunks = iter_lines_as_chunks(data)
        self._spool(gzip_chunks(chunks) if compress else chunks)

    def _spool(self, chunks: Iterable[bytes]) -> None:
        spool = tempfile.TemporaryFile(prefix="here-batch-upload-")  # noqa: SIM115 - closed by close()
        self._opened.append(spool)
        for chunk in chunks:
            spool.write(chunk)
        spool.flush()
        self._source = (spool, 0, spool.tell())

    @property
    def length(self) -> int:
        """Bytes sent (the ``Content-Length``)."""
        return len(self._payload) if self._payload is not None else self._source[2]  # type: ignore[index]

    def payload(self) -> bytes | _SizedChunks:
        """The body for one attempt: ``bytes``, or the file's chunks with their length."""
        if self._payload is not None:
            return self._payload
        assert self._source is not None
        handle, start, length = self._source
        if length == 0:
            return b""  # requests would send an empty iterable chunked
        return _SizedChunks(handle, start, length)

    def close(self) -> None:
        opened, self._opened = self._opened, []
        for handle in opened:
            handle.close()


def _iter_raw(response: requests.Response) -> Iterator[bytes]:
    """The body as sent (still gzip-encoded), so the decoder can tell a complete stream from a cut one."""
    import requests
    import urllib3.exceptions

    failure: TransportError | None = None
    try:
        yield from response.raw.stream(CHUNK_SIZE, decode_content=False)
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        failure = TransportError(f"the download was interrupted ({type(exc).__name__})")
    if failure is not None:
        raise failure


def _decoder_for(headers: Mapping[str, str]) -> DownloadDecoder:
    length = headers.get("Content-Length")
    return DownloadDecoder(
        headers.get("Content-Encoding"), int(length) if length and length.isdigit() else None
    )


def _head_lines(chunks: Iterable[bytes], content_encoding: str | None, max_lines: int) -> list[str]:
    decoder = DownloadDecoder(content_encoding)
    buffer = b""
    for chunk in chunks:
        buffer += decoder.feed(chunk)
        if buffer.count(b"\n") >= max_lines:
            break
    else:
        buffer += decoder.finish()
    return buffer.decode("utf-8", "replace").splitlines()[:max_lines]


class _DestinationWriter:
    """Writes a download to a path atomically (:class:`~airflow_here_batch.files.atomic.AtomicFile`)
    or into a file object."""

    def __init__(self, destination: Destination) -> None:
        self._handle: IO[bytes] | None = None
        self._file: AtomicFile | None = None
        self._start: int | None = None
        if isinstance(destination, (str, os.PathLike)):
            self._file = AtomicFile(destination)
        else:
            self._handle = destination
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._start = destination.tell() if destination.seekable() else None

    def __enter__(self) -> _DestinationWriter:
        if self._file is not None:
            self._file.__enter__()
        self._written = False
        return self

    def rewind(self) -> None:
        """Start over before a retry; a one-way stream that already got bytes cannot."""
        if not self._written:
            return
        if self._file is not None:
            self._file.truncate()
        elif self._start is None:
            raise TransportError("the download failed midway and the destination cannot be rewound")
        else:
            assert self._handle is not None
            self._handle.seek(self._start)
            self._handle.truncate()
        self._written = False

    def write(self, data: bytes) -> None:
        if data:
            if self._file is not None:
                self._file.write(data)
            else:
                assert self._handle is not None
                self._handle.write(data)
            self._written = True

    def commit(self) -> None:
        if self._file is not None:
            self._file.commit()

    def discard(self) -> None:
        if self._file is not None:
            self._file.discard()

    def __exit__(self, *exc_info: object) -> None:
        self.discard()


# -------------------------------------------------------------------------------------------------
# Async hook


class HereBatchAsyncHook(_HereBatchHookBase):
    """The endpoints a trigger needs, over ``aiohttp``, with the sync hook's rules.

    Use it as an async context manager: it opens one ``aiohttp.ClientSession`` on entry and closes it
    on exit; the session borrows its sockets from a pool shared by the hooks of the same event loop.
    The connection is looked up without blocking the event loop.

    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param retry_policy: overrides the connection's retry settings.
    :param timeout: overrides the connection's request timeout, seconds.
    """

    hook_name = "HERE Batch (async)"

    async def get_settings(self) -> ConnectionSettings:
        if self._settings is None:
            aget = getattr(BaseHook, "aget_connection", None)
            if aget is not None:
                conn = await aget(self.here_conn_id)
            else:  # Airflow < 3.1: the lookup is a blocking call, so run it in a thread.
                conn = await asyncio.to_thread(BaseHook.get_connection, self.here_conn_id)
            # A credentials_file is read from disk: keep that off the loop too.
            self._settings = await asyncio.to_thread(
                settings_from_connection, conn, timeout=self._timeout, retry_policy=self._retry_policy
            )
        return self._settings

    async def __aenter__(self) -> HereBatchAsyncHook:
        import aiohttp

        settings = await self.get_settings()
        # HERE sets no cookies: a dummy jar keeps each trigger's session small (a triggerer runs many).
        # The async hook only makes short calls (status, start/stop/delete, the errors report's first
        # lines), so one deadline per request does: a single timer, where a read timeout re-arms one
        # for every chunk received.
        self._session = aiohttp.ClientSession(
            headers=protocol.DEFAULT_HEADERS,
            timeout=aiohttp.ClientTimeout(
                total=CONNECT_TIMEOUT + settings.timeout, sock_connect=CONNECT_TIMEOUT
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            # No body, no Content-Type: aiohttp would label start/stop's empty body octet-stream (the
            # token request, the one call with a body, sets its own).
            skip_auto_headers=("Content-Type",),
            connector=_connectors.acquire(),
            connector_owner=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        session, self._session = self._session, None
        if session is not None:
            connector = session.connector  # the session forgets it on close
            try:
                await session.close()
            finally:
                await _connectors.release(connector)

    def _proxy(self, url: str) -> str | None:
        proxies = (self._settings.proxies if self._settings else None) or {}
        return proxies.get(url.split("://", 1)[0])

    async def _token(self, *, force: bool = False) -> AccessToken | None:
        settings = await self.get_settings()
        creds = settings.oauth
        if creds is None:
            return None
        if not force and (token := _cached_token(creds)):
            return token
        key = (id(asyncio.get_running_loop()), *_token_key(creds))
        lock = _async_token_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one refresh for all the triggers of this loop
            if not force and (token := _cached_token(creds)):
                return token
            signed = token_request(creds)
            request_id = protocol.new_request_id()
            if log.isEnabledFor(logging.DEBUG):
                _sending("POST", urlsplit(signed.url).path, request_id)
            try:
                status, headers, body = await self._exchange(
                    "POST",
                    signed.url,
                    "issue an OAuth access token",
                    headers={**signed.headers, protocol.REQUEST_ID_HEADER: request_id},
                    data=signed.body,
                )
                token = interpret_token_response(status, headers, body, scrub=_scrubber(settings))
            except HereBatchError as error:
                error.request_id = error.request_id or request_id
                raise _not_sent(error) from None
            # Registering a mask may talk to the supervisor: not on the event loop.
            await asyncio.to_thread(_mask_secret, token.value)
            _store_token(creds, token)
            return token

    async def _exchange(
        self,
        method: str,
        url: str,
        operation: str,
        read: Callable[[Any], Awaitable[bytes]] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request; ``read`` may consume only part of a 2xx body (the session decodes gzip)."""
        import aiohttp

        if self._session is None:
            raise RuntimeError("use HereBatchAsyncHook as 'async with HereBatchAsyncHook(...) as hook'")
        failure: TransportError | None = None
        try:
            async with self._session.request(method, url, proxy=self._proxy(url), **kwargs) as response:
                ok = 200 <= response.status < 300
                body = await read(response) if read is not None and ok else await response.read()
                return response.status, response.headers, body
        except aiohttp.ClientConnectorError:
            failure = TransportError(
                f"could not {operation}: connection to {redact_url(url)} failed", connect_failed=True
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            failure = TransportError(f"could not {operation}: {type(exc).__name__} from {redact_url(url)}")
        raise failure  # outside the except block: aiohttp's error (with the URL) is not chained

    async def _call(
        self,
        request: ApiRequest,
        interpret: Callable[..., T],
        read: Callable[[Any], Awaitable[bytes]] | None = None,
    ) -> T:
        """Send with retries (and one token refresh on a 401), then interpret the answer.

        A triggerer makes this call for thousands of jobs, so the path of a call that succeeds at once
        allocates as little as it can: the session carries the default headers (a request adds only
        its own, its credentials and its X-Request-ID), and the retry state is built on the first
        failure.
        """
        settings = self._settings or await self.get_settings()
        loop: _RetryLoop | None = None
        while True:
            try:
                # Inside the try: a token endpoint answering 503/429 or dropping the connection is
                # retried like every call (also during a deferred wait).
                request_id = protocol.new_request_id()
                token = await self._token() if settings.oauth else None
                params, auth_headers = _auth_parts(settings, token)
                if log.isEnabledFor(logging.DEBUG):
                    _sending(request.method, request.path, request_id)
                status, headers, body = await self._exchange(
                    request.method,
                    request.url(settings.base_url),
                    request.operation,
                    read,
                    params={**request.params, **params} if request.params else params,
                    headers={**request.headers, **auth_headers, protocol.REQUEST_ID_HEADER: request_id},
                )
                if not 200 <= status < 300:
                    protocol.raise_for_status(
                        request, status, headers, body, scrub=_scrubber(settings), request_id=request_id
                    )
                return interpret(request, status, headers, body)
            except HereBatchError as error:
                if not getattr(error, "request_id", None):
                    error.request_id = request_id
                if loop is None:
                    loop = _RetryLoop(settings, deadline=self.deadline)
                delay = loop.after(request, error)
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def get_job(self, job_id: str) -> BatchJob:
        return await self._call(protocol.get_job_request(job_id), protocol.interpret_job)

    async def start_job(self, job_id: str) -> BatchJob:
        return await self._call(protocol.start_job_request(job_id), protocol.interpret_job)

    async def stop_job(self, job_id: str) -> BatchJob:
        return await self._call(protocol.stop_job_request(job_id), protocol.interpret_job)

    async def delete_job(self, job_id: str) -> BatchJob:
        return await self._call(protocol.delete_job_request(job_id), protocol.interpret_job)

    async def download_errors_head(self, job_id: str, max_lines: int = 20) -> list[str]:
        """The first lines of the errors report, as :meth:`HereBatchHook.download_errors_head`: ``[]``
        when there is none or the job is unknown or deleted.

        :raises ResultsNotReadyError: the job has not ended yet.
        """

        async def read_head(response: Any) -> bytes:
            lines = []
            while len(lines) < max_lines and (line := await response.content.readline()):
                lines.append(line)
            return b"".join(lines)

        settings = await self.get_settings()

        def interpret(request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes) -> list[str]:
            if status == 204:
                return []
            scrub = _scrubber(settings)  # HERE's report quotes the input: never a secret further
            return [scrub(line) for line in body.decode("utf-8", "replace").splitlines()[:max_lines]]

        try:
            return await self._call(protocol.errors_request(job_id), interpret, read_head)
        except (JobNotFoundError, ResultsNotReadyError) as error:
            status = None
            if protocol.errors_head_needs_status(error):
                try:
                    status = (await self.get_job(job_id)).status
                except JobNotFoundError:
                    status = None
            if protocol.errors_report_gone(error, status):
                return []
            raise


__all__ = [
    "ConnectionSettings",
    "HereBatchAsyncHook",
    "HereBatchHook",
    "base_url_from_connection",
    "settings_from_connection",
]
