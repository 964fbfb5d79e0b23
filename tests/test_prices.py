"""The Retail Prices client against the loopback fake of the documented API, and the compute directory's
cache: what is asked, how often, and what a failure costs the next records."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from azure.core.pipeline.policies import BearerTokenCredentialPolicy

from amlobs import prices as prices_module
from amlobs.aml_transport import AccessRefused
from amlobs.compute_facts import (
    COMPUTE_TTL_SECONDS,
    FAILED_TTL_SECONDS,
    REFUSED_TTL_SECONDS,
    ComputeDirectory,
    ComputeResource,
)
from amlobs.cost import PriceRow
from amlobs.errors import EnrichmentUnavailable, RunNotFound
from amlobs.events import WorkspaceRef
from amlobs.lookup_cache import Budget, Unavailable
from amlobs.prices import PRICE_TTL_SECONDS, RetailPrices
from amlobs.settings import Settings, SettingsError
from tests.fakes.aml_api import FakeAmlApi, Fault, start_aml_api
from tests.fakes.aml_data import load_fixture


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[FakeAmlApi]:
    with start_aml_api() as started:
        yield started


def client(api: FakeAmlApi, clock: Clock | None = None, currency: str = "USD") -> RetailPrices:
    return RetailPrices(api.prices_endpoint, currency, clock=clock or Clock())


def budget(seconds: float = 5.0) -> Budget:
    return Budget(seconds)


def price_requests(api: FakeAmlApi) -> list[Any]:
    return api.requests_to("/api/retail/prices", "GET")


def test_one_query_per_size_and_region_follows_every_page(api: FakeAmlApi) -> None:
    prices = client(api)

    rows = prices.rows("eastus", "STANDARD_DS3_V2", budget())

    assert isinstance(rows, list)
    # Linux and Windows × dedicated, Spot and Low Priority, plus the older Linux meter: 7 consumption rows,
    # three a page in the fake.
    assert len(rows) == 7 and {r.arm_sku for r in rows} == {"Standard_DS3_v2"}
    requests = price_requests(api)
    assert len(requests) == 3
    first = requests[0]
    assert first.query == {
        "api-version": "2021-10-01-preview",
        "currencyCode": "'USD'",
        "meterRegion": "'primary'",
        "$filter": "serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' "
        "and armSkuName eq 'Standard_DS3_v2' and priceType eq 'Consumption'",
    }
    assert [r.query.get("$skip") for r in requests] == [None, "3", "6"]


def test_the_upper_case_trap_is_real_in_the_fake_and_avoided_by_the_client(api: FakeAmlApi) -> None:
    """AML reports STANDARD_DS3_V2; from 2023-01-01-preview on the API compares filter values with case."""

    def items(version: str, sku: str) -> int:
        query = urlencode(
            {"api-version": version, "$filter": f"armRegionName eq 'eastus' and armSkuName eq '{sku}'"}
        )
        with urllib.request.urlopen(f"{api.prices_endpoint}?{query}", timeout=5) as answer:
            return int(json.loads(answer.read())["Count"])

    assert items("2023-01-01-preview", "STANDARD_DS3_V2") == 0
    assert items("2023-01-01-preview", "Standard_DS3_v2") > 0
    assert items("2021-10-01-preview", "STANDARD_DS3_V2") > 0
    rows = client(api).rows("eastus", "STANDARD_DS3_V2", budget())
    assert isinstance(rows, list) and rows


def test_rows_are_cached_for_hours_per_size_and_region(api: FakeAmlApi) -> None:
    clock = Clock()
    prices = client(api, clock)
    prices.rows("eastus", "Standard_DS2_v2", budget())
    sent = len(price_requests(api))

    clock.now += PRICE_TTL_SECONDS - 1
    assert prices.rows("eastus", "STANDARD_DS2_V2", budget()) == prices.rows(
        "East US", "standard_ds2_v2", budget()
    )
    assert len(price_requests(api)) == sent

    prices.rows("westeurope", "Standard_DS3_v2", budget())  # another key: asked
    assert len(price_requests(api)) > sent
    sent = len(price_requests(api))
    clock.now += 2
    prices.rows("eastus", "Standard_DS2_v2", budget())  # expired: asked again
    assert len(price_requests(api)) > sent


def test_an_empty_answer_is_a_list_of_no_rows_and_is_cached(api: FakeAmlApi) -> None:
    prices = client(api)
    assert prices.rows("eastus", "Standard_ND96amsr_A100_v4", budget()) == []
    assert prices.rows("eastus", "Standard_ND96amsr_A100_v4", budget()) == []
    assert len(price_requests(api)) == 1


def test_prices_in_another_currency(api: FakeAmlApi) -> None:
    rows = client(api, currency="EUR").rows("eastus", "Standard_DS2_v2", budget())
    assert isinstance(rows, list)
    assert {r.currency for r in rows} == {"EUR"}
    linux = next(r for r in rows if r.sku_name == "DS2 v2" and not r.windows)
    assert linux.price == (Decimal("0.146") * Decimal("0.92")).quantize(Decimal("0.0001"))


def test_no_token_can_ever_reach_the_prices_api(api: FakeAmlApi) -> None:
    prices = client(api)
    assert not any(isinstance(p, BearerTokenCredentialPolicy) for p in prices.policies)
    prices.rows("eastus", "Standard_DS2_v2", budget())
    for request in price_requests(api):
        assert "authorization" not in request.headers
    assert api.token_requests == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(close=True), "ServiceResponseError"),
        (Fault(status=503), "HTTP 503"),
        (Fault(status=200, body="<html>maintenance</html>"), "an answer that is not JSON"),
        (Fault(status=200, body={"Items": "none"}), "an answer without an Items list"),
    ],
)
def test_an_outage_is_remembered_for_the_cooldown_for_every_size_then_tried_again(
    api: FakeAmlApi, fault: Fault, reason: str
) -> None:
    clock = Clock()
    prices = client(api, clock)
    api.fail("GET", "/api/retail/prices", fault)

    failed = prices.rows("eastus", "Standard_DS2_v2", budget())

    assert isinstance(failed, Unavailable) and reason in failed.reason
    assert "the next run tries again after " in failed.reason
    assert prices.rows("eastus", "Standard_DS3_v2", budget()) == failed  # the whole API waits
    assert len(price_requests(api)) == 1
    clock.now += prices_module.FIRST_COOLDOWN_SECONDS + 0.1  # a lone failure costs seconds, not a minute
    assert isinstance(prices.rows("eastus", "Standard_DS2_v2", budget()), list)


def test_an_outage_doubles_the_wait_up_to_a_minute_and_a_success_resets_it(api: FakeAmlApi) -> None:
    clock = Clock()
    prices = client(api, clock)
    api.fail("GET", "/api/retail/prices", *[Fault(status=503)] * 7)  # down for seven requests in a row
    asked_at = []
    for second in range(300):  # a run finishes every second for five minutes
        clock.now = float(second)
        before = len(price_requests(api))
        prices.rows("eastus", "Standard_DS2_v2", budget())
        if len(price_requests(api)) > before:
            asked_at.append(second)
    # 5, 10, 20, 40 s, then a minute between attempts; the eighth attempt finds the API back
    assert asked_at == [0, 5, 15, 35, 75, 135, 195, 255]
    assert isinstance(prices.rows("eastus", "Standard_DS2_v2", budget()), list)
    api.fail("GET", "/api/retail/prices", Fault(status=503))
    assert isinstance(prices.rows("eastus", "Standard_DS3_v2", budget()), Unavailable)
    clock.now += prices_module.FIRST_COOLDOWN_SECONDS + 0.1  # the success reset the escalation
    assert isinstance(prices.rows("eastus", "Standard_DS3_v2", budget()), list)


def test_retry_after_lengthens_the_cooldown_up_to_a_cap(api: FakeAmlApi) -> None:
    clock = Clock()
    prices = client(api, clock)
    api.fail("GET", "/api/retail/prices", Fault(status=429, headers={"Retry-After": "100000"}))
    prices.rows("eastus", "Standard_DS2_v2", budget())
    clock.now += prices_module.MAX_COOLDOWN_SECONDS - 1
    assert isinstance(prices.rows("eastus", "Standard_DS2_v2", budget()), Unavailable)
    clock.now += 2
    assert isinstance(prices.rows("eastus", "Standard_DS2_v2", budget()), list)
    assert len([r for r in price_requests(api) if "$skip" not in r.query]) == 2


def test_a_retry_after_in_milliseconds_is_read_like_every_other_client_reads_it(api: FakeAmlApi) -> None:
    # amlobs.retry_after: the same header reading as run history and ingestion.
    clock = Clock()
    prices = client(api, clock)
    api.fail("GET", "/api/retail/prices", Fault(status=503, headers={"x-ms-retry-after-ms": "120000"}))
    prices.rows("eastus", "Standard_DS2_v2", budget())
    clock.now += 119
    assert isinstance(prices.rows("eastus", "Standard_DS2_v2", budget()), Unavailable)
    clock.now += 2
    assert isinstance(prices.rows("eastus", "Standard_DS2_v2", budget()), list)


def test_a_refused_query_waits_alone_while_other_sizes_are_still_asked(api: FakeAmlApi) -> None:
    prices = client(api)
    api.fail("GET", "/api/retail/prices", Fault(status=400, body={"Error": {"Code": "InvalidFilter"}}))
    assert isinstance(prices.rows("eastus", "Standard_DS2_v2", budget()), Unavailable)
    assert isinstance(prices.rows("eastus", "Standard_DS3_v2", budget()), list)


def test_a_next_page_link_to_another_host_is_not_followed(api: FakeAmlApi) -> None:
    prices = client(api)
    page = {"Items": [], "NextPageLink": "https://prices.example.com/api/retail/prices?$skip=3", "Count": 0}
    api.fail("GET", "/api/retail/prices", Fault(status=200, body=page))
    failed = prices.rows("eastus", "Standard_DS2_v2", budget())
    assert isinstance(failed, Unavailable) and "NextPageLink points away from" in failed.reason
    assert len(price_requests(api)) == 1  # and the socket guard saw no other host


def test_a_runaway_chain_of_pages_stops(api: FakeAmlApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prices_module, "MAX_PAGES", 2)
    failed = client(api).rows("eastus", "Standard_DS3_v2", budget())  # three pages in the fake
    assert isinstance(failed, Unavailable) and "more than 2 pages" in failed.reason
    assert len(price_requests(api)) == 2


def test_a_spent_bound_sends_nothing_and_a_slow_answer_is_cut_at_the_bound(api: FakeAmlApi) -> None:
    prices = client(api)
    spent = prices.rows("eastus", "Standard_DS2_v2", Budget(0.0))
    assert isinstance(spent, Unavailable) and "bound" in spent.reason
    assert price_requests(api) == []
    api.fail("GET", "/api/retail/prices", Fault(delay=3.0, passthrough=True))
    import time

    started = time.monotonic()
    slow = client(api).rows("eastus", "Standard_DS2_v2", Budget(0.5))
    assert isinstance(slow, Unavailable) and time.monotonic() - started < 2.0


def test_names_that_are_not_vm_sizes_or_regions_are_never_sent(api: FakeAmlApi) -> None:
    failed = client(api).rows("eastus", "x' or armSkuName eq 'y", budget())
    assert isinstance(failed, Unavailable)
    assert price_requests(api) == []


# --------------------------------------------------------------------------------------------------
# The compute directory


WS = WorkspaceRef("sub", "rg", "ws")


class Source:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, float]] = []

    def get_compute(self, ws: WorkspaceRef, name: str, *, timeout: float) -> dict[str, Any]:
        self.calls.append((name, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        result: dict[str, Any] = answer
        return result

    def get_workspace(self, ws: WorkspaceRef, *, timeout: float) -> dict[str, Any]:
        self.calls.append(("<workspace>", timeout))
        result: dict[str, Any] = self.answers.pop(0)
        return result


CLUSTER = load_fixture("compute_amlcompute.json")


def test_a_compute_is_read_once_per_ttl_with_the_time_left_of_the_bound() -> None:
    clock = Clock()
    source = Source(CLUSTER, CLUSTER)
    directory = ComputeDirectory(source, clock=clock)

    first = directory.compute(WS, "cpu-cluster", Budget(3.0))
    assert isinstance(first, ComputeResource) and first.vm_size == "STANDARD_DS2_V2"
    assert directory.compute(WS, "CPU-Cluster", Budget(3.0)) == first
    assert len(source.calls) == 1 and 0 < source.calls[0][1] <= 3.0
    clock.now += COMPUTE_TTL_SECONDS + 1
    directory.compute(WS, "cpu-cluster", Budget(3.0))
    assert len(source.calls) == 2


@pytest.mark.parametrize(
    ("error", "ttl", "reason"),
    [
        (
            AccessRefused("compute x failed: HTTP 403 (AuthorizationFailed) after 1 attempt(s)"),
            REFUSED_TTL_SECONDS,
            "computes/read",
        ),
        (RunNotFound("compute x: HTTP 404 (ResourceNotFound): gone"), REFUSED_TTL_SECONDS, "was not found"),
        (
            EnrichmentUnavailable("compute x failed: HTTP 503 after 1 attempt(s)"),
            FAILED_TTL_SECONDS,
            "HTTP 503",
        ),
        (ValueError("surprise"), FAILED_TTL_SECONDS, "ValueError"),
    ],
)
def test_a_failed_read_is_remembered_briefly_and_then_tried_again(
    error: Exception, ttl: float, reason: str
) -> None:
    clock = Clock()
    source = Source(error, CLUSTER)
    directory = ComputeDirectory(source, clock=clock)

    failed = directory.compute(WS, "x", Budget(3.0))
    assert isinstance(failed, Unavailable) and reason in failed.reason
    clock.now += ttl - 1
    assert directory.compute(WS, "x", Budget(3.0)) == failed
    clock.now += 2
    assert isinstance(directory.compute(WS, "x", Budget(3.0)), ComputeResource)
    assert len(source.calls) == 2


def test_the_workspace_region_is_read_once() -> None:
    source = Source(load_fixture("workspace_get.json"))
    directory = ComputeDirectory(source, clock=Clock())
    assert directory.workspace_region(WS, Budget(3.0)) == "eastus"
    assert directory.workspace_region(WS, Budget(3.0)) == "eastus"
    assert len(source.calls) == 1


def test_no_read_once_the_bound_is_spent() -> None:
    source = Source(CLUSTER)
    assert isinstance(ComputeDirectory(source, clock=Clock()).compute(WS, "x", Budget(0.0)), Unavailable)
    assert source.calls == []


# --------------------------------------------------------------------------------------------------
# Settings


def test_cost_settings_default_to_usd_and_the_public_endpoint() -> None:
    settings = Settings.from_env({})
    assert settings.cost_currency == "USD"
    assert settings.prices_endpoint == "https://prices.azure.com/api/retail/prices"
    assert settings.cost_timeout_seconds == 5.0


def test_cost_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "AML_OBS_COST_CURRENCY": " eur ",
            "AML_OBS_PRICES_ENDPOINT": "https://prices.example.net/api/retail/prices/",
            "AML_OBS_COST_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert (settings.cost_currency, settings.prices_endpoint, settings.cost_timeout_seconds) == (
        "EUR",
        "https://prices.example.net/api/retail/prices",
        2.5,
    )
    with pytest.raises(SettingsError, match="AML_OBS_COST_CURRENCY must be one of"):
        Settings.from_env({"AML_OBS_COST_CURRENCY": "XYZ"})
    with pytest.raises(
        SettingsError, match="AML_OBS_PRICES_ENDPOINT may use http:// only for a loopback host"
    ):
        Settings.from_env({"AML_OBS_PRICES_ENDPOINT": "http://prices.example.net/"})
    with pytest.raises(SettingsError, match="AML_OBS_COST_TIMEOUT_SECONDS must be a positive number"):
        Settings.from_env({"AML_OBS_COST_TIMEOUT_SECONDS": "0"})


def test_price_rows_type_is_what_the_client_returns(api: FakeAmlApi) -> None:
    rows = client(api).rows("eastus", "Standard_DS2_v2", budget())
    assert isinstance(rows, list) and all(isinstance(r, PriceRow) for r in rows)
