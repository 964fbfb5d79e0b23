"""The pure parts of the cost estimate: price selection from Retail Prices pages, VM size spelling, the
arithmetic and rounding, a pipeline's total, and the readers of what a run ran on."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from amlobs import cost
from amlobs.compute_facts import child_compute, compute_resource, read_run_compute
from tests.fakes.aml_data import load_fixture, load_kind
from tests.fakes.retail_prices import load_rows

ROWS = cost.price_rows(load_rows())


def select(sku: str = "Standard_DS3_v2", **kwargs: Any) -> cost.HourlyPrice | cost.NoPrice:
    options: dict[str, Any] = {"region": "eastus", "currency": "USD", "os": "Linux", "priority": "dedicated"}
    options.update(kwargs)
    return cost.select_hourly_price(ROWS, sku=sku, **options)


# --------------------------------------------------------------------------------------------------
# Price selection


@pytest.mark.parametrize(
    ("os", "priority", "price", "meter"),
    [
        ("Linux", "dedicated", "0.293", "D3 v2/DS3 v2"),
        ("Windows", "dedicated", "0.479", "D3 v2/DS3 v2"),
        ("Linux", "spot", "0.0586", "D3 v2/DS3 v2 Spot"),
        ("Windows", "spot", "0.0958", "D3 v2/DS3 v2 Spot"),
        # Low priority has been billed at the Spot rate since 2026-03-31.
        ("Linux", "low_priority", "0.0586", "D3 v2/DS3 v2 Spot"),
    ],
)
def test_the_meter_of_the_os_and_priority_is_chosen(os: str, priority: str, price: str, meter: str) -> None:
    chosen = select(os=os, priority=priority)
    assert isinstance(chosen, cost.HourlyPrice)
    assert (chosen.amount, chosen.meter, chosen.currency) == (Decimal(price), meter, "USD")
    assert chosen.product.endswith(" Windows") == (os == "Windows")


def test_low_priority_says_it_is_priced_at_the_variable_spot_rate() -> None:
    chosen = select(priority="low_priority")
    assert isinstance(chosen, cost.HourlyPrice)
    assert chosen.note == "low priority billed at the Spot rate (variable)"
    assert select(priority="dedicated").note is None  # type: ignore[union-attr]


def test_low_priority_without_a_spot_meter_has_no_price_and_says_why() -> None:
    """Low-priority nodes are Spot nodes since 2026-03-31 (MicrosoftDocs/azure-ai-docs PR #806,
    Azure/Batch#196): the Low Priority meter the prices API still lists no longer bills them."""
    rows = [r for r in ROWS if not r.spot]
    assert any(r.low_priority and r.arm_sku == "Standard_DS3_v2" for r in rows)  # the old meter is there
    chosen = cost.select_hourly_price(
        rows, sku="Standard_DS3_v2", region="eastus", currency="USD", os="Linux", priority="low_priority"
    )
    assert isinstance(chosen, cost.NoPrice)
    assert "billed at the Spot rate" in chosen.reason
    assert "no Linux Spot price for Standard_DS3_v2 in eastus" in chosen.reason
    assert "Low Priority meter no longer bills" in chosen.reason


def test_reservation_dev_test_and_non_primary_rows_never_price_a_run() -> None:
    # DS2 v2 lists a reservation (priced per term), a Dev/Test meter and a non-primary meter region.
    kinds = {(r.price_type, r.primary) for r in ROWS if r.arm_sku == "Standard_DS2_v2"}
    assert {("Reservation", True), ("DevTestConsumption", True), ("Consumption", False)} <= kinds
    chosen = select("Standard_DS2_v2")
    assert isinstance(chosen, cost.HourlyPrice) and chosen.amount == Decimal("0.146")


def test_of_several_meters_for_one_sku_the_newest_wins_then_the_highest() -> None:
    older = [r for r in ROWS if r.arm_sku == "Standard_DS3_v2" and r.effective.startswith("2021")]
    assert older and older[0].price == Decimal("0.279")  # the re-priced meter is really there
    tie = copy.copy(older[0])
    object.__setattr__(tie, "effective", "2023-05-01T00:00:00Z")
    object.__setattr__(tie, "price", Decimal("0.300"))
    chosen = cost.select_hourly_price(
        [*ROWS, tie], sku="Standard_DS3_v2", region="eastus", currency="USD", os="Linux", priority="dedicated"
    )
    assert isinstance(chosen, cost.HourlyPrice) and chosen.amount == Decimal("0.300")


def test_upper_case_sizes_and_regions_with_spaces_match() -> None:
    chosen = select("STANDARD_DS3_V2", region="East US")
    assert isinstance(chosen, cost.HourlyPrice) and chosen.amount == Decimal("0.293")


def test_rows_in_another_currency_do_not_price_a_run_in_usd() -> None:
    euro = [copy.copy(r) for r in ROWS]
    for row in euro:
        object.__setattr__(row, "currency", "EUR")
    chosen = cost.select_hourly_price(
        euro, sku="Standard_DS3_v2", region="eastus", currency="USD", os="Linux", priority="dedicated"
    )
    assert chosen == cost.NoPrice(
        "the prices API lists no hourly consumption price for Standard_DS3_v2 in eastus in USD"
    )
    in_euro = cost.select_hourly_price(
        euro, sku="Standard_DS3_v2", region="eastus", currency="eur", os="Linux", priority="dedicated"
    )
    assert isinstance(in_euro, cost.HourlyPrice) and in_euro.currency == "EUR"


@pytest.mark.parametrize(
    ("sku", "region", "kwargs", "reason"),
    [
        (
            "Standard_ND96amsr_A100_v4",
            "eastus",
            {},
            "the prices API lists no hourly consumption price for Standard_ND96amsr_A100_v4 in eastus in USD",
        ),
        (
            "Standard_DS3_v2",
            "northeurope",
            {},
            "the prices API lists no hourly consumption price for Standard_DS3_v2 in northeurope in USD",
        ),
        (
            "Standard_NC24ads_A100_v4",
            "eastus",
            {"os": "Windows"},
            "the prices API lists no Windows dedicated price for Standard_NC24ads_A100_v4 in eastus "
            "(it lists: Linux dedicated, Linux spot)",
        ),
    ],
)
def test_no_row_means_no_price_and_says_what_was_listed(
    sku: str, region: str, kwargs: dict[str, Any], reason: str
) -> None:
    assert select(sku, region=region, **kwargs) == cost.NoPrice(reason)


def test_items_without_a_price_or_sku_and_odd_values_are_skipped() -> None:
    good = load_rows()[0]
    rows = cost.price_rows(
        [
            "not an object",
            {**good, "retailPrice": None, "unitPrice": None},
            {**good, "retailPrice": "NaN", "unitPrice": "NaN"},
            {**good, "retailPrice": -1},
            {**good, "armSkuName": ""},
            {**good, "retailPrice": True, "unitPrice": True},
            good,
        ]
    )
    assert len(rows) == 1 and rows[0].price == Decimal(str(good["retailPrice"]))


# --------------------------------------------------------------------------------------------------
# VM size spelling


@pytest.mark.parametrize(
    "name",
    [
        "Standard_DS2_v2",
        "Standard_D2s_v3",
        "Standard_NC6s_v3",
        "Standard_NC24ads_A100_v4",
        "Standard_ND96amsr_A100_v4",
        "Standard_NC4as_T4_v3",
        "Standard_E4-2ads_v5",
        "Standard_HB176-144rs_v4",
        "Standard_M128ms",
        "Standard_F16s",
        "Standard_E64_v4",
        "Standard_D2_v2_Promo",
        "Standard_DC2as_cc_v5",
        "Standard_ND96isr_MI300X_v5",
        "Basic_A0",
    ],
)
def test_an_upper_cased_vm_size_is_spelled_back_the_way_the_prices_api_spells_it(name: str) -> None:
    assert cost.canonical_sku(name.upper()) == name
    assert cost.canonical_sku(name) == name


def test_names_that_cannot_go_into_an_odata_literal_are_refused() -> None:
    assert cost.is_plain_name("Standard_DS3_v2") and cost.is_plain_name("eastus")
    assert not cost.is_plain_name("x' or serviceName eq 'y")
    assert not cost.is_plain_name("")


# --------------------------------------------------------------------------------------------------
# Arithmetic


def test_cost_is_price_times_nodes_times_hours_rounded_half_up_to_six_decimals() -> None:
    assert cost.cost_of(Decimal("0.293"), 2, 3_600_000) == Decimal("0.586000")
    assert cost.cost_of(Decimal("0.146"), 1, 10_455) == Decimal("0.000424")  # 0.00042400…
    assert cost.cost_of(Decimal("3.6"), 1, 1) == Decimal("0.000001")  # exactly half a micro-unit: up
    assert cost.cost_of(Decimal("3.5"), 1, 1) == Decimal("0.000001")  # 0.00000097…
    assert cost.cost_of(Decimal("1.7"), 1, 1) == Decimal("0.000000")  # 0.00000047…
    assert cost.cost_of(Decimal("0.293"), 1, 0) == Decimal("0.000000")
    assert cost.amount_text(Decimal("12.3456785")) == "12.345679"
    assert cost.amount_text(Decimal(0)) == "0.000000"
    assert cost.amount_text(Decimal("1E+2")) == "100.000000"  # never an exponent


def test_the_billed_duration_is_the_compute_duration_else_start_to_end() -> None:
    assert cost.billed_duration(600_000, 700_000) == (600_000, "compute duration")
    assert cost.billed_duration(0, 700_000) == (0, "compute duration")  # 0 is a value
    assert cost.billed_duration(None, 700_000) == (700_000, "start to end")
    assert cost.billed_duration(None, None) is None
    assert cost.billed_duration(-5, None) is None


def test_an_estimate_writes_out_everything_it_used() -> None:
    price = cost.HourlyPrice(
        Decimal("0.0586"), "USD", "DS3 v2 Spot", "Virtual Machines DSv2 Series", "spot note"
    )
    basis = cost.CostBasis(
        "Standard_DS3_v2", "Linux", "low_priority", 4, price, "eastus", 90_500, "start to end", "cluster c"
    )
    estimate = cost.estimate(basis)
    assert estimate.fields() == {
        "estimated_cost": "0.005893",  # 0.0586 × 4 × 90.5 / 3600 = 0.0058927…
        "cost_currency": "USD",
        "cost_basis": "sku=Standard_DS3_v2; os=Linux; priority=low_priority; nodes=4; hourly_price=0.0586 USD; "
        "duration_s=90.5 (start to end); region=eastus; compute=cluster c; meter=DS3 v2 Spot; retail list price; "
        "spot note",
    }
    assert cost.NoEstimate("why").fields() == {"cost_basis": "no estimate: why"}


# --------------------------------------------------------------------------------------------------
# A pipeline's total


def test_a_pipeline_total_is_the_sum_of_its_rounded_step_estimates() -> None:
    steps: list[tuple[str, cost.Estimate | cost.NoEstimate]] = [
        ("a", cost.Estimate(Decimal("0.000424"), "USD", "x")),
        ("b", cost.Estimate(Decimal("0.586000"), "USD", "x")),
        ("c", cost.reused("USD", "a")),
    ]
    assert cost.summary_fields(steps, "USD") == {
        "estimated_step_count": 3,
        "unestimated_step_count": 0,
        "estimated_cost": "0.586424",
        "cost_currency": "USD",
        "cost_basis": "sum of 3 step estimate(s)",
    }


def test_a_pipeline_total_says_which_steps_had_no_estimate_and_is_absent_without_any() -> None:
    partial = cost.summary_fields(
        [("a", cost.Estimate(Decimal(1), "USD", "x")), ("b", cost.NoEstimate("compute instance"))], "USD"
    )
    # A partial sum is not the pipeline's cost: absent, with the lower bound beside it under its own name.
    assert "estimated_cost" not in partial
    assert partial["estimated_cost_lower_bound"] == "1.000000" and partial["cost_currency"] == "USD"
    assert partial["unestimated_step_count"] == 1
    assert (
        partial["cost_basis"]
        == "no total: sum of 1 step estimate(s) is a lower bound; 1 step(s) without estimate: b: compute instance"
    )
    none = cost.summary_fields([("b", cost.NoEstimate("down"))], "USD")
    assert "estimated_cost" not in none and "cost_currency" not in none
    assert "estimated_cost_lower_bound" not in none
    assert none["cost_basis"] == "no estimate: no step has one; 1 step(s) without estimate: b: down"
    empty = cost.summary_fields([], "USD")
    assert "estimated_cost" not in empty and empty["estimated_step_count"] == 0


def test_a_reused_step_beside_unpriced_steps_is_not_a_zero_total() -> None:
    """The audit's case: the listing lacked node counts for three steps and a fourth was reused."""
    no_nodes = cost.NoEstimate("run history does not say how many nodes the run used")
    steps: list[tuple[str, cost.Estimate | cost.NoEstimate]] = [
        ("s1", no_nodes),
        ("s2", no_nodes),
        ("s3", no_nodes),
        ("s4", cost.reused("USD", "old")),
    ]
    fields = cost.summary_fields(steps, "USD")
    assert "estimated_cost" not in fields  # never "0.000000" read as the pipeline's cost
    assert fields["estimated_cost_lower_bound"] == "0.000000"
    assert (fields["estimated_step_count"], fields["unestimated_step_count"]) == (1, 3)
    assert str(fields["cost_basis"]).startswith(
        "no total: sum of 1 step estimate(s) is a lower bound; 3 step(s)"
    )


def test_step_estimates_in_several_currencies_give_no_total() -> None:
    fields = cost.summary_fields(
        [("a", cost.Estimate(Decimal(1), "USD", "x")), ("b", cost.Estimate(Decimal(1), "EUR", "x"))], "USD"
    )
    assert "estimated_cost" not in fields
    assert fields["cost_basis"] == "no total: step estimates in several currencies (EUR, USD)"


def test_a_long_list_of_missing_steps_is_capped() -> None:
    steps: list[tuple[str, cost.Estimate | cost.NoEstimate]] = [
        (f"run-{i}", cost.NoEstimate("x" * 100)) for i in range(100)
    ]
    assert len(str(cost.summary_fields(steps, "USD")["cost_basis"])) == cost.MAX_SUMMARY_BASIS_CHARS


# --------------------------------------------------------------------------------------------------
# What the run ran on


def test_the_recorded_cluster_answer_gives_size_priority_os_and_the_compute_location() -> None:
    assert compute_resource(load_fixture("compute_amlcompute.json")) == compute_resource_of(
        "AmlCompute", "STANDARD_DS2_V2", "Dedicated", "Linux", "eastus2euap"
    )
    instance = compute_resource(load_fixture("compute_instance.json"))
    assert (instance.compute_type, instance.vm_size, instance.region) == (
        "ComputeInstance",
        "STANDARD_NC6",
        "eastus2",
    )
    kubernetes = compute_resource(load_fixture("compute_kubernetes.json"))
    assert (kubernetes.compute_type, kubernetes.vm_size) == ("Kubernetes", None)


def compute_resource_of(*values: str) -> Any:
    from amlobs.compute_facts import ComputeResource

    return ComputeResource(*values)


def test_nodes_size_and_priority_are_read_from_run_history_in_order() -> None:
    [_pipeline, _reused, node] = load_kind("v2_pipeline")["runs"]
    facts = read_run_compute(
        [node["run"], node["details"]], node["definition"], target_type="AmlCompute", name="cpu-cluster"
    )
    # compute.instanceCount 1; vmSize null everywhere; OS from runTypeV2.traits "OsType:Linux"
    assert (facts.nodes, facts.vm_size, facts.priority, facts.os) == (1, None, None, "Linux")

    run = {
        "compute": {
            "vmSize": None,
            "instanceType": "Standard_E4s_v3",
            "instanceCount": None,
            "priority": "LowPriority",
            "region": "westeurope",
        },
        "computeRequest": {"nodeCount": 3},
    }
    facts = read_run_compute(
        [run], {"nodeCount": 9, "instanceTypes": ["Standard_D2_v2"]}, target_type="Serverless", name=None
    )
    assert (facts.vm_size, facts.nodes, facts.priority, facts.region) == (
        "Standard_E4s_v3",
        3,
        "LowPriority",
        "westeurope",
    )
    definition_only = read_run_compute(
        [{}], {"nodeCount": 2, "instanceTypes": ["Standard_D2_v2"]}, target_type="Serverless", name=None
    )
    assert (definition_only.vm_size, definition_only.nodes) == ("Standard_D2_v2", 2)
    # A node count that is not a positive integer is not a node count.
    assert (
        read_run_compute(
            [{"computeRequest": {"nodeCount": 0}}], {"nodeCount": True}, target_type=None, name=None
        ).nodes
        is None
    )


def test_a_listed_child_gives_its_compute_type_and_name_like_a_record() -> None:
    [_pipeline, _reused, node] = load_kind("v2_pipeline")["runs"]
    facts = child_compute(node["run"])
    assert (facts.target_type, facts.name, facts.nodes) == ("AmlCompute", "cpu-cluster", 1)
    serverless = child_compute(
        {"properties": {"_azureml.ComputeTargetType": "amlctrain"}, "compute": {"instanceCount": 1}}
    )
    assert (serverless.target_type, serverless.name) == ("Serverless", None)
