"""The infrastructure's promises, proven by the real Bicep compiler and Resource Manager's template engine.

Three layers, each from the official Bicep CLI (PATH or $BICEP; CI takes it from ../shared/bin):

1. The gate: `bicep build` and `bicep lint` of infra/ report nothing with every core linter rule on
   (infra/bicepconfig.json), and `bicep format` changes nothing.
2. The what-if: `bicep snapshot --mode validate` of every committed scenario (infra/scenarios/), so a
   change to infra/ that changes a predicted resource fails until its snapshot is regenerated
   (`python -m tests.bicep_snapshots`) and the diff reviewed.
3. The promises a platform engineer relies on, asserted on the resources Resource Manager predicts,
   for the committed scenarios and for scenarios written here on the fly: every name in rg-<env>
   known before deployment, one system topic per workspace, event subscriptions only when enabled and
   to the function the code defines, one read-only custom role per observed workspace, only
   allow-listed roles on the narrowest scope, no keys, identity-based storage, a Key Vault reference
   for the connection string, nothing outside rg-<env> once detached.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from amlobs import events, settings
from amlobs.aml_discovery import WorkspaceEndpoints
from amlobs.notify import NotifySettings
from tests import bicep_snapshots as snapshots
from tests.tools_on_path import find_tool

ROOT = snapshots.ROOT
INFRA = snapshots.INFRA
MAIN = snapshots.MAIN
BICEPCONFIG = INFRA / "bicepconfig.json"
SUB = snapshots.SUBSCRIPTION_ID

# Every built-in role the template may grant, with the reason and the one kind of resource it may be
# granted on. A role assignment with a role outside this list, or on a broader scope, fails the suite:
# widening access has to be a reviewed change here.
ALLOWED_BUILTIN_ROLES: dict[str, tuple[str, str]] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": (
        "Storage Blob Data Owner: Functions host blobs, deployment package, rejected events",
        "Microsoft.Storage/storageAccounts",
    ),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": (
        "Storage Queue Data Contributor: Functions host queues (identity-based AzureWebJobsStorage)",
        "Microsoft.Storage/storageAccounts",
    ),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": (
        "Storage Table Data Contributor: dedupe table processedevents",
        "Microsoft.Storage/storageAccounts",
    ),
    "3913510d-42f4-4e42-8a64-420c390055eb": (
        "Monitoring Metrics Publisher: Entra ID telemetry ingestion (local auth off)",
        "Microsoft.Insights/components",
    ),
    "4633458b-17de-408a-b874-0445c86b69e6": (
        "Key Vault Secrets User: resolve the App Insights connection string reference (that one secret)",
        "Microsoft.KeyVault/vaults/secrets",
    ),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": (
        "Storage Blob Data Contributor: a system topic writes dead letters (that one container)",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
    ),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": (
        "Reader: log search alert rules query App Insights as their own identity (alerts.bicep)",
        "Microsoft.Insights/components",
    ),
}
# Never, on any scope (built-in role ids are the same in every cloud).
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
}
AML_READ_ACTIONS = [
    "Microsoft.MachineLearningServices/workspaces/read",
    "Microsoft.MachineLearningServices/workspaces/experiments/read",
    "Microsoft.MachineLearningServices/workspaces/experiments/runs/read",
    # The estimated cost reads a cluster's VM size and priority (GET .../computes/{name}); nothing more.
    "Microsoft.MachineLearningServices/workspaces/computes/read",
    # The reconciler judges each schedule's fire times (GET .../schedules); read only.
    "Microsoft.MachineLearningServices/workspaces/schedules/read",
    # Per-run GPU/CPU use from the workspace's platform metrics (amlobs.resource_use); nothing broader.
    "Microsoft.Insights/metrics/read",
]
# App settings Flex Consumption rejects or ignores (functions-app-settings, "Flex Consumption plan
# deprecations"): runtime and scale live in functionAppConfig there.
FLEX_FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "AzureWebJobsStorage",  # a connection string: the identity-based __ form is used instead
}
# siteConfig properties Resource Manager refuses on a Flex Consumption site (error 51021).
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsState",
    "linuxFxVersion",
    "alwaysOn",
    "use32BitWorkerProcess",
    "netFrameworkVersion",
    "preWarmedInstanceCount",
    "functionAppScaleLimit",
    "functionsRuntimeScaleMonitoringEnabled",
}
CREDENTIAL_SETTING = re.compile(
    r"CONNECTION_?STRING|SECRET|PASSWORD|ACCOUNT_?KEY|_KEY$|SAS|TOKEN", re.IGNORECASE
)
KEY_MARKERS = ("AccountKey=", "SharedAccessKey", "SharedAccessSignature", "InstrumentationKey=")
# The linter rules the committed bicepconfig.json must treat as errors (Azure/bicep
# src/Bicep.Core/Analyzers/Linter/Rules: the rules of LinterRuleCategory.Security).
SECURITY_RULES = {
    "adminusername-should-not-be-literal",
    "outputs-should-not-contain-secrets",
    "protect-commandtoexecute-secrets",
    "secure-parameter-default",
    "secure-params-in-nested-deploy",
    "secure-params-in-parameters-file",
    "secure-secrets-in-params",
    "use-secure-value-for-secure-inputs",
}
# Every `#disable-next-line` in infra/, with its reason (the comment above each says it at length).
# Anything else suppressed fails the suite.
ALLOWED_SUPPRESSIONS = {
    ("main.bicep", "what-if-short-circuiting"): "a workspace outside rg-<env> keeps the principal id in its "
    "role assignment's name, so an assignment orphaned on a customer's workspace never blocks the next identity",
    **{
        (
            module,
            "use-recent-api-versions",
        ): "Microsoft.Insights/diagnosticSettings has no stable API version "
        "but 2016-09-01, which cannot send to a Log Analytics workspace (bicep-types-az: its name must be "
        "'service'); 2021-05-01-preview is the newest"
        for module in ("modules/storage.bicep", "modules/keyvault.bicep", "modules/system-topic.bicep")
    },
    ("modules/dashboard.bicep", "use-resource-id-functions"): "toLower() of a resource id is still that id; "
    "the workbook service stores sourceId in lower case (Azure/arm-template-whatif#57)",
}


def _bicep() -> str:
    return find_tool(
        "bicep",
        env_var="BICEP",
        how_to_install="the Bicep compiler checks, what-if snapshots and infrastructure promises did not run "
        "(install it with `az bicep install` or from the Bicep releases; CI takes it from ../shared/bin)",
    )


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, check=False, cwd=cwd)


def _diagnostics(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(r": (Error|Warning|Info) [\w-]+:", line)]


# ---- 1. the compiler gate ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def compiled() -> dict[str, Any]:
    """infra/main.bicep compiled by `bicep build` (the ARM template azd deploys)."""
    result = _run(_bicep(), "build", str(MAIN), "--stdout")
    assert result.returncode == 0, result.stderr
    assert not _diagnostics(result.stderr), result.stderr
    template: dict[str, Any] = json.loads(result.stdout)
    return template


def test_bicep_build_compiles_main_and_every_module_with_no_diagnostic(compiled: dict[str, Any]) -> None:
    # The build itself is the fixture: it fails on any error, warning or info line.
    assert compiled["$schema"].endswith("subscriptionDeploymentTemplate.json#")
    assert set(compiled["resources"]) >= {
        "rg",
        "identity",
        "storage",
        "functionApp",
        "systemTopics",
        "alerts",
    }


def test_bicep_lint_reports_nothing_for_any_file() -> None:
    result = _run(_bicep(), "lint", "--pattern", f"{INFRA.as_posix()}/**/*.bicep")
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


def test_bicep_format_changes_nothing(tmp_path: Path) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    result = _run(_bicep(), "format", "--pattern", f"{copy.as_posix()}/**/*.bicep")
    assert result.returncode == 0, result.stdout + result.stderr
    rewritten = [
        str(f.relative_to(INFRA))
        for f in sorted(INFRA.rglob("*.bicep"))
        if (copy / f.relative_to(INFRA)).read_bytes() != f.read_bytes()
    ]
    assert not rewritten, f"`bicep format` rewrites {rewritten}: run it on these files"


def test_every_core_linter_rule_is_on_and_every_security_rule_is_an_error() -> None:
    config = json.loads(BICEPCONFIG.read_text(encoding="utf-8"))
    core = config["analyzers"]["core"]
    assert core["enabled"] is True
    rules = core["rules"]
    assert len(rules) >= 53, "the 53 core rules of Bicep 0.49 (bicepconfig.schema.json)"
    assert {name for name, rule in rules.items() if rule["level"] not in ("warning", "error")} == set()
    assert {name for name in SECURITY_RULES if rules[name]["level"] != "error"} == set()
    # The rules this change was made for are really on (they default to off).
    for name in ("what-if-short-circuiting", "use-recent-api-versions", "use-user-defined-types"):
        assert rules[name]["level"] in ("warning", "error"), name


def test_the_linter_with_this_config_reports_what_it_is_asked_to(tmp_path: Path) -> None:
    """The gate can fail: a module fed a run-time value as a name, an unsuppressed old API version
    and a secret in an output are each reported, the secret as an error."""
    (tmp_path / "bicepconfig.json").write_text(BICEPCONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "child.bicep").write_text(
        "@description('Name.')\nparam name string\n\n"
        "resource account 'Microsoft.Storage/storageAccounts@2019-06-01' = {\n"
        "  name: name\n  location: resourceGroup().location\n  kind: 'StorageV2'\n"
        "  sku: {\n    name: 'Standard_LRS'\n  }\n}\n\n"
        "@description('Keys.')\noutput keys string = account.listKeys().keys[0].value\n",
        encoding="utf-8",
    )
    (tmp_path / "parent.bicep").write_text(
        "resource first 'Microsoft.Storage/storageAccounts@2019-06-01' existing = {\n  name: 'a'\n}\n\n"
        "module child 'child.bicep' = {\n  params: {\n    name: first.properties.primaryEndpoints.blob\n  }\n}\n",
        encoding="utf-8",
    )
    result = _run(_bicep(), "lint", str(tmp_path / "parent.bicep"))
    output = result.stdout + result.stderr
    assert re.search(r"Warning what-if-short-circuiting:", output), output
    assert re.search(r"Warning use-recent-api-versions:", output), output
    assert re.search(r"Error outputs-should-not-contain-secrets:", output), output


def test_every_suppressed_rule_is_one_reviewed_here() -> None:
    found = {}
    for file in sorted(INFRA.rglob("*.bicep")):
        for line in file.read_text(encoding="utf-8").splitlines():
            if match := re.search(r"#disable-next-line\s+(.+)$", line):
                for rule in match.group(1).split():
                    found[(file.relative_to(INFRA).as_posix(), rule)] = line.strip()
    assert set(found) == set(ALLOWED_SUPPRESSIONS), found


# ---- the compiled template: contracts with the code ---------------------------------------------


def _allowed_values(template: dict[str, Any], parameter: str) -> list[str]:
    items = template["parameters"][parameter]["items"]
    definition = template["definitions"][items["$ref"].split("/")[-1]] if "$ref" in items else items
    values: list[str] = definition["allowedValues"]
    return values


def test_event_types_are_exactly_what_the_code_accepts(compiled: dict[str, Any]) -> None:
    assert set(_allowed_values(compiled, "includedEventTypes")) == set(events.SUPPORTED_EVENT_TYPES)
    assert compiled["parameters"]["includedEventTypes"]["defaultValue"] == list(events.SUPPORTED_EVENT_TYPES)


def test_run_statuses_are_the_ones_the_code_knows_and_all_are_delivered_by_default(
    compiled: dict[str, Any],
) -> None:
    # A union type: the compiler lists its members sorted.
    assert sorted(_allowed_values(compiled, "runStatuses")) == sorted(events.KNOWN_STATUSES)
    assert compiled["variables"]["knownRunStatuses"] == list(events.KNOWN_STATUSES)
    # The default delivers every status: every status change becomes a record.
    assert compiled["parameters"]["runStatuses"]["defaultValue"] == list(events.KNOWN_STATUSES)


def test_the_snapshot_tool_knows_main_bicep_defaults(compiled: dict[str, Any]) -> None:
    for name, value in snapshots.PARAMETER_DEFAULTS.items():
        assert compiled["parameters"][name]["defaultValue"] == value, name


def test_python_version_defaults_to_the_version_the_tests_run_on(compiled: dict[str, Any]) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert compiled["parameters"]["pythonVersion"]["defaultValue"] == running
    module = compiled["resources"]["functionApp"]["properties"]
    assert module["parameters"]["pythonVersion"] == {"value": "[parameters('pythonVersion')]"}
    assert module["template"]["parameters"]["pythonVersion"]["defaultValue"] == running


# The Python versions Azure Functions supports on Flex Consumption today, with the end of support
# Microsoft gives (learn.microsoft.com/azure/azure-functions/supported-languages, Python pivot): 3.11
# October 2027, 3.12 October 2028, 3.13 October 2029, 3.14 April 2029. 3.10's ended in October 2026.
FLEX_PYTHON_VERSIONS = ["3.11", "3.12", "3.13", "3.14"]


def test_python_versions_are_the_ones_flex_consumption_supports(compiled: dict[str, Any]) -> None:
    assert compiled["parameters"]["pythonVersion"]["allowedValues"] == FLEX_PYTHON_VERSIONS
    module = compiled["resources"]["functionApp"]["properties"]["template"]["parameters"]["pythonVersion"]
    assert module["allowedValues"] == FLEX_PYTHON_VERSIONS
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in FLEX_PYTHON_VERSIONS


def test_flex_consumption_maximum_instance_count_is_within_what_the_platform_accepts(
    compiled: dict[str, Any],
) -> None:
    # learn.microsoft.com/azure/azure-functions/flex-consumption-plan ("Considerations"): 40 to 1000.
    declared = compiled["resources"]["functionApp"]["properties"]["template"]["parameters"]
    assert declared["maximumInstanceCount"]["minValue"] >= 40
    assert declared["maximumInstanceCount"]["maxValue"] <= 1000


def test_the_demo_workspaces_custom_role_waits_for_its_resource_group(compiled: dict[str, Any]) -> None:
    """The demo workspace's role is assignable at rg-<env>, which this deployment creates."""
    assert "rg" in compiled["resources"]["readerRoles"]["dependsOn"]


def test_parameters_file_maps_every_required_parameter_to_azd_env_values(compiled: dict[str, Any]) -> None:
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = compiled["parameters"]
    assert set(mapped) <= set(declared)
    required = {name for name, p in declared.items() if "defaultValue" not in p and not p.get("nullable")}
    assert required <= set(mapped)
    env_names = {}
    for name, entry in mapped.items():
        match = re.fullmatch(r"\$\{([A-Z_]+)(=[^}]*)?\}", entry["value"])
        assert match, (name, entry)
        env_names[name] = match.group(1)
    assert env_names["amlWorkspaceIds"] == "AML_WORKSPACE_IDS"
    assert env_names["enableEventSubscription"] == "ENABLE_EVENT_SUBSCRIPTION"
    assert env_names["detachObservedWorkspaces"] == "AML_OBS_DETACH"
    assert env_names["alertEmails"] == "ALERT_EMAILS"
    assert mapped["enableEventSubscription"]["value"] == "${ENABLE_EVENT_SUBSCRIPTION=false}"


def test_outputs_are_azd_env_values_and_hold_no_secret(compiled: dict[str, Any]) -> None:
    outputs = compiled["outputs"]
    for name in (
        "AZURE_FUNCTION_APP_NAME",
        "APPLICATIONINSIGHTS_NAME",
        "AZURE_KEY_VAULT_NAME",
        "AZURE_RESOURCE_GROUP",
        "AZURE_LOCATION",
        "AZURE_STORAGE_ACCOUNT_NAME",
        # read by the teardown hooks
        "AML_OBSERVED_WORKSPACE_IDS",
        "AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS",
        "AML_OBS_READER_ROLE_DEFINITION_IDS",
        "AML_OBS_FOREIGN_RESOURCE_GROUP_IDS",
        # read by scripts/amlobs.sh (replay, backfill)
        "AML_OBS_COST_CURRENCY",
        "AML_OBS_PRICES_ENDPOINT",
    ):
        assert name in outputs
    for name, output in outputs.items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
        assert not re.search(r"SECRET|PASSWORD|CONNECTION_STRING|_KEY$", name), name
        assert output["type"] == "string", name
        assert (
            "connectionstring" not in output["value"].lower() and "secreturi" not in output["value"].lower()
        )


def _templates(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield template
    resources = template.get("resources", {})
    for resource in resources.values() if isinstance(resources, dict) else resources:
        nested = resource.get("properties", {}).get("template")
        if isinstance(nested, dict):
            yield from _templates(nested)


def _parameter_uses(node: Any, name: str, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where a template expression reads ``parameters('<name>')``: the path of keys leading to it."""
    if isinstance(node, dict):
        return [use for key, value in node.items() for use in _parameter_uses(value, name, (*path, str(key)))]
    if isinstance(node, list):
        return [use for item in node for use in _parameter_uses(item, name, path)]
    return [path] if isinstance(node, str) and f"parameters('{name}')" in node else []


def test_no_key_listing_functions_no_keyed_connection_strings_no_secure_parameters(
    compiled: dict[str, Any],
) -> None:
    text = json.dumps(compiled)
    assert not re.findall(r"\blist[A-Z]\w*\(", text), "a list*() call hands out keys"
    for marker in KEY_MARKERS:
        assert marker not in text, marker
    for template in _templates(compiled):
        for name, parameter in template.get("parameters", {}).items():
            if parameter.get("type", "").lower() not in ("securestring", "secureobject"):
                continue
            # The one secret the user brings: the Teams/Slack webhook URL (it is its own credential).
            # It goes into Key Vault and nowhere else: no output, no app setting, no other property.
            assert name == "notifyWebhookUrl", f"{name}: a secure parameter means a secret is passed in"
            assert "notifyWebhookUrl" not in json.dumps(template.get("outputs", {}))
            uses = _parameter_uses(template, name)
            assert uses, name
            for where in uses:
                assert where[-1] in ("condition", "value", "hasNotifyWebhook") or where[-2:] == (
                    "parameters",
                    "notifyWebhookUrl",
                ), where


# ---- 2. the what-if: committed scenarios and scenarios written on the fly -------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    parameters: dict[str, Any]
    snapshot: dict[str, Any]

    @property
    def environment(self) -> str:
        return str(self.parameters["environmentName"])

    @property
    def group_name(self) -> str:
        return f"rg-{self.environment}"

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{SUB}/resourceGroups/{self.group_name}"

    @property
    def predicted(self) -> list[dict[str, Any]]:
        resources: list[dict[str, Any]] = self.snapshot["predictedResources"]
        return resources

    @property
    def outputs(self) -> dict[str, str]:
        outputs: dict[str, str] = self.snapshot["outputs"]
        return outputs

    @property
    def detached(self) -> bool:
        return bool(self.parameters["detachObservedWorkspaces"])

    @property
    def demo(self) -> bool:
        return not self.requested_workspace_ids

    @property
    def requested_workspace_ids(self) -> list[str]:
        return [i.strip() for i in str(self.parameters["amlWorkspaceIds"]).split(",") if i.strip()]

    @property
    def workspace_ids(self) -> list[str]:
        """The observed workspaces: the requested ones, or the demo workspace."""
        if not self.demo:
            return self.requested_workspace_ids
        (demo,) = self.of_type("Microsoft.MachineLearningServices/workspaces")
        return [demo["id"]]

    @property
    def deployed_workspace_ids(self) -> list[str]:
        return [] if self.detached else self.workspace_ids

    @property
    def adopted(self) -> dict[str, tuple[str, str]]:
        """Observed workspace id (lower case) -> (topic id, topic principal id) of the topics the
        preprovision hook found (adoptedSystemTopics); entries for other workspaces are ignored."""
        entries = [e.strip() for e in str(self.parameters["adoptedSystemTopics"]).split(",") if e.strip()]
        observed = {w.lower() for w in self.workspace_ids}
        found = {}
        for entry in entries:
            workspace, topic, principal = entry.split("|")
            if workspace.lower() in observed:
                found[workspace.lower()] = (topic, principal)
        return found

    def topic_of(self, workspace_id: str) -> str:
        """The system topic a workspace's events come from: the adopted one, or the environment's own."""
        if workspace_id.lower() in self.adopted:
            return self.adopted[workspace_id.lower()][0]
        (topic,) = [
            t["id"]
            for t in self.of_type("Microsoft.EventGrid/systemTopics")
            if t["properties"]["source"] == workspace_id
        ]
        return str(topic)

    def event_subscription_name(self, workspace_id: str) -> str:
        if workspace_id.lower() not in self.adopted:
            return "aml-run-events"
        (name,) = {
            e["id"].rsplit("/", 1)[1]
            for e in self.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
            if e["id"].startswith(self.adopted[workspace_id.lower()][0] + "/")
        } or {_adopted_subscription_name(self)}
        return str(name)

    def of_type(self, type_name: str) -> list[dict[str, Any]]:
        return [r for r in self.predicted if r["type"].lower() == type_name.lower()]

    def one(self, type_name: str, within: str | None = None) -> dict[str, Any]:
        found = [r for r in self.of_type(type_name) if within is None or _inside(r["id"], within)]
        assert len(found) == 1, (type_name, [r["id"] for r in found])
        return found[0]

    def inside_group(self, resource_id: str) -> bool:
        return _inside(resource_id, self.group_id)


def _adopted_subscription_name(s: Scenario) -> str:
    """The name this environment's event subscription has on an adopted topic, from the outputs."""
    ids = [i for i in s.outputs["AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS"].split(",") if i]
    names = {i.rsplit("/", 1)[1] for i in ids}
    assert len(names) == 1, ids
    return names.pop()


def _inside(resource_id: str, scope: str) -> bool:
    return resource_id.lower() == scope.lower() or resource_id.lower().startswith(scope.lower() + "/")


def _unresolved(value: str) -> bool:
    return value.startswith("[")


def _subscription_of(resource_id: str) -> str:
    return resource_id.split("/")[2].lower()


def _resource_type(resource_id: str) -> str:
    """`Microsoft.Storage/storageAccounts/blobServices/containers` of a resolved resource id."""
    provider = resource_id.rsplit("/providers/", 1)[1].split("/")
    return "/".join([provider[0], *provider[1::2]])


_EXTENSION_ID = re.compile(r"^\[extensionResourceId\('([^']+)', 'Microsoft\.Authorization/roleAssignments'")


def _assignment_scope(assignment: dict[str, Any]) -> str:
    """The resource a role assignment is on, also when its name is only known during deployment."""
    if match := _EXTENSION_ID.match(assignment["id"]):
        return match.group(1)
    assert not _unresolved(assignment["id"]), assignment["id"]
    return str(assignment["id"]).rsplit("/providers/Microsoft.Authorization/roleAssignments/", 1)[0]


def _role_guid(role_definition_id: str) -> str:
    return role_definition_id.rsplit("/", 1)[-1].lower()


def _product_storage(s: Scenario) -> dict[str, Any]:
    """The product's storage account (the demo workspace has its own, named stml<token>)."""
    (account,) = [
        a for a in s.of_type("Microsoft.Storage/storageAccounts") if not a["name"].startswith("stml")
    ]
    return account


def _event_grid_functions_in_function_app() -> list[str]:
    """Names of the functions src/function_app.py registers with an Event Grid trigger."""
    source = ROOT / "src" / "function_app.py"
    tree = ast.parse(source.read_text(), filename=str(source))
    names = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        decorators = {
            ast.unparse(d.func if isinstance(d, ast.Call) else d).split(".")[-1]: d
            for d in node.decorator_list
        }
        if "event_grid_trigger" not in decorators:
            continue
        name = node.name
        explicit = decorators.get("function_name")
        if isinstance(explicit, ast.Call):
            arg = (
                explicit.args[0]
                if explicit.args
                else next(k.value for k in explicit.keywords if k.arg == "name")
            )
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            name = arg.value
        names.append(name)
    return names


COMMITTED = [f.name.removesuffix(".bicepparam") for f in snapshots.scenario_files()]

# Scenarios that are not in the repository, as a reviewer would write them: odd names, a workspace in
# another group of the deployment subscription and one in a foreign subscription, a list with blanks,
# a narrowed status filter; and `azd down` of a demo environment.
_FOREIGN = "55555555-5555-5555-5555-555555555555"
GENERATED: dict[str, dict[str, Any]] = {
    "odd-names-two-subscriptions": {
        "environmentName": "Team_A.obs-1",
        "location": "westeurope",
        "amlWorkspaceIds": (
            f" /subscriptions/{SUB}/resourceGroups/rg.ml_shared(1)/providers/"
            "Microsoft.MachineLearningServices/workspaces/mlw_team_a , "
            f"/subscriptions/{_FOREIGN}/resourceGroups/RG-Vision/providers/"
            "Microsoft.MachineLearningServices/workspaces/ws.vision.2,"
        ),
        "alertEmails": "ml-team@example.com",
        "enableEventSubscription": True,
        "runStatuses": ["Running", "Completed", "Failed", "Canceled"],
    },
    # `azd down` of an environment that adopted a topic: the detach provision leaves everything outside
    # rg-<env> out, the adopted topic and its subscriptions untouched. The second entry names a workspace
    # this environment does not observe (left from an earlier AML_WORKSPACE_IDS): ignored.
    "adopted-detached": {
        "environmentName": "aml-obs-dev",
        "location": "eastus",
        "amlWorkspaceIds": f"/subscriptions/{SUB}/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod",
        "adoptedSystemTopics": (
            f"/subscriptions/{SUB}/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod"
            f"|/subscriptions/{SUB}/resourceGroups/rg-ml-events/providers/Microsoft.EventGrid/systemTopics/mlw-prod-events"
            "|6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f,"
            f"/subscriptions/{_FOREIGN}/resourceGroups/rg-old/providers/Microsoft.MachineLearningServices/workspaces/gone"
            f"|/subscriptions/{_FOREIGN}/resourceGroups/rg-old/providers/Microsoft.EventGrid/systemTopics/gone"
            "|00000000-0000-4000-8000-000000000000"
        ),
        "enableEventSubscription": True,
        "detachObservedWorkspaces": True,
    },
    # The topic the portal's *Events* page makes lives in the workspace's own resource group.
    "adopted-in-workspace-group": {
        "environmentName": "ml_team.obs",
        "location": "westeurope",
        "amlWorkspaceIds": f"/subscriptions/{_FOREIGN}/resourceGroups/RG-Vision/providers/Microsoft.MachineLearningServices/workspaces/ws.vision.2",
        "adoptedSystemTopics": (
            f"/subscriptions/{_FOREIGN}/resourceGroups/rg-vision/providers/Microsoft.MachineLearningServices/workspaces/WS.VISION.2"
            f"|/subscriptions/{_FOREIGN}/resourceGroups/RG-Vision/providers/Microsoft.EventGrid/systemTopics/ws-vision-2-0f3c1d2e-9a8b"
            "|3c4d5e6f-7081-4923-a4b5-c6d7e8f90a1b"
        ),
        "enableEventSubscription": True,
    },
    "demo-detached": {
        "environmentName": "demo-down",
        "location": "eastus",
        "enableEventSubscription": True,
        "detachObservedWorkspaces": True,
    },
}


@pytest.fixture(scope="session")
def committed_validation() -> dict[str, snapshots.Result]:
    """`bicep snapshot --mode validate` of every committed scenario."""
    results = snapshots.run_all(_bicep(), snapshots.scenario_files(), "validate")
    return {r.param_file.name.removesuffix(".bicepparam"): r for r in results}


@dataclass(frozen=True)
class Generated:
    directory: Path
    files: list[Path]


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """The scenarios of GENERATED written as .bicepparam files and snapshotted (`--mode overwrite`)."""
    directory = tmp_path_factory.mktemp("scenarios")
    files = [snapshots.write_scenario(directory, name, params) for name, params in GENERATED.items()]
    results = snapshots.run_all(_bicep(), files, "overwrite")
    failed = [f"{r.param_file.name}:\n{r.output}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    return Generated(directory, files)


@pytest.fixture(scope="session")
def scenarios(generated: Generated, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    """Every committed scenario (its committed snapshot) and every generated one (snapshot made here)."""
    files = snapshots.scenario_files() + generated.files
    parameters = snapshots.scenario_parameters(_bicep(), files, tmp_path_factory.mktemp("parameters"))
    return {
        f.name.removesuffix(".bicepparam"): Scenario(
            f.name.removesuffix(".bicepparam"),
            parameters[f],
            snapshots.load_snapshot(snapshots.snapshot_file(f)),
        )
        for f in files
    }


ALL_SCENARIOS = COMMITTED + list(GENERATED)


def test_the_committed_scenarios_are_the_four_the_issue_names() -> None:
    assert set(COMMITTED) >= {"demo", "first-provision", "three-subscriptions", "detached"}
    stray = sorted(
        f.name for f in snapshots.SCENARIOS.glob("*.snapshot.json") if f.name.split(".")[0] not in COMMITTED
    )
    assert not stray, f"snapshots without a scenario: {stray}"


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_snapshot_is_what_the_template_predicts(
    name: str, committed_validation: dict[str, snapshots.Result]
) -> None:
    result = committed_validation[name]
    assert result.ok, (
        f"infra/scenarios/{name}.snapshot.json is stale. If the change below is intended, regenerate it "
        f"with `python -m tests.bicep_snapshots` and commit the diff:\n{result.output}"
    )


def test_a_stale_snapshot_fails_validation(
    generated: Generated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate can fail: `python -m tests.bicep_snapshots --check` of a snapshot that no longer matches
    the template fails and shows the change."""
    name = "demo-detached"
    param_file = snapshots.write_scenario(tmp_path, name, GENERATED[name])
    stale = snapshots.load_snapshot(snapshots.snapshot_file(generated.directory / f"{name}.bicepparam"))
    rule = next(
        r for r in stale["predictedResources"] if r["type"] == "Microsoft.Insights/scheduledQueryRules"
    )
    rule["properties"]["severity"] = 4
    snapshots.snapshot_file(param_file).write_text(json.dumps(stale, indent=2))
    assert snapshots.main(["--check", str(param_file)]) == 1
    output = capsys.readouterr()
    assert f"FAILED {param_file}" in output.out
    assert "properties.severity" in output.err, output.err


def _every_scenario(check: Callable[[Scenario], None]) -> Callable[[str, dict[str, Scenario]], None]:
    """A test of one promise, run for every committed and generated scenario."""

    @pytest.mark.parametrize("name", ALL_SCENARIOS)
    def test(name: str, scenarios: dict[str, Scenario]) -> None:
        check(scenarios[name])

    test.__doc__ = check.__doc__
    return test


# ---- 3. promises, on the predicted resources -----------------------------------------------------


def _names_inside_the_group_resolve(s: Scenario) -> None:
    """Every name and id inside rg-<env> is known before deployment; outside it, only the role
    assignments on observed workspaces may wait for the identity's principal id (docs/infra.md)."""
    unresolved = [r for r in s.predicted if _unresolved(r["name"]) or _unresolved(r["id"])]
    inside = [
        r["id"]
        for r in unresolved
        if not _EXTENSION_ID.match(r["id"]) or s.inside_group(_assignment_scope(r))
    ]
    assert not inside, inside
    for resource in unresolved:
        assert resource["type"] == "Microsoft.Authorization/roleAssignments", resource["id"]
        scope = _assignment_scope(resource)
        assert scope in s.deployed_workspace_ids and not s.inside_group(scope), scope
        assert ".principalId" in resource["name"], resource["name"]


test_every_name_and_id_inside_rg_env_resolves_before_deployment = _every_scenario(
    _names_inside_the_group_resolve
)


def _resource_group(s: Scenario) -> None:
    """rg-<env> in the deployment subscription and region; in a workspace's other subscription, a group
    of the same name holds its system topics."""
    groups = s.of_type("Microsoft.Resources/resourceGroups")
    main = [g for g in groups if g["id"] == s.group_id]
    assert len(main) == 1 and main[0]["location"] == s.parameters["location"]
    assert main[0]["tags"] == {"azd-env-name": s.environment}
    foreign = sorted(
        {_subscription_of(i) for i in s.deployed_workspace_ids if i.lower() not in s.adopted} - {SUB}
    )
    assert sorted(g["id"] for g in groups if g is not main[0]) == [
        f"/subscriptions/{sub}/resourceGroups/{s.group_name}" for sub in foreign
    ]


test_resource_groups_are_rg_env_in_each_subscription_that_needs_one = _every_scenario(_resource_group)


def _system_topics(s: Scenario) -> None:
    """One system topic per observed workspace that has none yet, sourced from it, in rg-<env> of its
    subscription; none for a workspace whose existing topic is adopted (Event Grid allows one per source)."""
    topics = s.of_type("Microsoft.EventGrid/systemTopics")
    assert sorted(t["properties"]["source"] for t in topics) == sorted(
        w for w in s.deployed_workspace_ids if w.lower() not in s.adopted
    )
    adopted_topics = {topic.lower() for topic, _ in s.adopted.values()}
    assert not [r["id"] for r in s.predicted if r["id"].lower() in adopted_topics], (
        "an adopted topic is changed"
    )
    for topic in topics:
        source = topic["properties"]["source"]
        assert topic["properties"]["topicType"] == "Microsoft.MachineLearningServices.Workspaces"
        assert topic["identity"] == {"type": "SystemAssigned"}
        assert _inside(topic["id"], f"/subscriptions/{source.split('/')[2]}/resourceGroups/{s.group_name}")
        assert re.fullmatch(r"[A-Za-z0-9-]{3,64}", topic["name"]), topic["name"]
        # A system topic lives in its source's region: the demo workspace's is known, another one's is
        # read from the workspace during deployment.
        if s.demo:
            assert topic["location"] == s.parameters["location"]
        else:
            assert topic["location"] == f"[reference('{source}', '2026-05-01', 'full').location]"


test_one_system_topic_per_observed_workspace_with_its_source = _every_scenario(_system_topics)


def _event_subscriptions(s: Scenario) -> None:
    """Event subscriptions only when enabled: one per topic, to the function src/function_app.py
    defines, with exactly the event types the code accepts, retried then dead-lettered by the topic's
    identity."""
    subscriptions = s.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    if not s.parameters["enableEventSubscription"] or s.detached:
        assert subscriptions == []
        return
    # One per workspace, under its topic: the environment's own (aml-run-events) or the adopted one
    # (a name of this environment's, beside the topic's other subscriptions).
    assert sorted(e["id"] for e in subscriptions) == sorted(
        f"{s.topic_of(w)}/eventSubscriptions/{s.event_subscription_name(w)}" for w in s.deployed_workspace_ids
    )
    for workspace_id in s.deployed_workspace_ids:
        name = s.event_subscription_name(workspace_id)
        assert re.fullmatch(r"[A-Za-z0-9-]{3,64}", name), name
        if workspace_id.lower() in s.adopted:
            assert (
                name != "aml-run-events" and s.environment.lower().replace("_", "-").replace(".", "-") in name
            )
    site = s.one("Microsoft.Web/sites", within=s.group_id)
    storage = _product_storage(s)
    run_statuses = s.parameters.get("runStatuses", list(events.KNOWN_STATUSES))
    excluded = [status for status in events.KNOWN_STATUSES if status not in run_statuses]
    for subscription in subscriptions:
        props = subscription["properties"]
        destination = props["destination"]
        assert destination["endpointType"] == "AzureFunction"
        function_name = destination["properties"]["resourceId"].removeprefix(f"{site['id']}/functions/")
        assert function_name in _event_grid_functions_in_function_app()
        assert destination["properties"]["maxEventsPerBatch"] == 1
        assert props["eventDeliverySchema"] == "EventGridSchema"
        assert props["filter"]["includedEventTypes"] == list(events.SUPPORTED_EVENT_TYPES)
        # Event Grid ANDs advanced filters and treats a missing key as a match only for StringNotIn:
        # RunCompleted (no data.runStatus) passes while the statuses not asked for are filtered out.
        assert props["filter"]["advancedFilters"] == (
            [{"operatorType": "StringNotIn", "key": "data.runStatus", "values": excluded}] if excluded else []
        )
        assert set(props["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
        assert "deadLetterDestination" not in props, "key-based dead-lettering"
        assert props["deadLetterWithResourceIdentity"] == {
            "identity": {"type": "SystemAssigned"},
            "deadLetterDestination": {
                "endpointType": "StorageBlob",
                "properties": {"resourceId": storage["id"], "blobContainerName": "deadletter-events"},
            },
        }


test_event_subscriptions_only_when_enabled_to_the_function_with_types_and_dead_letter = _every_scenario(
    _event_subscriptions
)


def _delivered(advanced_filters: list[dict[str, Any]], event: dict[str, Any]) -> bool:
    """Event Grid's documented semantics for the filters used here: StringNotIn is case-insensitive and
    matches when the key is absent; filters are ANDed."""
    for f in advanced_filters:
        assert f["operatorType"] == "StringNotIn" and f["key"] == "data.runStatus", f
        status = event["data"].get("runStatus")
        if status is not None and status.lower() in {v.lower() for v in f["values"]}:
            return False
    return True


@pytest.mark.parametrize(("name", "narrowed"), [("demo", False), ("odd-names-two-subscriptions", True)])
def test_the_status_filter_lets_run_completed_through(
    name: str, narrowed: bool, scenarios: dict[str, Scenario]
) -> None:
    (subscription, *_) = scenarios[name].of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    advanced = subscription["properties"]["filter"]["advancedFilters"]
    ws = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
    completed = {
        "id": "1",
        "eventType": events.RUN_COMPLETED,
        "topic": ws,
        "data": {"runId": "r", "experimentId": "e"},
    }
    assert _delivered(advanced, completed) and events.parse_event(completed).run_status == "Completed"
    assert _delivered(advanced, {"data": {"runStatus": "FAILED"}})
    assert _delivered(advanced, {"data": {"runStatus": "Queued"}}) is not narrowed


def _workspace_access(s: Scenario) -> None:
    """Exactly one role assignment per observed workspace, on the workspace, of a custom role with only
    the four AML read actions (workspace, experiments, runs, computes), assignable only in the workspace's
    resource group."""
    assignments = s.of_type("Microsoft.Authorization/roleAssignments")
    definitions = {d["id"].lower(): d for d in s.of_type("Microsoft.Authorization/roleDefinitions")}
    assert len(definitions) == len(s.deployed_workspace_ids)
    identity = s.one("Microsoft.ManagedIdentity/userAssignedIdentities")
    for workspace_id in s.deployed_workspace_ids:
        on_workspace = [a for a in assignments if _assignment_scope(a).lower() == workspace_id.lower()]
        assert len(on_workspace) == 1, (workspace_id, on_workspace)
        (assignment,) = on_workspace
        props = assignment["properties"]
        assert props["principalType"] == "ServicePrincipal"
        assert props["principalId"] == f"[reference('{identity['id']}', '2024-11-30').principalId]"
        role = definitions[props["roleDefinitionId"].lower()]
        assert _subscription_of(role["id"]) == _subscription_of(workspace_id)
        assert role["properties"]["type"] == "CustomRole"
        (permission,) = role["properties"]["permissions"]
        assert permission == {
            "actions": AML_READ_ACTIONS,
            "notActions": [],
            "dataActions": [],
            "notDataActions": [],
        }
        assert all(action.endswith("/read") for action in permission["actions"])
        assert role["properties"]["assignableScopes"] == [workspace_id.rsplit("/providers/", 1)[0]]
        # Named after the identity's resource id inside rg-<env> (deleted with it), after its principal
        # id on a customer's workspace (an orphan there must not block the next identity).
        if s.inside_group(workspace_id):
            assert not _unresolved(assignment["name"])
        else:
            assert f"reference('{identity['id']}', '2024-11-30').principalId" in assignment["name"]


test_exactly_one_read_only_custom_role_assignment_per_observed_workspace = _every_scenario(_workspace_access)


def _roles(s: Scenario) -> None:
    """Only allow-listed roles, each on the one kind of resource it is for; never Owner, Contributor,
    User Access Administrator or RBAC Administrator; always to a service principal."""
    custom = {d["id"].lower() for d in s.of_type("Microsoft.Authorization/roleDefinitions")}
    for assignment in s.of_type("Microsoft.Authorization/roleAssignments"):
        props = assignment["properties"]
        role_id = props["roleDefinitionId"]
        guid = _role_guid(role_id)
        assert guid not in FORBIDDEN_ROLES, FORBIDDEN_ROLES.get(guid)
        assert props["principalType"] == "ServicePrincipal"
        scope = _assignment_scope(assignment)
        if role_id.lower() in custom:
            assert _resource_type(scope) == "Microsoft.MachineLearningServices/workspaces"
            continue
        assert (
            role_id
            == f"/subscriptions/{_subscription_of(scope)}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        )
        assert guid in ALLOWED_BUILTIN_ROLES, f"{assignment['id']} grants {guid}, which is not allow-listed"
        assert _resource_type(scope) == ALLOWED_BUILTIN_ROLES[guid][1], (guid, scope)
        assert s.inside_group(scope), scope
        if guid == "ba92f5b4-2d11-453d-a403-e96b0029c9fe":
            assert scope.endswith("/blobServices/default/containers/deadletter-events")


test_only_allow_listed_roles_on_the_narrowest_scope = _every_scenario(_roles)


def test_every_allow_listed_role_is_needed(scenarios: dict[str, Scenario]) -> None:
    """A stale entry in the allow-list would hide an unreviewed change."""
    granted = {
        _role_guid(a["properties"]["roleDefinitionId"])
        for s in scenarios.values()
        for a in s.of_type("Microsoft.Authorization/roleAssignments")
    }
    assert set(ALLOWED_BUILTIN_ROLES) <= granted, set(ALLOWED_BUILTIN_ROLES) - granted


def _only_one_assignment_in_a_workspace_group(s: Scenario) -> None:
    """`azd down` deletes every resource group holding a resource of the deployment: the only thing
    placed in an observed workspace's own group is its role assignment (and, when the workspace's
    existing topic lives there, as the portal's *Events* page puts it, our event subscription on it),
    and the predown hook's detached provision leaves even that out."""
    for workspace_id in s.workspace_ids:
        group = workspace_id.rsplit("/providers/", 1)[0]
        if _inside(group, s.group_id):
            continue  # the demo workspace lives in rg-<env>
        in_group = [
            r
            for r in s.predicted
            if _inside(_assignment_scope(r) if _EXTENSION_ID.match(r["id"]) else r["id"], group)
        ]
        if s.detached:
            assert in_group == []
            continue
        expected = ["Microsoft.Authorization/roleAssignments"]
        if _inside(s.topic_of(workspace_id), group) and s.parameters["enableEventSubscription"]:
            expected.append("Microsoft.EventGrid/systemTopics/eventSubscriptions")
        assert sorted(r["type"] for r in in_group) == expected


test_nothing_but_the_role_assignment_in_an_observed_workspaces_group = _every_scenario(
    _only_one_assignment_in_a_workspace_group
)


def _detached(s: Scenario) -> None:
    """Detached (the predown hook), the deployment holds nothing outside rg-<env>."""
    if not s.detached:
        return
    outside = [r["id"] for r in s.predicted if not s.inside_group(r["id"])]
    assert outside == [], outside


test_nothing_outside_rg_env_when_detached = _every_scenario(_detached)


def _teardown_outputs(s: Scenario) -> None:
    """The outputs the teardown hooks read name exactly what a deployment of the scenario creates
    outside rg-<env>, also when detached (so `azd down` after a detached provision still finds them)."""
    outputs = s.outputs
    assert outputs["AML_OBSERVED_WORKSPACE_IDS"] == ",".join(s.workspace_ids)
    role_ids = outputs["AML_OBS_READER_ROLE_DEFINITION_IDS"].split(",")
    assert [_subscription_of(r) for r in role_ids] == [_subscription_of(w) for w in s.workspace_ids]
    assert all(
        re.fullmatch(
            r"/subscriptions/[0-9a-f-]{36}/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-f-]{36}",
            r,
        )
        for r in role_ids
    ), role_ids
    foreign = sorted({_subscription_of(w) for w in s.workspace_ids if w.lower() not in s.adopted} - {SUB})
    assert outputs["AML_OBS_FOREIGN_RESOURCE_GROUP_IDS"] == ",".join(
        f"/subscriptions/{sub}/resourceGroups/{s.group_name}" for sub in foreign
    )
    # Our event subscriptions on adopted topics (postdown removes them, the topics stay) and the
    # topics this environment created (predown checks nobody else still subscribes to them).
    adopted_subscriptions = [i for i in outputs["AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS"].split(",") if i]
    assert sorted(i.rsplit("/eventSubscriptions/", 1)[0] for i in adopted_subscriptions) == sorted(
        topic for topic, _ in s.adopted.values()
    )
    own_topics = [i for i in outputs["AML_OBS_SYSTEM_TOPIC_IDS"].split(",") if i]
    assert len(own_topics) == len(s.workspace_ids) - len(s.adopted)
    assert all(
        _inside(t, f"/subscriptions/{_subscription_of(t)}/resourceGroups/{s.group_name}") for t in own_topics
    )
    if s.detached:
        return
    assert sorted(own_topics) == sorted(t["id"] for t in s.of_type("Microsoft.EventGrid/systemTopics"))
    if s.parameters["enableEventSubscription"]:
        assert set(adopted_subscriptions) <= {
            e["id"] for e in s.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
        }
    assert sorted(r.lower() for r in role_ids) == sorted(
        d["id"].lower() for d in s.of_type("Microsoft.Authorization/roleDefinitions")
    )
    external = outputs["AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS"]
    for workspace_id in s.workspace_ids:
        (assignment,) = [
            a
            for a in s.of_type("Microsoft.Authorization/roleAssignments")
            if _assignment_scope(a) == workspace_id
        ]
        # The same name as the deployed assignment: the resolved GUID, or the same GUID expression.
        name = assignment["name"]
        assert (
            name[1:-1]
            if _unresolved(name)
            else f"{workspace_id}/providers/Microsoft.Authorization/roleAssignments/{name}"
        ) in external


test_teardown_outputs_name_what_lives_outside_rg_env = _every_scenario(_teardown_outputs)


def _security_settings(s: Scenario) -> None:
    """No shared keys on any storage account, local auth off on App Insights and Log Analytics, Key
    Vaults with RBAC, soft delete and purge protection, no public blob containers."""
    accounts = s.of_type("Microsoft.Storage/storageAccounts")
    assert len(accounts) == (2 if s.demo else 1)
    for account in accounts:
        props = account["properties"]
        assert props["allowSharedKeyAccess"] is False, account["id"]
        assert props["allowBlobPublicAccess"] is False, account["id"]
        assert props["minimumTlsVersion"] == "TLS1_2" and props["supportsHttpsTrafficOnly"] is True
    for container in s.of_type("Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert container["properties"]["publicAccess"] == "None"
    component = s.one("Microsoft.Insights/components")
    workspace = s.one("Microsoft.OperationalInsights/workspaces")
    assert component["properties"]["DisableLocalAuth"] is True
    assert component["properties"]["WorkspaceResourceId"] == workspace["id"]
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    vaults = s.of_type("Microsoft.KeyVault/vaults")
    assert len(vaults) == (2 if s.demo else 1)
    for vault in vaults:
        props = vault["properties"]
        assert props["enableRbacAuthorization"] is True and "accessPolicies" not in props
        assert props["enableSoftDelete"] is True and props["enablePurgeProtection"] is True
    text = json.dumps(s.snapshot)
    for marker in KEY_MARKERS:
        assert marker not in text, marker
    assert not re.findall(r"\blist[A-Z]\w*\(", text)


test_no_keys_local_auth_off_vaults_protected = _every_scenario(_security_settings)


def _function_app(s: Scenario) -> None:
    """Flex Consumption, Python (the version the tests run on), HTTPS only, TLS 1.2, deployment package
    read with the user-assigned identity, no site config Flex rejects; azd finds it by its service tag."""
    plan = s.one("Microsoft.Web/serverfarms")
    assert (
        plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"} and plan["properties"]["reserved"] is True
    )
    site = s.one("Microsoft.Web/sites")
    identity = s.one("Microsoft.ManagedIdentity/userAssignedIdentities")
    storage = _product_storage(s)
    services = yaml.safe_load((ROOT / "azure.yaml").read_text())["services"]
    assert site["tags"] == {"azd-env-name": s.environment, "azd-service-name": next(iter(services))}
    assert site["kind"] == "functionapp,linux"
    assert site["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {identity["id"]: {}}}
    props = site["properties"]
    assert props["httpsOnly"] is True and props["keyVaultReferenceIdentity"] == identity["id"]
    assert props["siteConfig"]["minTlsVersion"] == "1.2" and props["siteConfig"]["scmMinTlsVersion"] == "1.2"
    assert not set(props["siteConfig"]) & FLEX_REJECTED_SITE_CONFIG
    config = props["functionAppConfig"]
    assert config["runtime"] == {
        "name": "python",
        "version": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    assert 40 <= config["scaleAndConcurrency"]["maximumInstanceCount"] <= 1000
    assert config["deployment"]["storage"] == {
        "type": "blobContainer",
        "value": f"[format('{{0}}{{1}}', reference('{storage['id']}', '2026-04-01').primaryEndpoints.blob, 'app-package')]",
        "authentication": {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": identity["id"]},
    }


test_function_app_is_flex_consumption_python_https_tls12 = _every_scenario(_function_app)


def _app_settings(s: Scenario) -> None:
    """Identity-based storage, the connection string a Key Vault reference to the one secret the
    identity may read, the settings the code reads and none that Flex Consumption rejects; and the
    app's own settings loader accepts them."""
    site = s.one("Microsoft.Web/sites")
    identity = s.one("Microsoft.ManagedIdentity/userAssignedIdentities")
    storage = _product_storage(s)
    secrets = [r for r in s.of_type("Microsoft.KeyVault/vaults/secrets") if s.inside_group(r["id"])]
    (secret,) = [r for r in secrets if r["id"].endswith("/secrets/appinsights-connection-string")]
    # The webhook URL's secret: written only when a URL is given (a secure value what-if cannot see,
    # so the condition stays in the prediction), its value the parameter and nothing else.
    (webhook_secret,) = [r for r in secrets if r["id"].endswith("/secrets/notify-webhook-url")]
    assert webhook_secret["condition"] == "[not(empty(parameters('notifyWebhookUrl')))]"
    assert webhook_secret["properties"]["value"] == "[parameters('notifyWebhookUrl')]"
    assert len(secrets) == 2
    (config,) = [
        c for c in s.of_type("Microsoft.Web/sites/config") if c["id"] == f"{site['id']}/config/appsettings"
    ]
    app_settings: dict[str, str] = config["properties"]
    assert not set(app_settings) & FLEX_FORBIDDEN_SETTINGS
    client_id = f"[reference('{identity['id']}', '2024-11-30').clientId]"
    endpoint = f"[reference('{storage['id']}', '2026-04-01').primaryEndpoints.{{}}]"
    assert app_settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert app_settings["AzureWebJobsStorage__clientId"] == client_id == app_settings["AZURE_CLIENT_ID"]
    for service in ("blob", "queue", "table"):
        assert app_settings[f"AzureWebJobsStorage__{service}ServiceUri"] == endpoint.format(service)
    assert app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        f"[format('Authorization=AAD;ClientId={{0}}', {client_id[1:-1]})]"
    )
    # The cost estimate's settings: the currency and the Retail Prices endpoint, as parameters set them.
    assert app_settings["AML_OBS_COST_CURRENCY"] == s.parameters.get("costCurrency", "USD")
    assert app_settings["AML_OBS_PRICES_ENDPOINT"] == s.parameters.get(
        "retailPricesEndpoint", "https://prices.azure.com/api/retail/prices"
    )
    reference = f"[format('@Microsoft.KeyVault(SecretUri={{0}})', reference('{secret['id']}', '2026-02-01').secretUri)]"
    assert app_settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == reference
    for name, value in app_settings.items():
        if CREDENTIAL_SETTING.search(name):
            assert value.startswith("[format('@Microsoft.KeyVault(SecretUri="), name
    # The identity resolving the reference may read that secret (and nothing else in the vault).
    readers = [
        a
        for a in s.of_type("Microsoft.Authorization/roleAssignments")
        if _role_guid(a["properties"]["roleDefinitionId"]) == "4633458b-17de-408a-b874-0445c86b69e6"
    ]
    # ... and the webhook's secret when there is one (a role on a secret that does not exist would fail).
    with_webhook = bool(s.parameters.get("notifyWebhookUrl"))
    assert sorted(_assignment_scope(a) for a in readers) == sorted(
        [secret["id"], *([webhook_secret["id"]] if with_webhook else [])]
    )
    # The webhook reaches the app as a Key Vault reference to that secret, or not at all.
    webhook_setting = app_settings["AML_OBS_NOTIFY_WEBHOOK_URL"]
    if s.parameters.get("notifyWebhookUrl"):
        assert "format('@Microsoft.KeyVault(SecretUri={0})'" in webhook_setting
        # the what-if itself never shows the URL (a secure value): not in a resource, not in an output
        assert str(s.parameters["notifyWebhookUrl"]) not in json.dumps(s.snapshot)
        assert "notifyWebhookUrl" not in webhook_setting  # the reference, never the value
    else:
        assert webhook_setting == ""
    assert app_settings["AML_OBS_NOTIFY_STATUSES"] == s.parameters.get("notifyStatuses", "Failed")
    component = s.one("Microsoft.Insights/components")
    assert app_settings["AML_OBS_APPINSIGHTS_RESOURCE_ID"] == component["id"]
    # What Resource Manager puts in at deployment, and the app's own loader reading it.
    deployed = {
        client_id: "00000000-0000-0000-0000-00000000c1d0",
        **{
            endpoint.format(svc): f"https://{storage['name']}.{svc}.core.windows.net/"
            for svc in ("blob", "queue", "table")
        },
        "[environment().resourceManager]": "https://management.azure.com/",
    }
    env = {name: deployed.get(value, value) for name, value in app_settings.items()}
    env["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] = f"Authorization=AAD;ClientId={deployed[client_id]}"
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "IngestionEndpoint=https://example.invalid/"
    loaded = settings.Settings.from_env(env)
    assert loaded.storage is not None and loaded.storage.connection_string is None
    assert loaded.storage.blob_service_uri == f"https://{storage['name']}.blob.core.windows.net"
    assert loaded.storage.table_service_uri == f"https://{storage['name']}.table.core.windows.net"
    assert loaded.storage.client_id == loaded.azure_client_id == deployed[client_id]
    assert loaded.arm_endpoint == "https://management.azure.com"
    # The test-only loopback setting is never deployed, and the deployed Resource Manager is one the app
    # trusts (docs/security.md).
    assert settings.TEST_LOOPBACK_SETTING not in app_settings and not loaded.allow_loopback
    WorkspaceEndpoints(loaded)
    assert loaded.cost_currency == app_settings["AML_OBS_COST_CURRENCY"]
    assert loaded.prices_endpoint == app_settings["AML_OBS_PRICES_ENDPOINT"].rstrip("/")
    if webhook_setting:  # the host resolves the reference: the app gets the secret's value
        env["AML_OBS_NOTIFY_WEBHOOK_URL"] = str(s.parameters["notifyWebhookUrl"])
    notify = NotifySettings.from_env(env)
    assert notify.enabled == bool(webhook_setting)
    assert notify.statuses == set(app_settings["AML_OBS_NOTIFY_STATUSES"].split(","))
    assert notify.app_insights_resource_id == component["id"]


test_app_settings_identity_based_storage_and_a_key_vault_reference = _every_scenario(_app_settings)


def _demo_workspace(s: Scenario) -> None:
    """A demo workspace in rg-<env> only when no workspace is given, its datastores reached with its
    identity (the REST enum value `Identity`), its custom role assignable at rg-<env>."""
    workspaces = s.of_type("Microsoft.MachineLearningServices/workspaces")
    if not s.demo:
        assert workspaces == []
        return
    (workspace,) = workspaces
    assert s.inside_group(workspace["id"])
    assert workspace["properties"]["systemDatastoresAuthMode"] == "Identity"
    assert workspace["identity"] == {"type": "SystemAssigned"}
    if not s.detached:
        (role,) = s.of_type("Microsoft.Authorization/roleDefinitions")
        assert role["properties"]["assignableScopes"] == [s.group_id]


test_demo_workspace_only_when_no_workspace_is_given = _every_scenario(_demo_workspace)


def test_the_generated_scenarios_really_are_odd(scenarios: dict[str, Scenario]) -> None:
    """The on-the-fly scenarios cover what the committed ones do not."""
    odd = scenarios["odd-names-two-subscriptions"]
    assert [w.rsplit("/", 1)[1] for w in odd.deployed_workspace_ids] == ["mlw_team_a", "ws.vision.2"]
    assert {_subscription_of(w) for w in odd.deployed_workspace_ids} == {SUB, _FOREIGN}
    assert len(odd.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")) == 2
    adopted = scenarios["adopted-detached"]
    assert adopted.detached and list(adopted.adopted) == [adopted.workspace_ids[0].lower()]
    assert adopted.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions") == []
    assert adopted.outputs["AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS"].startswith(
        f"/subscriptions/{SUB}/resourceGroups/rg-ml-events/providers/Microsoft.EventGrid/systemTopics/mlw-prod-events/eventSubscriptions/aml-run-events-aml-obs-dev-"
    )
    down = scenarios["demo-detached"]
    assert down.demo and down.detached and down.of_type("Microsoft.Authorization/roleDefinitions") == []


def test_infrastructure_files_are_all_there() -> None:
    names = {p.name for p in (INFRA / "modules").glob("*.bicep")}
    assert names >= {
        "identity.bicep",
        "storage.bicep",
        "monitoring.bicep",
        "keyvault.bicep",
        "functionapp.bicep",
        "rbac.bicep",
        "system-topic.bicep",
        "event-subscription.bicep",
        "aml-reader-role.bicep",
        "workspace-access.bicep",
        "demo-workspace.bicep",
        "dashboard.bicep",
        "alerts.bicep",
    }
    for name in (
        "main.bicep",
        "main.parameters.json",
        "abbreviations.json",
        "bicepconfig.json",
        "types.bicep",
    ):
        assert (INFRA / name).exists(), name


def _dead_letter_writers(s: Scenario) -> None:
    """Each topic's identity may write the dead-letter container: the created topic's identity, or the
    adopted topic's own, as the preprovision hook found it; named after the topic, so what-if predicts it."""
    storage = _product_storage(s)
    container = f"{storage['id']}/blobServices/default/containers/deadletter-events"
    writers = [
        a
        for a in s.of_type("Microsoft.Authorization/roleAssignments")
        if _role_guid(a["properties"]["roleDefinitionId"]) == "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    ]
    assert [_assignment_scope(a) for a in writers] == [container] * len(s.deployed_workspace_ids)
    principals = sorted(a["properties"]["principalId"] for a in writers)
    expected = []
    for workspace_id in s.deployed_workspace_ids:
        if workspace_id.lower() in s.adopted:
            expected.append(s.adopted[workspace_id.lower()][1])
        else:
            expected.append(
                f"[reference('{s.topic_of(workspace_id)}', '2025-02-15', 'full').identity.principalId]"
            )
    assert principals == sorted(expected)
    assert not [a["name"] for a in writers if _unresolved(a["name"])]


test_each_topic_identity_writes_dead_letters = _every_scenario(_dead_letter_writers)


def _dead_letter_alerts(s: Scenario) -> None:
    """One dead-letter alert per observed workspace, on its topic, counting only this environment's
    event subscription (an adopted topic's other subscriptions are not ours)."""
    alerts = [
        a
        for a in s.of_type("Microsoft.Insights/metricAlerts")
        if a["properties"]["criteria"]["allOf"][0]["metricName"] == "DeadLetteredCount"
    ]
    found = {
        a["properties"]["scopes"][0]: a["properties"]["criteria"]["allOf"][0]["dimensions"] for a in alerts
    }
    assert found == {
        s.topic_of(w): [
            {"name": "EventSubscriptionName", "operator": "Include", "values": [s.event_subscription_name(w)]}
        ]
        for w in s.deployed_workspace_ids
    }


test_dead_letter_alerts_count_only_our_subscription = _every_scenario(_dead_letter_alerts)


def _audit_trail(s: Scenario) -> None:
    """The security baseline's audit trail, to the Log Analytics workspace behind App Insights: Key
    Vault's AuditEvent; every read, write and delete on the blob and table services; delivery failures
    of every topic this environment creates (never a setting on an adopted topic)."""
    workspace = s.one("Microsoft.OperationalInsights/workspaces")
    vault = [
        v
        for v in s.of_type("Microsoft.KeyVault/vaults")
        if s.inside_group(v["id"]) and not v["name"].startswith("kvml")
    ]
    storage = _product_storage(s)
    settings = {
        d["id"].rsplit("/providers/Microsoft.Insights/diagnosticSettings/", 1)[0]: d
        for d in s.of_type("Microsoft.Insights/diagnosticSettings")
    }
    expected = {
        vault[0]["id"]: {"AuditEvent"},
        f"{storage['id']}/blobServices/default": {"StorageRead", "StorageWrite", "StorageDelete"},
        f"{storage['id']}/tableServices/default": {"StorageRead", "StorageWrite", "StorageDelete"},
        **{t["id"]: {"DeliveryFailures"} for t in s.of_type("Microsoft.EventGrid/systemTopics")},
    }
    assert {
        scope: {log["category"] for log in d["properties"]["logs"] if log["enabled"]}
        for scope, d in settings.items()
    } == expected
    for scope, setting in settings.items():
        assert setting["properties"]["workspaceId"] == workspace["id"], scope
    adopted_topics = {topic.lower() for topic, _ in s.adopted.values()}
    assert not [scope for scope in settings if scope.lower() in adopted_topics]


test_audit_and_delivery_failure_logs_go_to_log_analytics = _every_scenario(_audit_trail)


def _storage_recovery(s: Scenario) -> None:
    """A deleted container (dead letters, rejected events) or blob can be restored for a stated time."""
    blob_service = s.one("Microsoft.Storage/storageAccounts/blobServices", within=_product_storage(s)["id"])
    props = blob_service["properties"]
    assert props["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert props["deleteRetentionPolicy"] == {"enabled": True, "days": 7}


test_container_and_blob_soft_delete = _every_scenario(_storage_recovery)


def _no_basic_publishing_credentials(s: Scenario) -> None:
    """SCM and FTP basic-authentication publishing are off (azd deploys with Entra ID), and no ARR
    affinity cookie."""
    site = s.one("Microsoft.Web/sites")
    policies = {
        p["id"].rsplit("/", 1)[1]: p["properties"]
        for p in s.of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    assert policies == {"scm": {"allow": False}, "ftp": {"allow": False}}
    assert all(
        p["id"].startswith(site["id"] + "/")
        for p in s.of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    )
    assert site["properties"]["clientAffinityEnabled"] is False


test_basic_publishing_credentials_off = _every_scenario(_no_basic_publishing_credentials)


# Event Grid's limits on advanced filtering: "25 advanced filters and 25 filter values across all the
# filters per Event Grid subscription", "512 characters per string value"
# (learn.microsoft.com/azure/event-grid/event-filtering, "Limitations"; MicrosoftDocs/azure-docs
# articles/event-grid/event-filtering.md. Older revisions said 5 filters and 5 values per in/not-in).
ADVANCED_FILTER_VALUE_LIMIT = 25
STRING_VALUE_LIMIT = 512


def _filter_values(event_subscription: dict[str, Any]) -> int:
    filters = event_subscription["properties"]["filter"]["advancedFilters"]
    assert len(filters) <= ADVANCED_FILTER_VALUE_LIMIT
    assert all(len(str(v)) <= STRING_VALUE_LIMIT for f in filters for v in f.get("values", []))
    return sum(len(f.get("values", [])) if "values" in f else 1 for f in filters)


def _within_event_grid_limits(s: Scenario) -> None:
    """Every event subscription stays within Event Grid's 25 advanced-filter values."""
    for subscription in s.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions"):
        assert _filter_values(subscription) <= ADVANCED_FILTER_VALUE_LIMIT, subscription["id"]


test_event_subscriptions_stay_within_the_advanced_filter_limit = _every_scenario(_within_event_grid_limits)


def test_the_widest_status_filter_stays_within_the_advanced_filter_limit(
    tmp_path: Path, compiled: dict[str, Any]
) -> None:
    """The most values the template can put in the filter: every known status excluded (runStatuses
    empty: only RunCompleted passes). Each status AML adds to KNOWN_STATUSES adds one value: this
    fails before the 26th."""
    known = compiled["variables"]["knownRunStatuses"]
    param_file = snapshots.write_scenario(
        tmp_path,
        "one-status",
        {
            "environmentName": "limits",
            "location": "eastus",
            "enableEventSubscription": True,
            "runStatuses": [],
        },
    )
    result = snapshots.run_snapshot(_bicep(), param_file, "overwrite")
    assert result.ok, result.output
    predicted = snapshots.load_snapshot(snapshots.snapshot_file(param_file))["predictedResources"]
    (subscription,) = [
        r for r in predicted if r["type"] == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    ]
    assert _filter_values(subscription) == len(known)
    assert _filter_values(subscription) <= ADVANCED_FILTER_VALUE_LIMIT
