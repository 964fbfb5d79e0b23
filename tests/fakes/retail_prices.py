"""The Azure Retail Prices API as documented, for the loopback AML fake to serve at ``/api/retail/prices``.

Documented behaviour (https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices;
verbatim captures are quoted in ``src/amlobs/prices.py``):

* no authentication; ``$filter`` with ``eq`` joined by ``and`` on the documented fields (``priceType`` filters
  the item field ``type``); a filter on any other field is refused here with 400;
* filter values are case-insensitive before ``api-version=2023-01-01-preview`` and case-sensitive from it on
  (the page's "Filter value is case sensitive" section): the fake does both, so the upper-case VM size trap
  is real in the tests;
* ``meterRegion='primary'`` (2021-10-01 and later) leaves out items with ``isPrimaryMeterRegion: false``;
* ``currencyCode='EUR'``: prices in that currency (the fake converts with fixed illustrative rates);
* paging: at most ``page_size`` items a page (1,000 in Azure; small here so every lookup pages), the rest
  behind ``NextPageLink``, spelled as the documented one with the port (``…:443/api/retail/prices?…&$skip=N``);
* the envelope ``{"BillingCurrency", "CustomerEntityId", "CustomerEntityType", "Items", "NextPageLink",
  "Count"}`` (Microsoft Q&A 348412's empty answer).

The rows are ``tests/data/prices/vm_prices.json`` (documented item shape, illustrative values).
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

PRICES_PATH = "/api/retail/prices"
DATA = Path(__file__).resolve().parent.parent / "data" / "prices" / "vm_prices.json"
CASE_SENSITIVE_FROM = "2023-01-01-preview"
KNOWN_VERSIONS = ("2021-10-01-preview", "2023-01-01-preview")
# Filterable fields (the documented list) → the item key each one reads.
FILTER_FIELDS = {
    "armregionname": "armRegionName",
    "location": "location",
    "meterid": "meterId",
    "metername": "meterName",
    "productid": "productId",
    "skuid": "skuId",
    "productname": "productName",
    "skuname": "skuName",
    "servicename": "serviceName",
    "serviceid": "serviceId",
    "servicefamily": "serviceFamily",
    "pricetype": "type",
    "armskuname": "armSkuName",
}
# Illustrative exchange rates of the reference prices in other currencies (not Microsoft's).
RATES = {"USD": Decimal(1), "EUR": Decimal("0.92"), "GBP": Decimal("0.79"), "JPY": Decimal("151")}
_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$")


def load_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(DATA.read_text(encoding="utf-8"))["Items"]
    return rows


class RetailPricesData:
    def __init__(self, page_size: int = 3) -> None:
        self.page_size = page_size
        self.rows = load_rows()

    def answer(self, query: dict[str, str], base_url: str) -> tuple[int, Any]:
        version = query.get("api-version")
        if version is not None and version not in KNOWN_VERSIONS:
            return 400, {
                "Error": {"Code": "InvalidApiVersion", "Message": f"api-version {version} is not supported"}
            }
        case_sensitive = version is not None and version >= CASE_SENSITIVE_FROM
        currency = query.get("currencyCode", "'USD'").strip("'").upper()
        if currency not in RATES:
            return 400, {
                "Error": {"Code": "InvalidCurrency", "Message": f"currencyCode {currency} is not supported"}
            }
        try:
            clauses = self._clauses(query.get("$filter", ""))
        except ValueError as bad:
            return 400, {"Error": {"Code": "InvalidFilter", "Message": str(bad)}}
        primary_only = query.get("meterRegion", "").strip("'").lower() == "primary"
        matching = [
            row
            for row in self.rows
            if (not primary_only or row.get("isPrimaryMeterRegion") is not False)
            and all(_equal(str(row.get(key, "")), value, case_sensitive) for key, value in clauses)
        ]
        skip = int(query.get("$skip", "0") or 0)
        page = [_in_currency(row, currency) for row in matching[skip : skip + self.page_size]]
        next_link = None
        if skip + self.page_size < len(matching):
            rest = {k: v for k, v in query.items() if k != "$skip"}
            next_link = f"{base_url}{PRICES_PATH}?" + urlencode(
                {**rest, "$skip": str(skip + self.page_size)}, quote_via=quote, safe="'"
            )
        return 200, {
            "BillingCurrency": currency,
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": page,
            "NextPageLink": next_link,
            "Count": len(page),
        }

    @staticmethod
    def _clauses(expression: str) -> list[tuple[str, str]]:
        if not expression.strip():
            return []
        clauses = []
        for part in re.split(r"\s+and\s+", expression.strip()):
            match = _CLAUSE.match(part)
            if match is None:
                raise ValueError(f"unsupported filter clause {part!r}")
            field = FILTER_FIELDS.get(match[1].lower())
            if field is None:
                raise ValueError(f"{match[1]} is not a filterable field")
            clauses.append((field, match[2].replace("''", "'")))
        return clauses


def _equal(actual: str, wanted: str, case_sensitive: bool) -> bool:
    return actual == wanted if case_sensitive else actual.lower() == wanted.lower()


def _in_currency(row: dict[str, Any], currency: str) -> dict[str, Any]:
    converted = copy.deepcopy(row)
    rate = RATES[currency]
    for key in ("retailPrice", "unitPrice"):
        converted[key] = float((Decimal(str(row[key])) * rate).quantize(Decimal("0.0001")))
    converted["currencyCode"] = currency
    return converted


def price_of(
    region: str, sku: str, *, windows: bool = False, kind: str = "", currency: str = "USD"
) -> Decimal:
    """The hourly consumption price the fake lists (ground truth for the tests): ``kind`` is "", "Spot" or
    "Low Priority"; the newest primary meter wins, as documented in amlobs.cost."""
    candidates = [
        row
        for row in load_rows()
        if row["armRegionName"] == region
        and row["armSkuName"].lower() == sku.lower()
        and row["type"] == "Consumption"
        and row["isPrimaryMeterRegion"]
        and row["productName"].endswith(" Windows") == windows
        and (
            row["skuName"].endswith(f" {kind}")
            if kind
            else not row["skuName"].endswith((" Spot", " Low Priority"))
        )
    ]
    best = max(candidates, key=lambda row: (row["effectiveStartDate"], row["retailPrice"]))
    return (Decimal(str(best["retailPrice"])) * RATES[currency]).quantize(Decimal("0.0001")).normalize()
