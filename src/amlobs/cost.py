"""What a finished run's compute cost is estimated at: price selection and arithmetic. Pure.

The estimate is ``hourly retail price of the VM size × nodes × billed hours``:

* the price is a row of the Azure Retail Prices API (``GET https://prices.azure.com/api/retail/prices``,
  https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices): a
  ``Consumption`` meter priced per ``1 Hour`` of the VM size (``armSkuName``) in the compute's region
  (``armRegionName``), in the configured currency, of the compute's OS (Windows meters name their product
  "... Series Windows", Linux meters have no suffix) and priority (Spot and Low Priority meters end their
  ``skuName``/``meterName`` in " Spot" / " Low Priority"; dedicated meters have neither). Azure Machine
  Learning compute is billed on these Virtual Machines meters (MicrosoftDocs/azure-docs
  articles/machine-learning/concept-plan-manage-cost.md: "Each VM is billed per hour it is running").
* Low-priority AML compute is billed at the **Spot** rate since low-priority VMs were retired on
  2026-03-31 (MicrosoftDocs/azure-ai-docs PR #806, how-to-manage-optimize-cost.md: "Azure Batch now
  allocates their nodes as Spot VMs ... you're charged the current Spot rate for the VM size in the region
  where the cluster runs"; Azure/Batch#196: low-priority nodes are converted to Spot-based nodes, "Spot-based
  compute nodes use a different pricing and discount model"), so it is priced with the Spot meter only. A
  region that lists no Spot meter for the size gives **no estimate**, and says why: its Low Priority meter
  is still listed by the Retail Prices API but no longer bills these nodes (opencost/opencost PR #3531 drops
  the Low Priority rows for the same reason), and no Microsoft pricing page says otherwise.
* billed time is the run's compute duration where run history gives it (``computeDuration``: "the
  cumulative time spent in an active status for a terminal run"), else its start → end; a reused step
  ran in an earlier pipeline run and costs 0.

Amounts are ``Decimal`` and rounded to six decimals once, per run; a pipeline's total is the sum of its
steps' rounded amounts, so it equals what a query summing the step records returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

Priority = Literal["dedicated", "low_priority", "spot"]
OsType = Literal["Linux", "Windows"]

AMOUNT_QUANTUM = Decimal("0.000001")
_MS_PER_HOUR = Decimal(3_600_000)
# A VM size or region goes into an OData string literal: anything else is refused, not quoted.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,80}$")


# --------------------------------------------------------------------------------------------------
# Retail Prices rows


@dataclass(frozen=True)
class PriceRow:
    """One item of a Retail Prices API page (the fields the selection reads)."""

    arm_sku: str
    region: str
    service: str
    product: str
    sku_name: str
    meter: str
    price: Decimal
    currency: str
    unit: str
    price_type: str
    primary: bool | None
    effective: str
    tier_minimum: Decimal

    @property
    def windows(self) -> bool:
        return self.product.lower().endswith(" windows")

    @property
    def spot(self) -> bool:
        return _ends_with(self, " spot")

    @property
    def low_priority(self) -> bool:
        return _ends_with(self, " low priority")

    @property
    def dedicated(self) -> bool:
        return not (self.spot or self.low_priority)


def _ends_with(row: PriceRow, suffix: str) -> bool:
    return row.sku_name.lower().endswith(suffix) or row.meter.lower().endswith(suffix)


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return value.strip() if isinstance(value, str) else ""


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def price_rows(items: Iterable[Any]) -> list[PriceRow]:
    """The usable rows of a page's ``Items``; an item without a price or a SKU is skipped."""
    rows: list[PriceRow] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        price = _decimal(item.get("retailPrice"))
        if price is None:
            price = _decimal(item.get("unitPrice"))
        sku = _text(item, "armSkuName")
        if price is None or price < 0 or not sku:
            continue
        primary = item.get("isPrimaryMeterRegion")
        rows.append(
            PriceRow(
                arm_sku=sku,
                region=_text(item, "armRegionName"),
                service=_text(item, "serviceName"),
                product=_text(item, "productName"),
                sku_name=_text(item, "skuName"),
                meter=_text(item, "meterName"),
                price=price,
                currency=_text(item, "currencyCode"),
                unit=_text(item, "unitOfMeasure"),
                # The filter says priceType, the item says type (the documented samples).
                price_type=_text(item, "type"),
                primary=primary if isinstance(primary, bool) else None,
                effective=_text(item, "effectiveStartDate"),
                tier_minimum=_decimal(item.get("tierMinimumUnits")) or Decimal(0),
            )
        )
    return rows


@dataclass(frozen=True)
class HourlyPrice:
    amount: Decimal
    currency: str
    meter: str
    product: str
    note: str | None = None


@dataclass(frozen=True)
class NoPrice:
    reason: str


def _describe(rows: list[PriceRow]) -> str:
    kinds = sorted(
        {
            f"{'Windows' if r.windows else 'Linux'} "
            f"{'spot' if r.spot else 'low priority' if r.low_priority else 'dedicated'}"
            for r in rows
        }
    )
    return ", ".join(kinds) if kinds else "none"


def select_hourly_price(
    rows: Iterable[PriceRow], *, sku: str, region: str, currency: str, os: OsType, priority: Priority
) -> HourlyPrice | NoPrice:
    """The hourly list price of ``sku`` in ``region`` for that OS and priority, or why there is none.

    Rows that are not this SKU and region (compared without case: AML reports sizes upper-cased, the API
    spells them ``Standard_DS3_v2``), not ``Consumption`` (``Reservation``, ``DevTestConsumption``), not
    per ``1 Hour``, in another currency, of a non-primary meter region or of a higher usage tier are left
    out. Of the rest, the one that took effect last wins (then the highest price: an estimate should not
    understate a SKU whose meters disagree).
    """
    wanted_sku, wanted_region = sku.lower(), region.lower().replace(" ", "")
    candidates = [
        r
        for r in rows
        if r.arm_sku.lower() == wanted_sku
        and r.region.lower() == wanted_region
        and (not r.service or r.service.lower() == "virtual machines")
        and r.price_type.lower() == "consumption"
        and r.unit.lower() == "1 hour"
        and r.currency.upper() == currency.upper()
        and r.primary is not False
        and r.tier_minimum == 0
    ]
    if not candidates:
        return NoPrice(
            f"the prices API lists no hourly consumption price for {sku} in {region} in {currency}"
        )
    of_os = [r for r in candidates if r.windows == (os == "Windows")]
    note: str | None = None
    if priority == "dedicated":
        chosen = [r for r in of_os if r.dedicated]
    else:
        chosen = [r for r in of_os if r.spot]
        if priority == "low_priority":
            note = "low priority billed at the Spot rate (variable)"
            if not chosen and of_os:
                return NoPrice(
                    f"low priority nodes are billed at the Spot rate since the low-priority retirement "
                    f"(2026-03-31), and the prices API lists no {os} Spot price for {sku} in {region}; "
                    f"its Low Priority meter no longer bills (it lists: {_describe(candidates)})"
                )
    if not chosen:
        wanted = f"{os} {priority.replace('_', ' ')}"
        listed = _describe(candidates)
        return NoPrice(f"the prices API lists no {wanted} price for {sku} in {region} (it lists: {listed})")
    best = max(chosen, key=lambda r: (r.effective, r.price))
    return HourlyPrice(best.price, best.currency.upper(), best.meter or best.sku_name, best.product, note)


# --------------------------------------------------------------------------------------------------
# VM size names


_SERIES_TOKEN = re.compile(r"^([A-Z]+)(\d+)((?:-\d+)?)([A-Z]*)$")


def is_plain_name(value: str) -> bool:
    return bool(_PLAIN_NAME.match(value))


def canonical_sku(name: str) -> str:
    """``STANDARD_NC24ADS_A100_V4`` → ``Standard_NC24ads_A100_v4``: the API's spelling of a VM size.

    AML reports VM sizes upper-cased (the recorded compute GET answers ``STANDARD_DS2_V2`` for a cluster
    created as ``Standard_DS2_v2``), and Retail Prices filters are case-sensitive from API version
    2023-01-01-preview on. Azure's size names follow one pattern: the family in capitals, the vCPU count,
    an optional constrained count (``-2``), feature letters in lower case (``ads``, ``s``, ``ms``), then
    ``_v<N>``, accelerator tokens in capitals (``A100``, ``T4``) or ``_Promo``/``_cc``. The lookup still
    compares names without case, so a size outside the pattern only risks an empty answer.
    """
    parts = name.strip().split("_")
    if len(parts) < 2:
        return name.strip()
    prefix = parts[0].capitalize()
    out = [prefix]
    for index, part in enumerate(parts[1:]):
        upper = part.upper()
        series = _SERIES_TOKEN.match(upper)
        if index == 0 and series:
            family, size, constrained, features = series.groups()
            out.append(f"{family}{size}{constrained}{features.lower()}")
        elif re.fullmatch(r"V\d+", upper):
            out.append(upper.lower())
        elif upper == "PROMO":
            out.append("Promo")
        elif upper == "CC":
            out.append("cc")
        else:
            out.append(upper)
    return "_".join(out)


# --------------------------------------------------------------------------------------------------
# Arithmetic


def billed_duration(compute_duration_ms: int | None, execution_ms: int | None) -> tuple[int, str] | None:
    """The billed time and what it is: the compute duration where given, else start → end."""
    if compute_duration_ms is not None and compute_duration_ms >= 0:
        return compute_duration_ms, "compute duration"
    if execution_ms is not None and execution_ms >= 0:
        return execution_ms, "start to end"
    return None


def cost_of(hourly: Decimal, nodes: int, duration_ms: int) -> Decimal:
    """``hourly × nodes × hours``, rounded half up to six decimals."""
    exact = hourly * Decimal(nodes) * Decimal(duration_ms) / _MS_PER_HOUR
    return exact.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_UP)


def amount_text(amount: Decimal) -> str:
    """Six decimals, no exponent: ``0.000000``, ``12.345679``."""
    return format(amount.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_UP), "f")


def seconds_text(duration_ms: int) -> str:
    return format(Decimal(duration_ms) / 1000, "f")


@dataclass(frozen=True)
class CostBasis:
    """Everything an estimate was computed from, written out in ``cost_basis``."""

    sku: str
    os: OsType
    priority: Priority
    nodes: int
    price: HourlyPrice
    region: str
    duration_ms: int
    duration_source: str
    compute: str  # "cluster cpu-cluster", "serverless"

    def text(self) -> str:
        parts = [
            f"sku={self.sku}",
            f"os={self.os}",
            f"priority={self.priority}",
            f"nodes={self.nodes}",
            f"hourly_price={self.price.amount} {self.price.currency}",
            f"duration_s={seconds_text(self.duration_ms)} ({self.duration_source})",
            f"region={self.region}",
            f"compute={self.compute}",
            f"meter={self.price.meter}",
            "retail list price",
        ]
        if self.price.note:
            parts.append(self.price.note)
        return "; ".join(parts)


@dataclass(frozen=True)
class Estimate:
    amount: Decimal
    currency: str
    basis: str

    def fields(self) -> dict[str, str]:
        return {
            "estimated_cost": amount_text(self.amount),
            "cost_currency": self.currency,
            "cost_basis": self.basis,
        }


@dataclass(frozen=True)
class NoEstimate:
    reason: str

    def fields(self) -> dict[str, str]:
        return {"cost_basis": f"no estimate: {self.reason}"}


def estimate(basis: CostBasis) -> Estimate:
    return Estimate(
        cost_of(basis.price.amount, basis.nodes, basis.duration_ms), basis.price.currency, basis.text()
    )


def reused(currency: str, reused_run_id: str | None) -> Estimate:
    where = f" in run {reused_run_id}" if reused_run_id else ""
    return Estimate(
        Decimal(0),
        currency,
        f"reused step: its output was computed earlier{where}, this run used no compute",
    )


# --------------------------------------------------------------------------------------------------
# A pipeline's total


MAX_SUMMARY_BASIS_CHARS = 2048


def summary_fields(steps: list[tuple[str, Estimate | NoEstimate]], currency: str) -> dict[str, str | int]:
    """The summary's cost keys: the sum of the steps' estimates and how many steps had none.

    ``steps`` is (step run id, its estimate). ``estimated_cost`` is the pipeline's total only when every
    step has an estimate: a sum that leaves steps out is not the pipeline's cost (three unpriced steps
    and one reused step must not read as "0.000000"), so it goes to ``estimated_cost_lower_bound``
    instead and ``estimated_cost`` is absent, like every unknown value of a record.
    """
    estimated = [e for _, e in steps if isinstance(e, Estimate)]
    missing = [(run_id, e.reason) for run_id, e in steps if isinstance(e, NoEstimate)]
    currencies = {e.currency for e in estimated}
    fields: dict[str, str | int] = {
        "estimated_step_count": len(estimated),
        "unestimated_step_count": len(missing),
    }
    if estimated and currencies == {currency.upper()}:
        total = amount_text(sum((e.amount for e in estimated), Decimal(0)))
        fields["cost_currency"] = currency.upper()
        if missing:
            fields["estimated_cost_lower_bound"] = total
            basis = f"no total: sum of {len(estimated)} step estimate(s) is a lower bound"
        else:
            fields["estimated_cost"] = total
            basis = f"sum of {len(estimated)} step estimate(s)"
    elif estimated:
        basis = f"no total: step estimates in several currencies ({', '.join(sorted(currencies))})"
    else:
        basis = "no estimate: no step has one"
    if missing:
        basis += f"; {len(missing)} step(s) without estimate: " + "; ".join(
            f"{run_id}: {reason}" for run_id, reason in missing
        )
    fields["cost_basis"] = basis[:MAX_SUMMARY_BASIS_CHARS]
    return fields
