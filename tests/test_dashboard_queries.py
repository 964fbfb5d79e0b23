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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

from amlobs.events import KNOWN_STATUSES
from amlobs.records import RECORD_FIELDS
from amlobs.storage import MemoryDedupeStore, MemoryRejectedEventStore
from amlobs.summary import SUMMARY_FIELDS
from amlobs.telemetry import (
    EVENT_PIPELINE_SUMMARY,
    EVENT_REJECTED,
    EVENT_RUN_STATUS_CHANGED,
    MAYBE_DUPLICATE,
    METRIC_DIMENSIONS,
    METRIC_DURATION,
    METRIC_QUEUE_TIME,
    METRIC_REJECTED,
    AzureMonitorTelemetry,
    run_record_unit,
)
from tests.fakes.ingestion import IngestionServer

REPO = Path(__file__).resolve().parents[1]
WORKBOOK_PATH = REPO / "infra" / "workbook.json"
DASHBOARD_BICEP = REPO / "infra" / "modules" / "dashboard.bicep"
ALERTS_BICEP = REPO / "infra" / "modules" / "alerts.bicep"
DASHBOARD_DOC = REPO / "docs" / "dashboard.md"
KQL_CHECK = REPO / "tests" / "tools" / "kql_check.js"
KUSTO_PACKAGE = REPO / "tests" / "tools" / "node_modules" / "@kusto" / "language-service-next"

APP_INSIGHTS_TYPE = "microsoft.insights/components"
APP_INSIGHTS_TOKEN = "__APP_INSIGHTS_RESOURCE_ID__"

# Classic Application Insights tables, as resource-centric queries (workbook, log alerts) see them.
_COMMON_COLUMNS = (
    "timestamp: datetime, name: string, itemType: string, customDimensions: dynamic, operation_Name: string,"
    " operation_Id: string, operation_ParentId: string, operation_SyntheticSource: string, session_Id: string,"
    " user_Id: string, user_AuthenticatedId: string, user_AccountId: string, application_Version: string,"
    " client_Type: string, client_Model: string, client_OS: string, client_IP: string, client_City: string,"
    " client_StateOrProvince: string, client_CountryOrRegion: string, client_Browser: string,"
    " cloud_RoleName: string, cloud_RoleInstance: string, appId: string, appName: string, iKey: string,"
    " sdkVersion: string, itemId: string"
)
APP_INSIGHTS_TABLES = {
    "customEvents": f"({_COMMON_COLUMNS}, customMeasurements: dynamic, itemCount: int)",
    "customMetrics": f"({_COMMON_COLUMNS}, value: real, valueCount: int, valueSum: real, valueMin: real,"
    " valueMax: real, valueStdDev: real)",
    "requests": f"({_COMMON_COLUMNS}, id: string, source: string, url: string, success: bool,"
    " resultCode: string, duration: real, performanceBucket: string, customMeasurements: dynamic,"
    " itemCount: int)",
}
# Tables this product writes to: the custom telemetry, and the Functions host's own requests.
PRODUCT_TABLES = frozenset(APP_INSIGHTS_TABLES)
ALL_AI_TABLES = PRODUCT_TABLES | {
    "traces",
    "exceptions",
    "dependencies",
    "pageViews",
    "browserTimings",
    "availabilityResults",
    "performanceCounters",
}

# What a workbook parameter expands to, for parsing (multi-select dropdowns expand to quoted lists).
WORKBOOK_PARAMETER_SAMPLES = {
    ("TimeRange", None): "> ago(1d)",
    ("TimeRange", "grain"): "1h",
    ("Workspace", None): "'ws-a','ws-b'",
    ("PipelineRunId", None): "pipeline-run-1",
}
_WORKBOOK_PARAMETER = re.compile(r"\{([A-Za-z_]\w*)(?::([A-Za-z_]\w*))?\}")


@dataclass(frozen=True)
class Query:
    origin: str  # "workbook:<item>", "workbook:parameter <name>", "alerts.bicep:<rule key>"
    kql: str  # as written (workbook parameters not expanded)


# --------------------------------------------------------------------------------------------------
# Extraction: the workbook


def workbook_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        if item.get("type") == 12:  # group
            yield from workbook_items(item["content"].get("items", []))


def workbook_query_items(workbook: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [i for i in workbook_items(workbook["items"]) if i.get("type") == 3]


def workbook_parameters(workbook: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for item in workbook_items(workbook["items"]):
        if item.get("type") == 9:
            found.extend(item["content"].get("parameters", []))
    return found


def workbook_queries(workbook: Mapping[str, Any]) -> list[Query]:
    queries = [
        Query(f"workbook:{i['name']}", i["content"].get("query", "")) for i in workbook_query_items(workbook)
    ]
    queries += [
        Query(f"workbook:parameter {p['name']}", p["query"])
        for p in workbook_parameters(workbook)
        if p.get("query")
    ]
    return queries


def expand_workbook_parameters(kql: str, samples: Mapping[tuple[str, str | None], str]) -> str:
    def sample(match: re.Match[str]) -> str:
        key = (match.group(1), match.group(2))
        if key not in samples:
            raise KeyError(f"{match.group(0)} is not a parameter this workbook defines")
        return samples[key]

    return _WORKBOOK_PARAMETER.sub(sample, kql)


# --------------------------------------------------------------------------------------------------
# Extraction: Bicep, through the tree-sitter grammar (the one bicep-typecheck uses)


class Unresolvable(Exception):
    pass


_BICEP_ESCAPES = {"\\\\": "\\", "\\'": "'", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


def bicep_tree(path: Path) -> Node:
    parser = Parser(Language(tree_sitter_bicep.language()))
    tree = parser.parse(path.read_bytes())
    assert not tree.root_node.has_error, f"{path.name} does not parse"
    return tree.root_node


def text_of(node: Node) -> str:
    return (node.text or b"").decode()


def bicep_string(node: Node) -> str:
    raw = text_of(node)
    if raw.startswith("'''"):
        # Multi-line strings are verbatim; Bicep drops a line break right after the opening quotes.
        body = raw[3:-3]
        return body[1:] if body.startswith("\n") else body.removeprefix("\r\n")
    parts = []
    for child in node.children:
        if child.type == "string_content":
            parts.append(text_of(child))
        elif child.type == "escape_sequence":
            parts.append(_BICEP_ESCAPES.get(text_of(child), text_of(child)))
        elif child.type == "interpolation":
            raise Unresolvable(f"interpolated string {raw[:60]!r}")
    return "".join(parts)


@dataclass
class BicepFile:
    root: Node
    params: dict[str, Node]  # parameter_declaration nodes
    variables: dict[str, Node]  # value expression nodes

    @classmethod
    def load(cls, path: Path) -> BicepFile:
        root = bicep_tree(path)
        params: dict[str, Node] = {}
        variables: dict[str, Node] = {}
        for node in root.children:
            if node.type == "parameter_declaration":
                params[text_of(_first(node, "identifier"))] = node
            elif node.type == "variable_declaration":
                name = _first(node, "identifier")
                variables[text_of(name)] = _after_equals(node)
        return cls(root, params, variables)

    def param_default(self, name: str) -> Node | None:
        node = self.params[name]
        return _after_equals(node) if any(c.type == "=" for c in node.children) else None

    def param_type(self, name: str) -> str:
        type_node = _first(self.params[name], "type")
        return text_of(type_node)

    def evaluate(self, node: Node) -> Any:
        """The value of a literal expression: strings, numbers, booleans, arrays, objects, variables,
        parameter defaults, and the few functions the module uses to build its queries."""
        kind = node.type
        if kind == "string":
            return bicep_string(node)
        if kind == "number":
            return int(text_of(node))
        if kind == "boolean":
            return text_of(node) == "true"
        if kind == "parenthesized_expression":
            return self.evaluate(_named(node)[0])
        if kind == "identifier":
            name = text_of(node)
            if name in self.variables:
                return self.evaluate(self.variables[name])
            if name in self.params and (default := self.param_default(name)) is not None:
                return self.evaluate(default)
            raise Unresolvable(f"{name} has no value before deployment")
        if kind == "array":
            return [self.evaluate(child) for child in _named(node)]
        if kind == "object":
            return {
                _property_key(prop): _Lazy(self, _property_value(prop))
                for prop in node.children
                if prop.type == "object_property"
            }
        if kind == "call_expression":
            function = text_of(_first(node, "identifier"))
            args = _named(_first(node, "arguments"))
            if function == "replace" and len(args) == 3:
                return str(self.evaluate(args[0])).replace(
                    str(self.evaluate(args[1])), str(self.evaluate(args[2]))
                )
            if function == "string" and len(args) == 1:
                return str(self.evaluate(args[0]))
        raise Unresolvable(f"{kind}: {text_of(node)[:80]!r}")


@dataclass
class _Lazy:
    """An object property value, evaluated only when read (siblings may be deploy-time expressions)."""

    file: BicepFile
    node: Node

    def value(self) -> Any:
        return self.file.evaluate(self.node)


def _first(node: Node, kind: str) -> Node:
    found = next((c for c in node.children if c.type == kind), None)
    assert found is not None, f"no {kind} in {text_of(node)[:80]!r}"
    return found


def _named(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type not in ("comment", "decorators", "decorator")]


def _after_equals(node: Node) -> Node:
    children = node.children
    index = next(i for i, c in enumerate(children) if c.type == "=")
    return next(c for c in children[index + 1 :] if c.is_named and c.type != "comment")


def _property_key(prop: Node) -> str:
    key = prop.named_children[0]
    return bicep_string(key) if key.type == "string" else text_of(key)


def _property_value(prop: Node) -> Node:
    return [c for c in prop.named_children if c.type != "comment"][-1]


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _loop_variables(node: Node) -> set[str]:
    """Names bound by the `for` expressions around node: `for x in ...` and `for (x, i) in ...`."""
    names: set[str] = set()
    parent = node.parent
    while parent is not None:
        if parent.type == "for_statement":
            keyword = next(i for i, c in enumerate(parent.children) if c.type == "for")
            bound = parent.children[keyword + 1]
            if bound.type == "identifier":
                names.add(text_of(bound))
            else:
                names.update(
                    text_of(c) for c in _walk(bound) if c.type in ("loop_variable", "loop_enumerator")
                )
        parent = parent.parent
    return names


def bicep_queries(path: Path) -> list[Query]:
    """Every `query:` property of the file, resolved to its text.

    A `query:` that reads a loop variable (`rule.query` in a resource loop) is skipped: the loop's
    source array is itself made of `query:` properties, which are extracted where they are written.
    """
    file = BicepFile.load(path)
    queries: list[Query] = []
    for node in _walk(file.root):
        if node.type != "object_property" or _property_key(node) != "query":
            continue
        value = _property_value(node)
        if value.type == "member_expression" and text_of(value).split(".")[0] in _loop_variables(node):
            continue
        siblings = {
            _property_key(p): p
            for p in (node.parent.children if node.parent else [])
            if p.type == "object_property"
        }
        key = siblings.get("key")
        origin = (
            str(file.evaluate(_property_value(key))) if key is not None else f"line {node.start_point[0] + 1}"
        )
        queries.append(Query(f"{path.name}:{origin}", str(file.evaluate(value))))
    return queries


def markdown_queries(path: Path) -> list[Query]:
    """The ```kusto blocks of a page (what readers paste into Logs)."""
    blocks = re.findall(
        r"^```kusto\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL
    )
    return [Query(f"{path.relative_to(REPO).as_posix()}:{i + 1}", block) for i, block in enumerate(blocks)]


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


def contract_problems(refs: References, contract: Contract) -> list[str]:
    problems = list(refs.problems)
    for table in sorted(refs.tables - PRODUCT_TABLES):
        problems.append(f"table {table} holds nothing this product writes")
    sources: dict[str, frozenset[str]] = {}
    for name in sorted(refs.names):
        keys = contract.events.get(name, contract.metrics.get(name))
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
        events: dict[str, set[str]] = {}
        for event in server.events():
            events.setdefault(event["name"], set()).update(event.get("properties", {}))
        metrics: dict[str, set[str]] = {}
        for name in (METRIC_DURATION, METRIC_QUEUE_TIME, METRIC_REJECTED):
            for point in server.metrics(name):
                metrics.setdefault(name, set()).update(point["properties"])
        yield {
            "events": {k: frozenset(v) for k, v in events.items()},
            "metrics": {k: frozenset(v) for k, v in metrics.items()},
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
            # No constant lists these: they are whatever the processor's reject path attaches.
            EVENT_REJECTED: wire["events"][EVENT_REJECTED],
        },
        metrics=wire["metrics"],
        statuses=frozenset(KNOWN_STATUSES),
        # Indexed once per process, as the host does (azure-functions refuses a second indexing).
        functions=frozenset(indexed_functions()),
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
    workbook_queries(WORKBOOK) + bicep_queries(ALERTS_BICEP) + markdown_queries(DASHBOARD_DOC)
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
    assert origins == {"workbook", "alerts.bicep", "docs/dashboard.md"}
    assert len([q for q in QUERIES if q.origin.startswith("docs/")]) >= 5
    assert len([q for q in QUERIES if q.origin.startswith("workbook:")]) >= 10
    assert {q.origin for q in QUERIES if q.origin.startswith("alerts.bicep:")} == {
        "alerts.bicep:pipeline-failed",
        "alerts.bicep:pipeline-duration-regression",
        "alerts.bicep:processor-failures",
        "alerts.bicep:events-rejected",
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
    assert wire["metrics"][METRIC_DURATION] == frozenset(METRIC_DIMENSIONS)
    assert wire["metrics"][METRIC_QUEUE_TIME] == frozenset(METRIC_DIMENSIONS)
    assert wire["metrics"][METRIC_REJECTED] == frozenset({"reason"})


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


def test_every_query_uses_the_time_range() -> None:
    for item in workbook_query_items(WORKBOOK):
        assert item["content"]["timeContextFromParameter"] == "TimeRange", item["name"]
        assert re.search(r"\|\s*where timestamp \{TimeRange\}", item["content"]["query"]), item["name"]
    workspace = next(p for p in workbook_parameters(WORKBOOK) if p["name"] == "Workspace")
    assert "{TimeRange}" in workspace["query"]


WORKSPACE_FILTER = "| where '*' in ({Workspace}) or workspace in ({Workspace})"


def test_every_query_of_run_telemetry_uses_the_workspace_parameter(contract: Contract) -> None:
    """Run records and summaries carry amlWorkSpace: every query of them filters by the dropdown.

    The processor-health panels are the deliberate exception (invocations and rejected events need not
    belong to a workspace); they live in their own group, which says so.
    """
    per_workspace = {EVENT_RUN_STATUS_CHANGED, EVENT_PIPELINE_SUMMARY}
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
    assert refs.fields == {"amlWorkSpace"}


def test_every_parameter_a_query_uses_is_defined_and_every_defined_one_is_used() -> None:
    defined = {p["name"] for p in workbook_parameters(WORKBOOK)}
    exported = {
        i["content"]["exportParameterName"]
        for i in workbook_query_items(WORKBOOK)
        if "exportParameterName" in i["content"]
    }
    used: set[str] = set()
    for item in workbook_query_items(WORKBOOK):
        used.update(m.group(1) for m in _WORKBOOK_PARAMETER.finditer(json.dumps(item["content"])))
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


def refs_of(kql: str) -> References:
    return telemetry_references(expand_workbook_parameters(kql, WORKBOOK_PARAMETER_SAMPLES))


def test_the_panels_the_issue_asks_for_are_there() -> None:
    items = {i["name"]: i["content"] for i in workbook_query_items(WORKBOOK)}
    assert items["runs-over-time"]["visualization"] == "timechart"
    assert "by status, bin(timestamp, {TimeRange:grain})" in items["runs-over-time"]["query"]
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
        "tags": ("object", False),
        "appInsightsId": ("string", False),
    }


def test_alerts_module_takes_the_parameters_main_bicep_passes_and_defaults_the_rest() -> None:
    params = bicep_params(ALERTS_BICEP)
    expected = {
        "location": ("string", False),
        "tags": ("object", False),
        "resourceToken": ("string", False),
        "appInsightsId": ("string", False),
        "alertEmailReceivers": ("array", False),
        "durationRegressionPercent": ("int", True),
        "systemTopicIds": ("array", False),
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
        for n in _walk(file.root)
        if n.type == "call_expression" and text_of(n).startswith("loadTextContent(")
    ]
    assert len(calls) == 1
    (path_arg,) = _named(_first(calls[0], "arguments"))
    assert (DASHBOARD_BICEP.parent / file.evaluate(path_arg)).resolve() == WORKBOOK_PATH
    serialized = next(
        _property_value(n)
        for n in _walk(file.root)
        if n.type == "object_property" and _property_key(n) == "serializedData"
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
    assert len(rules) == 4
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
    for key in ("pipeline-failed", "pipeline-duration-regression"):
        dimensions = [d["name"].value() for d in rules[key]["dimensions"].value()]
        assert "run_id" in dimensions, key
    failed = rules["pipeline-failed"]["query"].value()
    assert "run_type =~ 'azureml.PipelineRun' and status == 'Failed'" in failed
    assert "summarize arg_max(timestamp" in failed and "by run_id" in failed


def test_duration_regression_uses_the_configured_factor() -> None:
    query = next(q.kql for q in QUERIES if q.origin == "alerts.bicep:pipeline-duration-regression")
    assert "let factor = 150 / 100.0;" in query
    assert "let min_baseline_runs = 5;" in query
    assert "where wall_time_ms > p95_ms * factor" in query
    # the baseline is the pipeline's own history: joined per workspace and pipeline
    assert "join kind=inner baseline on workspace, pipeline" in query
