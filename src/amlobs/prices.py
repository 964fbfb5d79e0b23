"""The Azure Retail Prices API: the hourly list prices of a VM size in a region, cached for hours.

API (https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices):
``GET https://prices.azure.com/api/retail/prices?currencyCode='EUR'&$filter=...`` answers, without
authentication, ``{"BillingCurrency", "CustomerEntityId", "CustomerEntityType", "Items": [...],
"NextPageLink": <url or null>, "Count"}``; at most 1,000 items a page, the rest behind ``NextPageLink``
(whose documented form names the port: ``https://prices.azure.com:443/api/retail/prices?...&$skip=1000``).
Filters are OData ``eq``/``and`` on ``serviceName``, ``armRegionName``, ``armSkuName``, ``priceType``, ….
"In previous API versions, the filter value wasn't case sensitive. However, in the 2023-01-01-preview
version and later, the value is case sensitive": this client asks the 2021-10-01-preview version (the
first with ``meterRegion='primary'``, which leaves out non-primary meters) and spells the VM size the way
the API does (:func:`amlobs.cost.canonical_sku`), so either behaviour finds the rows.

One query per (region, VM size, currency) returns its dedicated, Spot and Low Priority meters for Linux
and Windows together; the priority and OS are chosen from the cached rows (:mod:`amlobs.cost`).

Never a token: the pipeline has no credential policy at all, so nothing could add one. Never a long wait:
each request gets what is left of the record's time bound (:class:`amlobs.lookup_cache.Budget`) and there
is no retry inside the invocation. A failure is remembered for a cooldown (:func:`cooldown_seconds`: five
seconds after a lone failure, doubling with each failure in a row up to :data:`FAILURE_COOLDOWN_SECONDS`):
the records of that time go out without estimate at once (and say why), and the first record after it tries
again, so a passing fault costs seconds of estimates and an outage one attempt a minute per instance, never
one per event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from . import USER_AGENT
from .cost import PriceRow, canonical_sku, is_plain_name, price_rows
from .lookup_cache import Budget, LookupCache, Unavailable
from .retry_after import retry_after_seconds

if TYPE_CHECKING:
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport

logger = logging.getLogger("amlobs.cost")

PRICES_API_VERSION = "2021-10-01-preview"
# Retail prices change rarely (effectiveStartDate has a day's granularity) and Spot rates move over days,
# not minutes: six hours keeps an estimate within a quarter of a day of the list, and costs at most four
# queries a day per (region, VM size) per instance, however many runs finish.
PRICE_TTL_SECONDS = 6 * 3600.0
# After the API fails, the next run tries again soon (a lone 5xx costs a few seconds of estimates, not a
# minute); each further failure in a row doubles the wait up to a minute, so an outage costs about one
# request a minute per instance, never one per event.
FIRST_COOLDOWN_SECONDS = 5.0
FAILURE_COOLDOWN_SECONDS = 60.0
# A Retry-After longer than this is capped: the next run may try again sooner than the API asked.
MAX_COOLDOWN_SECONDS = 900.0
# One VM size in one region has a handful of rows; a longer chain of pages is a fault, not data.
MAX_PAGES = 10


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def filter_expression(region: str, sku: str) -> str:
    return (
        f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' "
        f"and armSkuName eq '{sku}' and priceType eq 'Consumption'"
    )


def query_url(endpoint: str, region: str, sku: str, currency: str) -> str:
    query = urlencode(
        {
            "api-version": PRICES_API_VERSION,
            "currencyCode": f"'{currency}'",
            "meterRegion": "'primary'",
            "$filter": filter_expression(region, sku),
        },
        quote_via=quote,
        safe="'",
    )
    return f"{endpoint}?{query}"


class PricesUnavailable(Exception):
    """The API could not answer usefully; ``retry_after`` is how long it asked to be left alone."""

    def __init__(self, reason: str, retry_after: float | None = None, *, outage: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.outage = outage  # the whole API (every key waits), rather than this one query


def cooldown_seconds(consecutive_outages: int, retry_after: float | None) -> float:
    """How long every lookup waits after the ``consecutive_outages``-th failure in a row."""
    doublings = min(max(consecutive_outages - 1, 0), 16)
    escalated = min(FIRST_COOLDOWN_SECONDS * 2.0**doublings, FAILURE_COOLDOWN_SECONDS)
    if retry_after is None:
        return escalated
    return min(max(retry_after, escalated), MAX_COOLDOWN_SECONDS)


class RetailPrices:
    """Rows of the Retail Prices API per (region, VM size), cached for :data:`PRICE_TTL_SECONDS`."""

    def __init__(
        self,
        endpoint: str,
        currency: str,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.endpoint = endpoint
        self.currency = currency
        self._clock = clock
        self._wall_clock = wall_clock
        self._transport = transport
        self._pipeline: Pipeline[HttpRequest, HttpResponse] | None = None
        self._policies: list[Any] = []
        self._rows: LookupCache[tuple[str, str], list[PriceRow] | Unavailable] = LookupCache(clock)
        self._lock = threading.Lock()
        self._outage: tuple[Unavailable, float] | None = None  # why, and until when every lookup waits
        self._consecutive_outages = 0
        self.requests = 0

    # -- the pipeline --------------------------------------------------------------------------

    def _started(self) -> Pipeline[HttpRequest, HttpResponse]:
        if self._pipeline is None:
            from azure.core.pipeline import Pipeline
            from azure.core.pipeline.policies import HeadersPolicy, UserAgentPolicy

            if self._transport is None:
                from azure.core.pipeline.transport import RequestsTransport

                self._transport = RequestsTransport()
            # Deliberately no BearerTokenCredentialPolicy (and no retry policy: one attempt per page).
            self._policies = [
                HeadersPolicy({"Accept": "application/json"}),
                UserAgentPolicy(base_user_agent=USER_AGENT),
            ]
            self._pipeline = Pipeline(transport=self._transport, policies=self._policies)
        return self._pipeline

    @property
    def policies(self) -> list[Any]:
        """The pipeline's policies (a test asserts that none of them can add a token)."""
        self._started()
        return list(self._policies)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- lookups -------------------------------------------------------------------------------

    def rows(self, region: str, sku: str, budget: Budget) -> list[PriceRow] | Unavailable:
        """Every consumption row of ``sku`` in ``region``, or why there are none to be had now."""
        region = region.lower().replace(" ", "")
        if not (is_plain_name(region) and is_plain_name(sku)):
            return Unavailable(f"VM size {sku!r} or region {region!r} is not a name the prices API knows")
        key = (region, sku.lower())
        cached = self._rows.fresh(key)
        if cached is not None:
            return cached
        outage = self._outage
        if outage is not None and outage[1] > self._clock():
            return outage[0]
        return self._rows.get(
            key,
            budget,
            lambda: self._fetch(region, sku, budget),
            busy=Unavailable("a price lookup of this VM size by another invocation is still running"),
        )

    def _fetch(self, region: str, sku: str, budget: Budget) -> tuple[list[PriceRow] | Unavailable, float]:
        """The rows and how long to keep them, or why there are none and how long to leave it be."""
        url: str | None = query_url(self.endpoint, region, canonical_sku(sku), self.currency)
        rows: list[PriceRow] = []
        try:
            for _page in range(MAX_PAGES):
                if url is None:
                    break
                page = self._get(url, budget)
                rows.extend(price_rows(page["Items"]))
                url = self._next_page(page.get("NextPageLink"))
            else:
                if url is not None:
                    raise PricesUnavailable(f"more than {MAX_PAGES} pages for one VM size", outage=False)
        except PricesUnavailable as failure:
            return self._failed(failure)
        with self._lock:
            self._consecutive_outages = 0
        return rows, PRICE_TTL_SECONDS

    def _failed(self, failure: PricesUnavailable) -> tuple[Unavailable, float]:
        if failure.outage:
            with self._lock:
                self._consecutive_outages += 1
                cooldown = cooldown_seconds(self._consecutive_outages, failure.retry_after)
        else:  # this query alone (refused, or pages leading astray): asking again soon would not help
            cooldown = FAILURE_COOLDOWN_SECONDS
        retry_at = self._wall_clock() + timedelta(seconds=cooldown)
        reason = (
            f"prices API unavailable ({failure.reason}); the next run tries again after "
            f"{retry_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        logger.warning("retail prices: %s", reason)
        unavailable = Unavailable(reason)
        if failure.outage:  # every VM size waits, not only this one
            self._outage = (unavailable, self._clock() + cooldown)
            return unavailable, 0.0
        return unavailable, cooldown

    def _next_page(self, link: Any) -> str | None:
        if link is None or link == "":
            return None
        if not isinstance(link, str) or _origin(link) != _origin(self.endpoint):
            # Anonymous or not, this client only talks to the endpoint it was given.
            raise PricesUnavailable(f"NextPageLink points away from {self.endpoint}", outage=False)
        return link

    def _get(self, url: str, budget: Budget) -> dict[str, Any]:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest as RestRequest

        remaining = budget.remaining()
        if remaining <= 0:
            raise PricesUnavailable(f"no answer within the {budget.seconds:g} s bound of a record")
        with self._lock:
            self.requests += 1
        try:
            result = self._started().run(
                RestRequest("GET", url),  # type: ignore[arg-type]
                connection_timeout=remaining,
                read_timeout=remaining,
            )
            response = result.http_response
            body = response.body()
        except AzureError as exc:
            raise PricesUnavailable(f"{type(exc).__name__} within the {budget.seconds:g} s bound") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise PricesUnavailable(f"HTTP {status}", retry_after_seconds(response.headers))
        if status != 200:
            raise PricesUnavailable(f"HTTP {status}", outage=False)
        try:
            page = json.loads(body)
        except ValueError:
            raise PricesUnavailable("an answer that is not JSON") from None
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise PricesUnavailable("an answer without an Items list")
        return page
