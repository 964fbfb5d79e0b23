"""The workbook and the alert rules read only what the code writes to Application Insights.

Every KQL query of ``infra/workbook.json`` and ``infra/modules/alerts.bicep`` is extracted (the Bicep
through its syntax tree), parsed and bound by Kusto.Language (the library behind the portal's query
editors) against the Application Insights tables, and its references to the product's telemetry
(custom event and metric names, ``customDimensions`` keys, run statuses, function names) are checked
against what ``amlobs`` sends: renaming a record field without updating the dashboard fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amlobs.events import KNOWN_STATUSES
from amlobs.records import RECORD_FIELDS
from amlobs.resource_use.cluster_idle import CLUSTER_IDLE_FIELDS, EVENT_CLUSTER_IDLE
from amlobs.resource_use.events import (
    EVENT_RESOURCE_USE,
    EVENT_RESOURCE_USE_HEALTH,
    HEALTH_FIELDS,
    RESOURCE_USE_FIELDS,
)
from amlobs.storage import MemoryDedupeStore, MemoryRejectedEventStore
from amlobs.summary import SUMMARY_FIELDS
from amlobs.telemetry import AzureMonitorTelemetry
from amlobs.telemetry_unit import (
    EVENT_PIPELINE_SUMMARY,
    EVENT_REJECTED,
    EVENT_RUN_STATUS_CHANGED,
    MAYBE_DUPLICATE,
    METRIC_DIMENSIONS,
    METRIC_DURATION,
    METRIC_QUEUE_TIME,
    METRIC_REJECTED,
    run_record_unit,
)
from amlobs.tracing import METRIC_TRACE_SPANS_SKIPPED, QUEUE_SPAN_NAME, SPAN_DIMENSIONS, traced_unit
from tests.dashboard_sources import (
    ALERTS_BICEP,
    ALL_AI_TABLES,
    APP_INSIGHTS_TABLES,
    APP_INSIGHTS_TOKEN,
    APP_INSIGHTS_TYPE,
    DASHBOARD_BICEP,
    DASHBOARD_DOC,
    KQL_CHECK,
    KUSTO_PACKAGE,
    PRODUCT_TABLES,
    REPO,
    SPAN_TABLES,
    WORKBOOK_PARAMETER,
    WORKBOOK_PARAMETER_SAMPLES,
    WORKBOOK_PATH,
    BicepFile,
    Query,
    bicep_queries,
    expand_workbook_parameters,
    first_child,
    markdown_queries,
    named_children,
    property_key,
    property_value,
    text_of,
    walk,
    workbook_items,
    workbook_parameters,
    workbook_queries,
    workbook_query_items,
)
from tests.fakes.ingestion import IngestionServer
from tests.kql_engine import iso_duration

# --------------------------------------------------------------------------------------------------
# KQL: a small lexer, and the telemetry references of a query


_KQL_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*)
  | (?P<multiline>```.*?```)
  | (?P<verbatim>@'(?:[^']|'')*'|@"(?:[^"]|"")*")
  | (?P<string>'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
  | (?P<ident>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<op>==|!=|=~|!~|<=|>=|<>)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_KQL_ESCAPES = {"\\\\": "\\", "\\'": "'", '\\"': '"', "\\n": "\n", "\\t": "\t", "\\r": "\r"}


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, op, punct
    text: str
    value: str  # a string literal's value; the text otherwise


def kql_tokens(kql: str) -> list[Token]:
    tokens = []
    for match in _KQL_TOKEN.finditer(kql):
        kind = match.lastgroup or "punct"
        text = match.group(0)
        if kind in ("space", "comment"):
            continue
        if kind == "multiline":
            tokens.append(Token("string", text, text[3:-3]))
        elif kind == "verbatim":
            tokens.append(Token("string", text, text[2:-1].replace(text[1] * 2, text[1])))
        elif kind == "string":
            value = re.sub(r"\\.", lambda m: _KQL_ESCAPES.get(m.group(0), m.group(0)[1]), text[1:-1])
            tokens.append(Token("string", text, value))
        else:
            tokens.append(Token(kind, text, text))
    return tokens


@dataclass
class References:
    tables: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)  # literals compared with `name` (event / metric names)
    fields: set[str] = field(default_factory=set)  # customDimensions keys
    functions: set[str] = field(default_factory=set)  # literals compared with `operation_Name`
    statuses: set[str] = field(default_factory=set)  # literals compared with `status`
    problems: list[str] = field(default_factory=list)


def _compared_literals(tokens: list[Token], at: int) -> list[str] | None:
    """String literals that tokens[at:] compares the preceding column with, or None if it is no comparison."""

    def token(i: int) -> Token | None:
        return tokens[i] if i < len(tokens) else None

    first = token(at)
    if first is None:
        return None
    if first.kind == "op" and first.text in ("==", "!=", "=~", "!~", "<>"):
        value = token(at + 1)
        return [value.value] if value is not None and value.kind == "string" else None
    start = None
    if first.text == "in":
        start = at + 1
    elif first.text == "!" and (second := token(at + 1)) is not None and second.text == "in":
        start = at + 2
    if start is None:
        return None
    if (tilde := token(start)) is not None and tilde.text == "~":
        start += 1
    if (opening := token(start)) is None or opening.text != "(":
        return None
    literals = []
    i = start + 1
    while (current := token(i)) is not None and current.text != ")":
        if current.kind == "string":
            literals.append(current.value)
        i += 1
    return literals


def telemetry_references(kql: str) -> References:
    refs = References()
    tokens = kql_tokens(kql)
    for i, tok in enumerate(tokens):
        if tok.kind != "ident":
            continue
        previous = tokens[i - 1] if i else None
        if previous is not None and previous.text == ".":
            continue  # a member (customDimensions.status), not a column
        nxt = tokens[i + 1 : i + 4]
        if tok.text in ALL_AI_TABLES:
            refs.tables.add(tok.text)
        elif tok.text == "customDimensions":
            texts = [t.text for t in nxt]
            if len(nxt) >= 2 and texts[0] == "." and nxt[1].kind == "ident":
                refs.fields.add(nxt[1].text)
            elif len(nxt) >= 3 and texts[0] == "[" and nxt[1].kind == "string" and texts[2] == "]":
                refs.fields.add(nxt[1].value)
            else:
                refs.problems.append(
                    "customDimensions is used as a whole (e.g. bag_unpack): name each key, so each is checked"
                )
        elif tok.text in ("name", "operation_Name", "status"):
            literals = _compared_literals(tokens, i + 1)
            if literals is None:
                continue
            {"name": refs.names, "operation_Name": refs.functions, "status": refs.statuses}[tok.text].update(
                literals
            )
    return refs


@dataclass(frozen=True)
class Contract:
    events: Mapping[str, frozenset[str]]  # custom event name → its customDimensions keys
    metrics: Mapping[str, frozenset[str]]  # custom metric name → its customDimensions keys
    statuses: frozenset[str]
    functions: frozenset[str]
    span_dimensions: frozenset[str] = frozenset()  # customDimensions keys of the pipeline traces' spans
    span_names: frozenset[str] = frozenset()  # span names that are constants (the queue time span)


def contract_problems(refs: References, contract: Contract) -> list[str]:
    problems = list(refs.problems)
    for table in sorted(refs.tables - PRODUCT_TABLES):
        problems.append(f"table {table} holds nothing this product writes")
    reads_spans = bool(refs.tables & SPAN_TABLES)
    sources: dict[str, frozenset[str]] = {}
    if reads_spans:
        sources["pipeline trace spans"] = contract.span_dimensions
    for name in sorted(refs.names):
        keys = contract.events.get(name, contract.metrics.get(name))
        if keys is None and reads_spans and name in contract.span_names:
            continue
        if keys is None:
            problems.append(f"{name!r} is neither a custom event nor a custom metric the code emits")
        else:
            sources[name] = keys
    if refs.fields:
        if not sources:
            problems.append("reads customDimensions without selecting a custom event or metric by name")
        allowed = frozenset().union(*sources.values())
        for key in sorted(refs.fields - allowed):
            problems.append(
                f"customDimensions.{key} is not sent with {sorted(sources) or 'any selected item'}"
            )
    for status in sorted(refs.statuses - contract.statuses):
        problems.append(f"status {status!r} is not a run status the code records")
    for function in sorted(refs.functions - contract.functions):
        problems.append(f"operation_Name {function!r} is not a function of function_app")
    return problems


# --------------------------------------------------------------------------------------------------
# What the code sends: the real exporter, to the loopback ingestion fake


class _NoRunHistory:
    """The processor must not call the run history for an event it rejects."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"run history called ({name}) for a rejected event")


def _full(fields: tuple[str, ...], numeric: frozenset[str]) -> dict[str, str | int]:
    return {key: (1000 + i if key in numeric else f"value-{key}") for i, key in enumerate(fields)}


def reconciler_units() -> list[Any]:
    """Every event the reconciler and its schedules step send, each with every key it can carry."""
    from datetime import UTC, datetime, timedelta

    from amlobs.events import WorkspaceRef
    from amlobs.reconcile.health import Problem, health_unit, pass_unit
    from amlobs.schedules.judge import Job, Judgement
    from amlobs.schedules.model import parse_expectation
    from amlobs.schedules.step import EVENT_JUDGED, EVENT_OVERDUE, invalid_unit, schedule_unit

    ws = WorkspaceRef("s", "rg", "ws")
    counts = {f"runs_{k}": 1 for k in ("listed", "recorded", "backfilled", "duplicate", "failed")}
    counts.update(
        {f"schedules_{k}": 1 for k in ("judged", "on_time", "missed", "late", "overdue", "invalid")}
    )
    expectation = parse_expectation({"name": "e", "experiment": "x", "cron": "0 6 * * *"})
    fire = datetime(2026, 12, 8, 6, tzinfo=UTC)
    job = Job("r", fire, fire + timedelta(minutes=20), None, "Running")
    grace = timedelta(minutes=15)
    following = {"next": fire + timedelta(days=1)}
    overdue = {"usual_duration_p95_ms": 1, "overdue_after_ms": 2}
    return [
        pass_unit(ws, "p", {**counts, "lag_ms": 1, "history_complete": "true", "duration_ms": 1}),
        health_unit(ws, "runs", Problem("access_refused", "d", "perm"), "p"),
        schedule_unit(ws, expectation, Judgement(fire, "missed"), EVENT_JUDGED, grace, following),
        schedule_unit(
            ws, expectation, Judgement(fire, "late", job, 1_200_000), EVENT_JUDGED, grace, following
        ),
        schedule_unit(ws, expectation, Judgement(fire, "running", job), EVENT_OVERDUE, grace, overdue),
        invalid_unit(ws, "schedule", "n", "bad cron", "digest"),
    ]


def _resource_use_units(now_ms: int) -> list[Any]:
    from amlobs.cost import HourlyPrice
    from amlobs.resource_use.cluster_idle import ClusterDay, idle_unit
    from amlobs.resource_use.due import DUE_KEYS, DueRun
    from amlobs.resource_use.events import health_unit, measured_unit, missing_unit
    from amlobs.resource_use.metrics_query import RUN_METRICS, MetricSeries, Sample
    from amlobs.resource_use.usage import reduce

    record = {key: f"value-{key}" for key in DUE_KEYS}
    record.update(
        subscriptions="s", resourceGroup="rg", amlWorkSpace="ws", estimated_cost="1.000000",
        cost_basis="sku=Standard_NC6s_v3; nodes=2; compute=cluster gpu",
    )  # fmt: skip
    gpu = DueRun("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
                 "run-1", record, now_ms)  # fmt: skip
    series = {
        name: MetricSeries(name, "Count", {"n1": [Sample(10.0, 20.0)], "n2": [Sample(30.0, 40.0)], "n3": []})
        for name in RUN_METRICS
    }
    cpu = DueRun(gpu.workspace_id, "run-2", {**record, "cost_basis": "sku=Standard_DS2_v2; nodes=1"}, now_ms)
    cpu_series = {name: s for name, s in series.items() if name.startswith("Cpu")}
    window = (now_ms - 600_000, now_ms - 60_000)
    return [
        measured_unit(gpu, reduce(series, gpu_sku=True), window),
        measured_unit(cpu, reduce(cpu_series, gpu_sku=False), window),
        missing_unit(gpu, "no_data", "why", window),
        health_unit(record, "access_refused", "detail", "Microsoft.Insights/metrics/read"),
        idle_unit(
            gpu.ws,
            "gpu",
            date(2025, 1, 1),
            ClusterDay(3.0, 0.5, {"h"}),
            (HourlyPrice(Decimal(1), "USD", "m", "p"), "sku"),
        ),
    ]


@pytest.fixture(scope="module")
def wire() -> Iterator[dict[str, dict[str, frozenset[str]]]]:
    """customDimensions keys per custom event and metric name, as accepted by (fake) ingestion."""
    server = IngestionServer().start()
    sink = AzureMonitorTelemetry(server.connection_string)
    try:
        record = _full(RECORD_FIELDS, frozenset(f for f in RECORD_FIELDS if f.endswith("_ms")))
        record.update(status="Completed", run_type="azureml.StepRun")
        summary = _full(SUMMARY_FIELDS, frozenset(f for f in SUMMARY_FIELDS if f.endswith(("_ms", "_count"))))
        sink.send(run_record_unit(record, summary))
        # A copy sent again after a request without an answer says so (docs/dashboard.md).
        sink.send(run_record_unit(record, summary, maybe_duplicate=True))
        # A finished run's spans: a failed step that started before ingestion's window (clamped), sent
        # again after an unanswered request; and a run that ended long ago (its span skipped, counted).
        now_ms = int(time.time() * 1000)
        step = {k: v for k, v in record.items() if k != "enrichment_error"}
        step.update(
            status="Failed",
            parent_run_id="value-pipeline",
            root_run_id="value-pipeline",
            created_time_utc_ms=now_ms - 50 * 3_600_000,
            start_time_utc_ms=now_ms - 49 * 3_600_000,
            end_time_utc_ms=now_ms - 60_000,
            status_time_utc_ms=now_ms - 60_000,
        )
        sink.send(traced_unit(step, maybe_duplicate=True, now_ms=now_ms))
        step.update(
            run_id="value-old-run", created_time_utc_ms=1000, start_time_utc_ms=2000, end_time_utc_ms=3000
        )
        sink.send(traced_unit(step, now_ms=now_ms))

        # The resource-use pass's events: a GPU run and a CPU run with every figure, a run without any,
        # and a health record (amlobs.resource_use.events).
        for unit in _resource_use_units(now_ms):
            sink.send(unit)

        from amlobs.processor import EventProcessor

        processor = EventProcessor(
            runs=_NoRunHistory(),  # type: ignore[arg-type]
            telemetry=sink,
            dedupe=MemoryDedupeStore(),
            rejected=MemoryRejectedEventStore(),
        )
        outcome = processor.process(
            {
                "id": "evt-rejected-1",
                "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
                "subject": "blobServices/default/containers/c/blobs/b",
                "eventType": "Microsoft.Storage.BlobCreated",
                "eventTime": "2025-01-01T00:00:00Z",
                "dataVersion": "1",
                "data": {},
            }
        )
        assert outcome.kind == "rejected"
        for unit in reconciler_units():
            sink.send(unit)
        events: dict[str, set[str]] = {}
        for event in server.events():
            events.setdefault(event["name"], set()).update(event.get("properties", {}))
        metrics: dict[str, set[str]] = {}
        for name in (METRIC_DURATION, METRIC_QUEUE_TIME, METRIC_REJECTED, METRIC_TRACE_SPANS_SKIPPED):
            for point in server.metrics(name):
                metrics.setdefault(name, set()).update(point["properties"])
        span_keys: set[str] = set()
        for span in server.spans():
            span_keys.update(span["data"]["baseData"].get("properties") or {})
        yield {
            "events": {k: frozenset(v) for k, v in events.items()},
            "metrics": {k: frozenset(v) for k, v in metrics.items()},
            "spans": {"dimensions": frozenset(span_keys)},
        }
    finally:
        sink.shutdown()
        server.close()


@pytest.fixture(scope="module")
def contract(wire: dict[str, dict[str, frozenset[str]]]) -> Contract:
    from tests.integration.host import indexed_functions

    return Contract(
        events={
            EVENT_RUN_STATUS_CHANGED: frozenset(RECORD_FIELDS) | {MAYBE_DUPLICATE},
            EVENT_PIPELINE_SUMMARY: frozenset(SUMMARY_FIELDS) | {MAYBE_DUPLICATE},
            EVENT_RESOURCE_USE: frozenset(RESOURCE_USE_FIELDS),
            EVENT_RESOURCE_USE_HEALTH: frozenset(HEALTH_FIELDS),
            EVENT_CLUSTER_IDLE: frozenset(CLUSTER_IDLE_FIELDS),
            # No constant lists these: they are whatever the processor's reject path attaches.
            EVENT_REJECTED: wire["events"][EVENT_REJECTED],
            # The reconciler's events, as sent (reconciler_units gives each every key it can carry).
            **{name: wire["events"][name] for name in RECONCILER_EVENTS},
        },
        metrics=wire["metrics"],
        statuses=frozenset(KNOWN_STATUSES),
        # Indexed once per process, as the host does (azure-functions refuses a second indexing).
        functions=frozenset(indexed_functions()),
        span_dimensions=SPAN_DIMENSIONS,
        span_names=frozenset({QUEUE_SPAN_NAME}),
    )


# --------------------------------------------------------------------------------------------------
# Kusto.Language, through tests/tools/kql_check.js


def run_kusto(queries: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not KUSTO_PACKAGE.is_dir():
        pytest.fail(
            "Kusto.Language is not installed (node and tests/tools/node_modules/@kusto/language-service-next "
            "are needed): run scripts/test.sh, which installs them with `npm ci` in tests/tools",
            pytrace=False,
        )
    completed = subprocess.run(
        [node, str(KQL_CHECK)],
        input=json.dumps({"tables": APP_INSIGHTS_TABLES, "queries": dict(queries)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout)


WORKBOOK: dict[str, Any] = json.loads(WORKBOOK_PATH.read_text(encoding="utf-8"))
QUERIES: list[Query] = (
    workbook_queries(WORKBOOK)
    + bicep_queries(ALERTS_BICEP)
    + markdown_queries(DASHBOARD_DOC)
    + markdown_queries(REPO / "README.md")
)
QUERY_IDS = [q.origin for q in QUERIES]

# Checks the checker: these must come back with errors.
KUSTO_CANARIES = {
    "canary:unknown-column": "customEvents | where nme == 'AmlRunStatusChanged'",
    "canary:syntax": "customEvents | summarize percentile(itemCount, 50 by name",
    "canary:unknown-table": "AppEvents | take 1",
}


def parseable(query: Query) -> str:
    return expand_workbook_parameters(query.kql, WORKBOOK_PARAMETER_SAMPLES)


@pytest.fixture(scope="module")
def kusto() -> dict[str, dict[str, Any]]:
    return run_kusto({**{q.origin: parseable(q) for q in QUERIES}, **KUSTO_CANARIES})


def columns(kusto: dict[str, dict[str, Any]], origin: str) -> dict[str, str]:
    result = kusto[origin]["columns"]
    assert result is not None, f"{origin}: the query does not return a table"
    return {c["name"]: c["type"] for c in result}


# --------------------------------------------------------------------------------------------------
# Tests: every query against the code's contract


def test_queries_were_found_in_both_files() -> None:
    origins = {q.origin.split(":")[0] for q in QUERIES}
    assert origins == {"workbook", "alerts.bicep", "docs/dashboard.md", "README.md"}
    assert len([q for q in QUERIES if q.origin.startswith("docs/")]) >= 5
    assert len([q for q in QUERIES if q.origin.startswith("workbook:")]) >= 10
    assert {q.origin for q in QUERIES if q.origin.startswith("alerts.bicep:")} == {
        "alerts.bicep:pipeline-failed",
        "alerts.bicep:pipeline-duration-regression",
        "alerts.bicep:pipeline-cost-regression",
        "alerts.bicep:expensive-idle-gpu-run",
        "alerts.bicep:processor-failures",
        "alerts.bicep:events-rejected",
        "alerts.bicep:schedule-missed-or-late",
    }


@pytest.mark.parametrize("query", QUERIES, ids=QUERY_IDS)
def test_query_reads_only_telemetry_the_code_sends(query: Query, contract: Contract) -> None:
    refs = telemetry_references(parseable(query))
    assert refs.tables, f"{query.origin}: reads no Application Insights table"
    assert contract_problems(refs, contract) == []
    if "customEvents" in refs.tables or "customMetrics" in refs.tables:
        # A query over the product's telemetry always picks its items by name (else the check above
        # would have nothing to check the keys against).
        assert refs.names, f"{query.origin}: custom telemetry read without a name filter"


@pytest.mark.parametrize("query", QUERIES, ids=QUERY_IDS)
def test_query_parses_and_binds_against_the_application_insights_schema(
    query: Query, kusto: dict[str, dict[str, Any]]
) -> None:
    errors = [d for d in kusto[query.origin]["diagnostics"] if d["severity"] == "Error"]
    text = parseable(query)
    assert [f"{d['code']} {d['message']} at {text[d['start'] : d['start'] + 40]!r}" for d in errors] == []


def test_the_kusto_checker_reports_errors(kusto: dict[str, dict[str, Any]]) -> None:
    for origin in KUSTO_CANARIES:
        assert any(d["severity"] == "Error" for d in kusto[origin]["diagnostics"]), origin


def test_the_field_lists_checked_against_are_what_the_exporter_sends(wire: dict[str, Any]) -> None:
    # The dashboard is checked against RECORD_FIELDS / SUMMARY_FIELDS: they must be the wire names.
    assert wire["events"][EVENT_RUN_STATUS_CHANGED] == frozenset(RECORD_FIELDS) | {MAYBE_DUPLICATE}
    assert wire["events"][EVENT_PIPELINE_SUMMARY] == frozenset(SUMMARY_FIELDS) | {MAYBE_DUPLICATE}
    assert {"reason", "detail", "event_id", "event_type", "topic", "blob_name"} <= wire["events"][
        EVENT_REJECTED
    ]
    assert wire["events"][EVENT_RESOURCE_USE] == frozenset(RESOURCE_USE_FIELDS)
    assert wire["events"][EVENT_RESOURCE_USE_HEALTH] == frozenset(HEALTH_FIELDS)
    assert wire["events"][EVENT_CLUSTER_IDLE] == frozenset(CLUSTER_IDLE_FIELDS)
    assert wire["metrics"][METRIC_DURATION] == frozenset(METRIC_DIMENSIONS)
    assert wire["metrics"][METRIC_QUEUE_TIME] == frozenset(METRIC_DIMENSIONS)
    assert wire["metrics"][METRIC_REJECTED] == frozenset({"reason"})
    assert wire["metrics"][METRIC_TRACE_SPANS_SKIPPED] == frozenset({"reason"})
    # Every key a span may carry was sent (a step's spans carry all but none is made up).
    assert wire["spans"]["dimensions"] == SPAN_DIMENSIONS


# The extractor itself: each kind of mistake is caught.


@pytest.mark.parametrize(
    ("kql", "expected"),
    [
        (
            "customEvents | where name == 'AmlRunStatusChanged' | extend x = tostring(customDimensions.nonexistent_field)",
            "customDimensions.nonexistent_field is not sent",
        ),
        (
            "customEvents | where name == 'AmlRunStatusChanged' | extend x = customDimensions['nonexistent_field']",
            "customDimensions.nonexistent_field is not sent",
        ),
        (
            # a summary key read from run records
            "customEvents | where name == 'AmlRunStatusChanged' | extend w = tolong(customDimensions.wall_time_ms)",
            "customDimensions.wall_time_ms is not sent",
        ),
        (
            # the possible-duplicate flag is on run records and summaries only
            "customEvents | where name == 'AmlEventRejected' | where tostring(customDimensions.delivery_maybe_duplicate) == 'true'",
            "customDimensions.delivery_maybe_duplicate is not sent",
        ),
        (
            # a record key the metrics do not carry
            "customMetrics | where name == 'aml_run_duration_ms' | extend ws = tostring(customDimensions.amlWorkSpace)",
            "customDimensions.amlWorkSpace is not sent",
        ),
        (
            "customEvents | where name in ('AmlRunStatusChanged', 'AmlRunChanged')",
            "'AmlRunChanged' is neither",
        ),
        (
            "customEvents | where name == 'AmlRunStatusChanged' | evaluate bag_unpack(customDimensions)",
            "as a whole",
        ),
        ("customEvents | extend r = tostring(customDimensions.run_id)", "without selecting"),
        (
            "customEvents | where name == 'AmlRunStatusChanged' | extend status = tostring(customDimensions.status)"
            " | where status !in ('Completed', 'Succeeded')",
            "status 'Succeeded'",
        ),
        ("requests | where operation_Name == 'aml_events'", "operation_Name 'aml_events'"),
        ("traces | take 10", "table traces"),
    ],
)
def test_the_extractor_catches(kql: str, expected: str, contract: Contract) -> None:
    problems = contract_problems(telemetry_references(kql), contract)
    assert any(expected in p for p in problems), problems


def test_the_extractor_accepts_what_the_code_sends(contract: Contract) -> None:
    kql = (
        'customEvents | where name == "AmlPipelineRunSummary" // customDimensions.not_a_key in a comment\n'
        "| extend w = tolong(customDimensions['wall_time_ms']), s = 'customDimensions.inside_a_string'\n"
        "| where tostring(customDimensions.status) in~ ('Completed', 'Failed')"
    )
    refs = telemetry_references(kql)
    assert refs.fields == {"wall_time_ms", "status"}
    assert refs.names == {"AmlPipelineRunSummary"}
    assert contract_problems(refs, contract) == []


# --------------------------------------------------------------------------------------------------
# Tests: the workbook


def test_workbook_is_a_notebook_whose_query_items_are_complete() -> None:
    assert WORKBOOK["version"] == "Notebook/1.0"
    items = list(workbook_items(WORKBOOK["items"]))
    names = [i["name"] for i in items]
    assert len(names) == len(set(names)), "item names must be unique (the portal keys state on them)"
    query_items = workbook_query_items(WORKBOOK)
    assert query_items
    for item in query_items:
        content = item["content"]
        assert content["version"] == "KqlItem/1.0", item["name"]
        assert content["query"].strip(), item["name"]
        assert content["title"].strip(), item["name"]
        assert content["queryType"] == 0 and content["resourceType"] == APP_INSIGHTS_TYPE, item["name"]
    ids = [p["id"] for p in workbook_parameters(WORKBOOK)]
    assert len(ids) == len(set(ids))


STATUS_TIME = "| extend status_time = coalesce(todatetime(customDimensions.status_time), timestamp)"
PREFILTER = re.compile(r"\|\s*where timestamp \{TimeRange\}")
# The drill-down's steps: every step of the selected pipeline run, whenever it changed status.
WIDE_PANELS = {"pipeline-run-steps"}
# Panels of the schedules' judgements: filtered (and binned) on the fire time they judge, the way the run
# panels are on status_time, with timestamp (when the judgement was sent, never before) as prefilter.
JUDGED_PANELS = {"schedules-overview", "schedule-misses"}
RECONCILER_EVENTS = {
    "AmlReconcilerPass", "AmlReconcilerHealth", "AmlScheduleJudged", "AmlScheduleMissed", "AmlScheduleLate",
    "AmlScheduleOverdue", "AmlScheduleInvalid",
}  # fmt: skip


# Resource use and idle cluster days are placed at their run's end (their day's end) and sent after it.
AFTER_THE_FACT = {EVENT_RESOURCE_USE, EVENT_CLUSTER_IDLE}


def run_telemetry(query: str) -> bool:
    # The resource-use event is placed at its run's status time too, and always sent after it.
    return bool(refs_of(query).names & {EVENT_RUN_STATUS_CHANGED, EVENT_PIPELINE_SUMMARY, *AFTER_THE_FACT})


def test_every_panel_of_runs_filters_and_bins_on_the_status_time_with_timestamp_only_as_prefilter() -> None:
    """`timestamp` is when a record was sent; `status_time` when its status changed (amlobs.status_time).

    A record is sent at or after its status changed, so `timestamp {TimeRange}` (always `> ago(...)`:
    ranges end now) never drops a record whose status is in the range, whether it came live, from a
    replay or from a 30-day backfill; `status_time {TimeRange}` then keeps exactly the range.
    """
    items = {i["name"]: i["content"] for i in workbook_query_items(WORKBOOK)}
    runs = {name for name, content in items.items() if run_telemetry(content["query"])}
    assert runs >= {
        "overview-tiles",
        "runs-over-time",
        "pipeline-durations",
        "queue-over-time",
        "pipeline-runs",
    }
    for name, content in items.items():
        query = content["query"]
        if name in WIDE_PANELS:
            continue
        assert content["timeContextFromParameter"] == "TimeRange", name
        assert PREFILTER.search(query), name
        assert query.count("{TimeRange}") == (2 if name in runs | JUDGED_PANELS else 1), name
        if name in JUDGED_PANELS:
            assert "| where expected_time {TimeRange}" in query, name
        if name in runs:
            assert STATUS_TIME in query and "| where status_time {TimeRange}" in query, name
            assert query.index("{TimeRange}") < query.index(STATUS_TIME) < query.index("where status_time"), (
                name
            )
            assert "bin(timestamp" not in query and "by timestamp" not in query, name
            assert "arg_max(timestamp" not in query and "top 200 by timestamp" not in query, name
        if "bin(" in query:
            assert re.search(r"bin\((status_time|timestamp), \{TimeRange:grain\}\)", query), name
            assert ("bin(status_time" in query) == (name in runs), name
    workspace = next(p for p in workbook_parameters(WORKBOOK) if p["name"] == "Workspace")
    assert PREFILTER.search(workspace["query"]) and "| where status_time {TimeRange}" in workspace["query"]
    assert STATUS_TIME in workspace["query"]


def test_time_ranges_end_now_so_the_portal_s_own_time_filter_never_drops_a_late_record() -> None:
    """A panel bound to the time range is also filtered by the portal on `timestamp`, between the range's
    start and end. A custom range ending in the past would drop every record sent after its end (a
    backfill, a replay): the picker therefore offers only ranges that end now."""
    time_range = next(p for p in workbook_parameters(WORKBOOK) if p["name"] == "TimeRange")
    settings = time_range["typeSettings"]
    assert settings["allowCustom"] is False
    durations = [v["durationMs"] for v in settings["selectableValues"]]
    assert durations == sorted(durations) and max(durations) == 90 * 86_400_000
    assert time_range["value"] == {"durationMs": 86_400_000}


def test_the_steps_of_a_selected_pipeline_run_are_read_over_90_days_whatever_the_range() -> None:
    """A pipeline that finished in the range may have started before it: its first steps too."""
    steps = next(i for i in workbook_query_items(WORKBOOK) if i["name"] == "pipeline-run-steps")["content"]
    assert "timeContextFromParameter" not in steps
    assert steps["timeContext"] == {"durationMs": 90 * 86_400_000}
    assert "{TimeRange" not in steps["query"] and STATUS_TIME.removeprefix("| extend ") in steps["query"]


WORKSPACE_FILTER = "| where '*' in ({Workspace}) or workspace in ({Workspace})"


def test_every_query_of_run_telemetry_uses_the_workspace_parameter(contract: Contract) -> None:
    """Run records and summaries carry amlWorkSpace: every query of them filters by the dropdown.

    The processor-health panels are the deliberate exception (invocations and rejected events need not
    belong to a workspace); they live in their own group, which says so.
    """
    per_workspace = {EVENT_RUN_STATUS_CHANGED, EVENT_PIPELINE_SUMMARY, *AFTER_THE_FACT, *RECONCILER_EVENTS}
    processor_group = next(i for i in WORKBOOK["items"] if i["name"] == "processor-health")
    unfiltered = {i["name"] for i in workbook_items(processor_group["content"]["items"]) if i["type"] == 3}
    assert unfiltered, "the processor-health group holds the processor panels"
    for item in workbook_query_items(WORKBOOK):
        query = item["content"]["query"]
        refs = telemetry_references(expand_workbook_parameters(query, WORKBOOK_PARAMETER_SAMPLES))
        if refs.names & per_workspace:
            assert WORKSPACE_FILTER in query, item["name"]
            assert "| extend workspace = tostring(customDimensions.amlWorkSpace)" in query, item["name"]
        else:
            assert item["name"] in unfiltered, f"{item['name']} ignores the workspace parameter"
            assert "amlWorkSpace" not in query


def test_workspace_dropdown_comes_from_the_data_and_all_expands_to_the_star_the_filter_expects() -> None:
    parameters = {p["name"]: p for p in workbook_parameters(WORKBOOK)}
    assert set(parameters) == {"TimeRange", "Workspace"}
    assert parameters["TimeRange"]["type"] == 4
    workspace = parameters["Workspace"]
    assert workspace["type"] == 2 and workspace["multiSelect"] is True
    assert workspace["quote"] == "'" and workspace["delimiter"] == ","
    assert workspace["typeSettings"]["selectAllValue"] == "*"
    assert "value::all" in workspace["typeSettings"]["additionalResourceOptions"]
    assert workspace["value"] == ["value::all"]
    refs = telemetry_references(expand_workbook_parameters(workspace["query"], WORKBOOK_PARAMETER_SAMPLES))
    assert refs.fields == {"amlWorkSpace", "status_time"}


def test_every_parameter_a_query_uses_is_defined_and_every_defined_one_is_used() -> None:
    defined = {p["name"] for p in workbook_parameters(WORKBOOK)}
    exported = {
        i["content"]["exportParameterName"]
        for i in workbook_query_items(WORKBOOK)
        if "exportParameterName" in i["content"]
    }
    used: set[str] = set()
    for item in workbook_query_items(WORKBOOK):
        used.update(m.group(1) for m in WORKBOOK_PARAMETER.finditer(json.dumps(item["content"])))
        if "conditionalVisibility" in item:
            used.add(item["conditionalVisibility"]["parameterName"])
    assert used <= defined | exported
    assert defined | exported <= used


def test_grid_tile_and_export_columns_exist_in_the_query_results(kusto: dict[str, dict[str, Any]]) -> None:
    for item in workbook_query_items(WORKBOOK):
        content = item["content"]
        result = columns(kusto, f"workbook:{item['name']}")
        referenced = [f["columnMatch"] for f in content.get("gridSettings", {}).get("formatters", [])]
        referenced += [
            v["columnMatch"] for v in content.get("tileSettings", {}).values() if isinstance(v, dict)
        ]
        if "exportFieldName" in content:
            referenced.append(content["exportFieldName"])
        missing = [c for c in referenced if c not in result]
        assert missing == [], f"{item['name']}: {missing} not among {sorted(result)}"
        if content["visualization"] == "timechart":
            assert "datetime" in result.values(), item["name"]


STUDIO_URL = re.compile(
    r"strcat\('https://ml\.azure\.com/runs/', run_id, '\?wsid=/subscriptions/', subscription,"
    r" '/resourcegroups/', resource_group, '/providers/Microsoft\.MachineLearningServices/workspaces/', workspace\)"
)


def test_failures_slowest_steps_and_drill_down_link_each_run_to_aml_studio(
    kusto: dict[str, dict[str, Any]],
) -> None:
    linked = {
        i["name"]: i
        for i in workbook_query_items(WORKBOOK)
        if any(f.get("formatter") == 7 for f in i["content"].get("gridSettings", {}).get("formatters", []))
    }
    assert {"failures", "slowest-steps", "pipeline-runs", "pipeline-run-steps"} <= set(linked)
    for name, item in linked.items():
        query = item["content"]["query"]
        assert STUDIO_URL.search(query), name
        # the URL's parts are the record's own coordinates
        for part in ("run_id = tostring(customDimensions.run_id)", "subscription = tostring(customDimensions.subscriptions)",
                     "resource_group = tostring(customDimensions.resourceGroup)"):  # fmt: skip
            assert part in query, (name, part)
        link = next(f for f in item["content"]["gridSettings"]["formatters"] if f["formatter"] == 7)
        assert link["formatOptions"]["linkTarget"] == "Url"
        assert columns(kusto, f"workbook:{name}")[link["columnMatch"]] == "string"


def test_failures_panel_shows_the_error_code_and_message(kusto: dict[str, dict[str, Any]]) -> None:
    result = columns(kusto, "workbook:failures")
    assert {"Error code", "Error message", "Run", "Studio"} <= set(result)


def test_selecting_a_pipeline_run_shows_its_steps() -> None:
    items = {i["name"]: i for i in workbook_query_items(WORKBOOK)}
    runs, steps = items["pipeline-runs"]["content"], items["pipeline-run-steps"]
    assert runs["exportFieldName"] == "run_id" and runs["exportParameterName"] == "PipelineRunId"
    assert runs["exportDefaultValue"] == ""
    assert steps["conditionalVisibility"] == {
        "parameterName": "PipelineRunId",
        "comparison": "isNotEqualTo",
        "value": "",
    }
    assert (
        "pipeline_run_id == '{PipelineRunId}' or parent_run_id == '{PipelineRunId}'"
        in steps["content"]["query"]
    )
    assert refs_of(runs["query"]).names == {EVENT_PIPELINE_SUMMARY}
    assert refs_of(steps["content"]["query"]).names == {EVENT_RUN_STATUS_CHANGED}


def test_the_drill_down_links_each_pipeline_run_and_each_step_to_its_trace(
    kusto: dict[str, dict[str, Any]],
) -> None:
    # Workbook link actions open Application Insights' details of a row's item: "RequestDetails" /
    # "DependencyDetails" on an itemId column, as Microsoft's own workbooks do (microsoft/Application-
    # Insights-Workbooks, "Workbooks/Azure Logic Apps/.../SingleLALogBasedRunOverview.workbook": itemId with
    # formatter 7, linkTarget RequestDetails; learn.microsoft.com .../visualize/workbooks-link-actions).
    items = {i["name"]: i["content"] for i in workbook_query_items(WORKBOOK)}
    for name, column, table, target in (
        ("pipeline-runs", "Trace", "requests", "RequestDetails"),
        ("pipeline-run-steps", "Span", "dependencies", "DependencyDetails"),
    ):
        content = items[name]
        [link] = [f for f in content["gridSettings"]["formatters"] if f["columnMatch"] == column]
        assert link["formatter"] == 7 and link["formatOptions"]["linkTarget"] == target, name
        assert columns(kusto, f"workbook:{name}")[column] == "string", name
        assert f"| join kind=leftouter ({table}" in content["query"], name
        assert f"{column} = take_any(itemId)" in content["query"], name
        assert "tostring(customDimensions.span_phase) == 'run'" in content["query"], name
    # Steps of nested sub-pipelines are listed under their top-level pipeline run.
    assert "root_run_id == '{PipelineRunId}'" in items["pipeline-run-steps"]["query"]


def refs_of(kql: str) -> References:
    return telemetry_references(expand_workbook_parameters(kql, WORKBOOK_PARAMETER_SAMPLES))


def test_the_panels_the_issue_asks_for_are_there() -> None:
    items = {i["name"]: i["content"] for i in workbook_query_items(WORKBOOK)}
    assert items["runs-over-time"]["visualization"] == "timechart"
    assert "by status, bin(status_time, {TimeRange:grain})" in items["runs-over-time"]["query"]
    for name in ("pipeline-durations", "step-type-durations", "queue-by-target"):
        assert "percentile(" in items[name]["query"] and ", 50)" in items[name]["query"], name
        assert ", 95)" in items[name]["query"], name
    assert "by workspace, pipeline" in items["pipeline-durations"]["query"]
    assert "by step_type" in items["step-type-durations"]["query"]
    assert "by target, compute_target_type" in items["queue-by-target"]["query"]
    assert "top 25 by execution_time_ms desc" in items["slowest-steps"]["query"]


# --------------------------------------------------------------------------------------------------
# Tests: the Bicep modules


def bicep_params(path: Path) -> dict[str, tuple[str, bool]]:
    file = BicepFile.load(path)
    return {name: (file.param_type(name), file.param_default(name) is not None) for name in file.params}


def test_dashboard_module_takes_exactly_the_parameters_main_bicep_passes() -> None:
    assert bicep_params(DASHBOARD_BICEP) == {
        "name": ("string", False),
        "location": ("string", False),
        "tags": ("resourceTags", False),
        "appInsightsId": ("string", False),
    }


def test_alerts_module_takes_the_parameters_main_bicep_passes_and_defaults_the_rest() -> None:
    params = bicep_params(ALERTS_BICEP)
    expected = {
        "location": ("string", False),
        "tags": ("resourceTags", False),
        "resourceToken": ("string", False),
        "appInsightsId": ("string", False),
        "alertEmailReceivers": ("string[]", False),
        "durationRegressionPercent": ("int", True),
        "eventSources": ("eventSource[]", False),
    }
    assert {k: params[k] for k in expected if k in params} == expected
    extra = {k: v for k, v in params.items() if k not in expected}
    assert all(has_default for _, has_default in extra.values()), extra
    file = BicepFile.load(ALERTS_BICEP)
    default = file.param_default("durationRegressionPercent")
    assert default is not None and file.evaluate(default) == 150


def test_workbook_module_loads_the_workbook_and_points_it_at_the_component() -> None:
    file = BicepFile.load(DASHBOARD_BICEP)
    calls = [
        n
        for n in walk(file.root)
        if n.type == "call_expression" and text_of(n).startswith("loadTextContent(")
    ]
    assert len(calls) == 1
    (path_arg,) = named_children(first_child(calls[0], "arguments"))
    assert (DASHBOARD_BICEP.parent / file.evaluate(path_arg)).resolve() == WORKBOOK_PATH
    serialized = next(
        property_value(n)
        for n in walk(file.root)
        if n.type == "object_property" and property_key(n) == "serializedData"
    )
    assert text_of(serialized) == f"replace({text_of(calls[0])}, appInsightsToken, appInsightsId)"
    assert file.evaluate(file.variables["appInsightsToken"]) == APP_INSIGHTS_TOKEN
    # The token appears where the workbook names its default resource, and nowhere else.
    assert WORKBOOK["fallbackResourceIds"] == [APP_INSIGHTS_TOKEN]
    assert WORKBOOK_PATH.read_text(encoding="utf-8").count(APP_INSIGHTS_TOKEN) == 1


def log_rules() -> list[dict[str, Any]]:
    file = BicepFile.load(ALERTS_BICEP)
    rules: list[dict[str, Any]] = file.evaluate(file.variables["logRules"])
    return rules


def test_alert_dimensions_are_string_columns_of_their_queries(kusto: dict[str, dict[str, Any]]) -> None:
    rules = log_rules()
    assert len(rules) == 7
    for rule in rules:
        key = rule["key"].value()
        result = columns(kusto, f"alerts.bicep:{key}")
        for dimension in rule["dimensions"].value():
            name = dimension["name"].value()
            assert result.get(name) == "string", (key, name, result)
            assert dimension["values"].value() == ["*"] and dimension["operator"].value() == "Include"
        assert "timestamp" in result, key


def test_failed_and_slow_pipeline_alerts_fire_once_per_run() -> None:
    rules = {r["key"].value(): r for r in log_rules()}
    for key in ("pipeline-failed", "pipeline-duration-regression", "pipeline-cost-regression"):
        dimensions = [d["name"].value() for d in rules[key]["dimensions"].value()]
        assert "run_id" in dimensions, key
    failed = rules["pipeline-failed"]["query"].value()
    assert "run_type =~ 'azureml.PipelineRun' and isempty(parent_run_id) and status == 'Failed'" in failed
    assert "summarize arg_max(status_time" in failed
    assert "by subscription, resource_group, workspace, run_id" in failed


def test_cost_regression_uses_its_own_factor_and_compares_within_a_currency() -> None:
    query = next(q.kql for q in QUERIES if q.origin == "alerts.bicep:pipeline-cost-regression")
    assert "let factor = 150 / 100.0;" in query
    assert "let min_baseline_runs = 5;" in query
    assert "where estimated_cost > p95_cost * factor" in query
    assert "join kind=inner baseline on workspace, pipeline, currency" in query
    params = bicep_params(ALERTS_BICEP)
    assert params["costRegressionPercent"] == ("int", True)


def test_duration_regression_uses_the_configured_factor() -> None:
    query = next(q.kql for q in QUERIES if q.origin == "alerts.bicep:pipeline-duration-regression")
    assert "let factor = 150 / 100.0;" in query
    assert "let min_baseline_runs = 5;" in query
    assert "where wall_time_ms > p95_ms * factor" in query
    # the baseline is the pipeline's own history: joined per workspace and pipeline
    assert "join kind=inner baseline on workspace, pipeline" in query


KQL_TIMESPAN = re.compile(r"^let window = (\d+)([mhd]);$", re.MULTILINE)
KQL_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def test_run_alerts_judge_the_status_time_within_their_own_window_and_only_live_records() -> None:
    """A record that arrives later than the rule's window after its status changed never fires: the rule's
    window filters on `timestamp`, the query on `status_time` over the same span (`let window`)."""
    rules = {r["key"].value(): r for r in log_rules()}
    for key in ("pipeline-failed", "pipeline-duration-regression", "pipeline-cost-regression"):
        query = rules[key]["query"].value()
        match = KQL_TIMESPAN.search(query)
        assert match is not None, key
        assert int(match[1]) * KQL_UNITS[match[2]] == iso_duration(rules[key]["windowSize"].value()), key
        assert "status_time = coalesce(todatetime(customDimensions.status_time), timestamp)" in query, key
        assert "status_time > ago(window)" in query, key
        assert "record_source !in ('backfill', 'replay')" in query, key
        assert "by subscription, resource_group, workspace, run_id" in query, key  # each run once
        assert "project timestamp = status_time" in query, key
    cost = rules["pipeline-cost-regression"]["query"].value()
    assert "| where status == 'Completed' and status_time <= ago(recent)" in cost  # earlier completions
    assert "| where status_time > ago(recent) and record_source !in ('backfill', 'replay')" in cost
    regression = rules["pipeline-duration-regression"]["query"].value()
    assert "| where status_time <= ago(recent)" in regression  # the baseline: earlier completions
    assert "| where status_time > ago(recent) and record_source !in ('backfill', 'replay')" in regression
