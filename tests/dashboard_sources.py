"""Where the dashboard's KQL lives, and how to get it out: the workbook's query items and parameters,
the ``query:`` properties of the alert rules' Bicep (through its syntax tree, no Bicep CLI needed), and
the ```kusto blocks of the docs. Shared by the static checks (tests/test_dashboard_queries.py) and the
executed ones (tests/integration/test_dashboard_history.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

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
    "dependencies": f"({_COMMON_COLUMNS}, id: string, target: string, type: string, data: string,"
    " success: bool, resultCode: string, duration: real, performanceBucket: string,"
    " customMeasurements: dynamic, itemCount: int)",
}
# Tables this product writes to: the custom telemetry, the pipeline traces (requests: root runs,
# dependencies: the other runs) and the Functions host's own requests.
PRODUCT_TABLES = frozenset(APP_INSIGHTS_TABLES)
SPAN_TABLES = frozenset({"requests", "dependencies"})
ALL_AI_TABLES = PRODUCT_TABLES | {
    "traces",
    "exceptions",
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
WORKBOOK_PARAMETER = re.compile(r"\{([A-Za-z_]\w*)(?::([A-Za-z_]\w*))?\}")


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

    return WORKBOOK_PARAMETER.sub(sample, kql)


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
                params[text_of(first_child(node, "identifier"))] = node
            elif node.type == "variable_declaration":
                name = first_child(node, "identifier")
                variables[text_of(name)] = after_equals(node)
        return cls(root, params, variables)

    def param_default(self, name: str) -> Node | None:
        node = self.params[name]
        return after_equals(node) if any(c.type == "=" for c in node.children) else None

    def param_type(self, name: str) -> str:
        type_node = first_child(self.params[name], "type")
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
            return self.evaluate(named_children(node)[0])
        if kind == "identifier":
            name = text_of(node)
            if name in self.variables:
                return self.evaluate(self.variables[name])
            if name in self.params and (default := self.param_default(name)) is not None:
                return self.evaluate(default)
            raise Unresolvable(f"{name} has no value before deployment")
        if kind == "array":
            return [self.evaluate(child) for child in named_children(node)]
        if kind == "object":
            return {
                property_key(prop): _Lazy(self, property_value(prop))
                for prop in node.children
                if prop.type == "object_property"
            }
        if kind == "call_expression":
            function = text_of(first_child(node, "identifier"))
            args = named_children(first_child(node, "arguments"))
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


def first_child(node: Node, kind: str) -> Node:
    found = next((c for c in node.children if c.type == kind), None)
    assert found is not None, f"no {kind} in {text_of(node)[:80]!r}"
    return found


def named_children(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type not in ("comment", "decorators", "decorator")]


def after_equals(node: Node) -> Node:
    children = node.children
    index = next(i for i, c in enumerate(children) if c.type == "=")
    return next(c for c in children[index + 1 :] if c.is_named and c.type != "comment")


def property_key(prop: Node) -> str:
    key = prop.named_children[0]
    return bicep_string(key) if key.type == "string" else text_of(key)


def property_value(prop: Node) -> Node:
    return [c for c in prop.named_children if c.type != "comment"][-1]


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def loop_variables(node: Node) -> set[str]:
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
                    text_of(c) for c in walk(bound) if c.type in ("loop_variable", "loop_enumerator")
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
    for node in walk(file.root):
        if node.type != "object_property" or property_key(node) != "query":
            continue
        value = property_value(node)
        if value.type == "member_expression" and text_of(value).split(".")[0] in loop_variables(node):
            continue
        siblings = {
            property_key(p): p
            for p in (node.parent.children if node.parent else [])
            if p.type == "object_property"
        }
        key = siblings.get("key")
        origin = (
            str(file.evaluate(property_value(key))) if key is not None else f"line {node.start_point[0] + 1}"
        )
        queries.append(Query(f"{path.name}:{origin}", str(file.evaluate(value))))
    return queries


def markdown_queries(path: Path) -> list[Query]:
    """The ```kusto blocks of a page (what readers paste into Logs)."""
    blocks = re.findall(
        r"^```kusto\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL
    )
    return [Query(f"{path.relative_to(REPO).as_posix()}:{i + 1}", block) for i, block in enumerate(blocks)]


def load_workbook() -> dict[str, Any]:
    workbook: dict[str, Any] = json.loads(WORKBOOK_PATH.read_text(encoding="utf-8"))
    return workbook
