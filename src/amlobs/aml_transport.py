"""One azure-core pipeline for every AML call of the process: retries, the bearer token, counting.

Error rules (DESIGN.md "Enrichment"): 401/403/408/429/5xx, timeouts and connection errors are
retried inside the call (``settings.http_max_attempts`` attempts in total, exponential backoff with
jitter, ``x-ms-retry-after-ms``/``Retry-After`` honoured, a Retry-After beyond
``settings.max_retry_after_seconds`` fails at once) and then raise
:class:`~amlobs.errors.EnrichmentUnavailable` (:class:`AccessRefused` when the last answer was 401/403), so
Event Grid redelivers. 404 raises :class:`~amlobs.errors.RunNotFound` (record what the event carries; the
caller says whether the run, the workspace or a compute is missing). Any other 4xx raises
:class:`RunHistoryRejected`, a ``RunNotFound``: a 400 will not improve on redelivery, and the
event must still be recorded. Unparseable bodies raise ``EnrichmentUnavailable``.

Who gets the bearer token is decided by :class:`amlobs.trust.TokenGate`, the last policy before the
transport, on every send (first try, retry, challenge), by the ``trusted`` decision the owner passes
in for the request's origin and workspace (see :mod:`amlobs.aml_discovery`); requests marked
anonymous go out without one, and no redirect is followed (the requests transport is told not to and
no redirect policy is in the pipeline). A call may ask for fewer attempts and a shorter timeout than
the process settings (the cost estimate's Resource Manager reads make one attempt within their own
time bound); it still goes through the same pipeline, so the same gate decides about its token.
Exception messages carry the call, the status and the attempt count, never a token.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    HeadersPolicy,
    HTTPPolicy,
    RequestIdPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)

from . import USER_AGENT
from .errors import EnrichmentUnavailable, RunNotFound
from .retry_after import retry_after_seconds
from .settings import Settings
from .trust import ANONYMOUS, TRUST_SCOPE, TokenGate, TrustDecision, UntrustedHost

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport

logger = logging.getLogger("amlobs.runhistory")

RETRYABLE_STATUSES = frozenset({401, 403, 408, 429})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0

# Keys this module keeps in an azure-core PipelineContext.
_CTX_ATTEMPTS = "amlobs_attempts"
_CTX_RETRY_AFTER_REFUSED = "amlobs_retry_after_refused"
# Request option (consumed by the retry policy): fewer attempts than the process default for one call.
_OPT_ATTEMPTS = "amlobs_max_attempts"

NotFoundMeaning = Literal["run", "workspace", "compute", "unavailable"]


class RunHistoryRejected(RunNotFound):
    """The API refused the request with a 4xx other than 404 (for example 400): retrying is futile.

    A ``RunNotFound`` so the event is recorded from what it carries, with ``enrichment_error`` set.
    """

    answered_404 = False


class AccessRefused(EnrichmentUnavailable):
    """The last answer was 401 or 403. Still an ``EnrichmentUnavailable`` (run history calls fail the
    invocation on it, since a new role assignment takes minutes to propagate); a caller for whom access
    is optional (the compute lookup of the cost estimate) can tell it apart from an outage."""


class _GaveUp(Exception):
    """A transport error survived every attempt (timeouts, refused or dropped connections)."""

    def __init__(self, attempts: int, error: Exception) -> None:
        super().__init__(str(error))
        self.attempts = attempts
        self.error = error


def _is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def _is_transport_failure(exc: Exception) -> bool:
    """No usable answer arrived: refused, timed out, dropped, or broken while the body was read.

    The requests transport reports a body cut short as ``IncompleteReadError`` and broken chunking as
    a bare ``HttpResponseError`` without a response; neither is a ``ServiceResponseError``.
    """
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return True
    return type(exc) is HttpResponseError and exc.response is None


class _BoundedRetryPolicy(HTTPPolicy[Any, Any]):
    """Retries inside one invocation, then hands the last answer back to the client to classify.

    azure-core's RetryPolicy neither retries 401/403 (role assignments take minutes to propagate
    after deployment) nor takes an injectable sleep, and its Retry-After handling has no ceiling.
    """

    def __init__(
        self,
        max_attempts: int,
        max_retry_after: float,
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
    ) -> None:
        super().__init__()
        self._max_attempts = max(1, max_attempts)
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._jitter = jitter

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))
        # "Equal jitter": never zero, so a herd of instances does not retry in lockstep.
        return ceiling * (0.5 + self._jitter() / 2)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        # A call may ask for fewer attempts than the process default (the cost lookups make one).
        max_attempts = max(1, int(request.context.options.pop(_OPT_ATTEMPTS, None) or self._max_attempts))
        attempt = 0
        while True:
            attempt += 1
            request.context[_CTX_ATTEMPTS] = attempt
            try:
                response = self.next.send(request)
            except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
                if not _is_transport_failure(exc):
                    raise
                if attempt >= max_attempts:
                    raise _GaveUp(attempt, exc) from exc
                delay = self._backoff(attempt)
                logger.info("%s (attempt %d): retrying in %.2fs", type(exc).__name__, attempt, delay)
            else:
                status = response.http_response.status_code
                if not _is_retryable(status) or attempt >= max_attempts:
                    return response
                retry_after = retry_after_seconds(response.http_response.headers)
                if retry_after is not None and retry_after > self._max_retry_after:
                    request.context[_CTX_RETRY_AFTER_REFUSED] = retry_after
                    return response
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                logger.info("HTTP %d (attempt %d): retrying in %.2fs", status, attempt, delay)
            self._sleep(delay)


class _CountingPolicy(SansIOHTTPPolicy[Any, Any]):
    """Counts the HTTP requests that reach the transport (every attempt), for the benchmark."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def on_request(self, request: PipelineRequest[Any]) -> None:
        with self._lock:
            self.count += 1


def _error_code(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and len(code) <= 100 else None


_NOT_FOUND_MEANINGS = {
    "run": "the run is deleted or not visible to this identity",
    "workspace": "the workspace is deleted or not visible to this identity",
    "compute": "the compute target is deleted or not visible to this identity",
}


def _refusal(call: str, detail: str, status: int, not_found: NotFoundMeaning, tried: int) -> Exception:
    """What a final answer other than 200 means for the caller (the module docstring's rules)."""
    if status == 404 and not_found in _NOT_FOUND_MEANINGS:
        return RunNotFound(f"{call}: {detail}: {_NOT_FOUND_MEANINGS[not_found]}")
    if 400 <= status < 500 and not _is_retryable(status) and not_found != "unavailable":
        return RunHistoryRejected(f"{call}: {detail}: the request was refused and would be again")
    if status in (401, 403):
        return AccessRefused(f"{call} failed: {detail} after {tried} attempt(s)")
    return EnrichmentUnavailable(f"{call} failed: {detail} after {tried} attempt(s)")


@dataclass(frozen=True)
class HttpAnswer:
    """A final answer handed back unclassified (:meth:`AmlHttp.call_answer`): the caller's own rules apply."""

    status: int
    body: bytes
    retry_after: float | None
    attempts: int

    def json(self) -> Any:
        return json.loads(self.body)


class AmlHttp:
    """JSON over the shared pipeline, with the error rules above applied to every answer."""

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential,
        *,
        scope: str,
        trusted: TrustDecision,
        transport: HttpTransport[Any, Any] | None,
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
    ) -> None:
        from azure.core.pipeline import Pipeline

        if transport is None:
            from azure.core.pipeline.transport import RequestsTransport

            transport = RequestsTransport()
        self._settings = settings
        self._transport = transport
        self._timeout = settings.http_timeout_seconds
        self._counter = _CountingPolicy()
        policies: list[Any] = [
            RequestIdPolicy(),
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy(base_user_agent=USER_AGENT),
            _BoundedRetryPolicy(settings.http_max_attempts, settings.max_retry_after_seconds, sleep, jitter),
            TokenGate(credential, scope, trusted),
            self._counter,
        ]
        self._pipeline: Pipeline[HttpRequest, HttpResponse] = Pipeline(transport=transport, policies=policies)

    def close(self) -> None:
        self._transport.close()

    @property
    def request_count(self) -> int:
        return self._counter.count

    def call_answer(self, call: str, url: str, *, attempts: int, timeout: float) -> HttpAnswer:
        """GET ``url`` through the same pipeline and gate, and hand back the final answer as it is.

        For callers with their own rules about 403/429/5xx (the resource-use pass: a reason on the event,
        Retry-After within its own budget). No answer at all (timeouts, refused connections, no token,
        an untrusted host) raises :class:`~amlobs.errors.EnrichmentUnavailable`.
        """
        from azure.core.rest import HttpRequest as RestRequest

        options: dict[str, Any] = {"connection_timeout": timeout, "read_timeout": timeout}
        options[_OPT_ATTEMPTS] = attempts
        try:
            result = self._pipeline.run(RestRequest("GET", url), **options)  # type: ignore[arg-type]
        except _GaveUp as gave_up:
            raise EnrichmentUnavailable(
                f"{call} failed after {gave_up.attempts} attempt(s): {type(gave_up.error).__name__}"
            ) from None
        except UntrustedHost as untrusted:
            raise EnrichmentUnavailable(f"{call}: refusing to send a token to {untrusted}") from None
        except ClientAuthenticationError as exc:
            raise EnrichmentUnavailable(f"{call}: could not get an access token: {exc.message}") from None
        response = result.http_response
        return HttpAnswer(
            response.status_code,
            response.body(),
            retry_after_seconds(response.headers),
            int(result.context.get(_CTX_ATTEMPTS, 1)),
        )

    def call_json(
        self,
        call: str,
        method: str,
        url: str,
        json_body: Mapping[str, Any] | None = None,
        *,
        anonymous: bool = False,
        not_found: NotFoundMeaning = "run",
        attempts: int | None = None,
        timeout: float | None = None,
        workspace: str | None = None,
    ) -> dict[str, Any]:
        """``attempts`` and ``timeout`` override the process settings for this one call; ``workspace``
        (its cache key) names whose trusted origins the token may go to."""
        from azure.core.rest import HttpRequest as RestRequest

        request = RestRequest(method, url, json=dict(json_body) if json_body is not None else None)
        per_request = self._timeout if timeout is None else timeout
        options: dict[str, Any] = {"connection_timeout": per_request, "read_timeout": per_request}
        if anonymous:
            options[ANONYMOUS] = True
        if workspace is not None:
            options[TRUST_SCOPE] = workspace
        if attempts is not None:
            options[_OPT_ATTEMPTS] = attempts
        try:
            result = self._pipeline.run(request, **options)  # type: ignore[arg-type]
        except _GaveUp as gave_up:
            raise EnrichmentUnavailable(
                f"{call} failed after {gave_up.attempts} attempt(s): {type(gave_up.error).__name__}"
            ) from None
        except UntrustedHost as untrusted:
            raise EnrichmentUnavailable(f"{call}: refusing to send a token to {untrusted}") from None
        except ClientAuthenticationError as exc:
            raise EnrichmentUnavailable(f"{call}: could not get an access token: {exc.message}") from None
        response = result.http_response
        tried = int(result.context.get(_CTX_ATTEMPTS, 1))
        status = response.status_code
        body = response.body()
        if status == 200:
            try:
                parsed = json.loads(body)
            except ValueError:
                raise EnrichmentUnavailable(f"{call}: HTTP 200 with a body that is not JSON") from None
            if not isinstance(parsed, dict):
                raise EnrichmentUnavailable(
                    f"{call}: HTTP 200 with a JSON {type(parsed).__name__}, not an object"
                )
            return parsed
        code = _error_code(body)
        detail = f"HTTP {status}{f' ({code})' if code else ''}"
        refused = result.context.get(_CTX_RETRY_AFTER_REFUSED)
        if refused is not None:
            raise EnrichmentUnavailable(
                f"{call} failed: {detail}; the service asked to retry after {refused:.0f}s, more than "
                f"the {self._settings.max_retry_after_seconds:.0f}s this invocation may wait "
                f"(attempt {tried})"
            )
        raise _refusal(call, detail, status, not_found, tried)
