"""The infrastructure's promises, read from the Bicep itself (tree-sitter tree, not regexes).

What a platform engineer relies on: every file compiles, nothing holds a key, every identity has
only the roles listed here with their reason, the function's settings are the ones the code reads,
and Event Grid delivers exactly the events the code accepts to the function the code defines.
The real Bicep CLI (build + lint) runs wherever it is installed; the CI workflow installs it.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

from amlobs import events, settings
from tests.tools_on_path import find_tool

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
MAIN = INFRA / "main.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
# The modules this suite's owner writes; dashboard.bicep/alerts.bicep are checked by their own tests
# for content, and here for parsing, keys and role assignments like every file.
PARSER = Parser(Language(tree_sitter_bicep.language()))

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

# Every built-in role the template may grant, with the reason. A role assignment with a role id
# outside this list fails the suite: widening access has to be a reviewed change here.
ALLOWED_BUILTIN_ROLES: dict[str, str] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner: Functions host blobs, deployment package, rejected events",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor: Functions host queues (identity-based AzureWebJobsStorage)",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor: dedupe table processedevents",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher: Entra ID telemetry ingestion (local auth off)",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User: resolve the App Insights connection string reference",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor: system topic writes dead letters (container scope)",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader: log search alert rules query App Insights as their own identity (alerts.bicep)",
}
# The custom role: only reachable through this parameter of workspace-access.bicep.
CUSTOM_ROLE_PARAM = ("workspace-access.bicep", "amlReaderRoleDefinitionId")
AML_READ_ACTIONS = [
    "Microsoft.MachineLearningServices/workspaces/read",
    "Microsoft.MachineLearningServices/workspaces/experiments/read",
    "Microsoft.MachineLearningServices/workspaces/experiments/runs/read",
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
CREDENTIAL_SETTING = re.compile(
    r"CONNECTION_?STRING|SECRET|PASSWORD|ACCOUNT_?KEY|_KEY$|SAS|TOKEN", re.IGNORECASE
)
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault(SecretUri="


# ---- a small reader over the tree-sitter tree -------------------------------------------------


def text(node: Node) -> str:
    return node.text.decode() if node.text is not None else ""


def literal(node: Node) -> Any:
    """The Python value of a literal node; raises ValueError for an expression."""
    while node.type == "parenthesized_expression":
        node = node.named_children[0]
    if node.type == "string":
        if any(c.type == "interpolation" for c in node.named_children):
            raise ValueError(f"interpolated string: {text(node)}")
        return "".join(text(c) for c in node.named_children if c.type == "string_content")
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "null":
        return None
    if node.type == "array":
        return [literal(c) for c in node.named_children]
    if node.type == "object":
        return {key: literal(value) for key, value in properties(node).items()}
    raise ValueError(f"not a literal: {node.type} {text(node)[:60]}")


def string_template(node: Node) -> str:
    """A string with its interpolations kept as ${expr} text."""
    assert node.type == "string", text(node)
    return "".join(
        text(c) if c.type == "string_content" else "${" + text(c.named_children[0]) + "}"
        for c in node.named_children
        if c.type in ("string_content", "interpolation")
    )


def properties(obj: Node) -> dict[str, Node]:
    assert obj.type == "object", obj.type
    out: dict[str, Node] = {}
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        key, value = prop.named_children[0], prop.named_children[-1]
        out[literal(key) if key.type == "string" else text(key)] = value
    return out


def path(obj: Node, dotted: str) -> Node:
    node = obj
    for part in dotted.split("."):
        node = properties(node)[part]
    return node


def body_of(node: Node) -> Node:
    """The object of a resource/module declaration, through `if (...)` and `[for ...]`."""
    body = node.named_children[-1]
    while body.type in ("if_statement", "for_statement", "array"):
        body = body.named_children[-1]
    assert body.type == "object", f"{text(node)[:80]}: body is {body.type}"
    return body


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    existing: bool
    body: Node


@dataclass(frozen=True)
class BicepFile:
    path: Path
    root: Node

    @classmethod
    def load(cls, file: Path) -> BicepFile:
        return cls(file, PARSER.parse(file.read_bytes()).root_node)

    def declarations(self, kind: str) -> Iterator[tuple[Node, Node | None]]:
        """(declaration, its decorators node or None) for each top-level declaration of a kind."""
        children = self.root.named_children
        for i, node in enumerate(children):
            if node.type == kind:
                decorators = children[i - 1] if i and children[i - 1].type == "decorators" else None
                yield node, decorators

    def resources(self) -> list[Resource]:
        out = []
        for node, _ in self.declarations("resource_declaration"):
            type_and_version = literal(node.named_children[1])
            out.append(
                Resource(
                    file=self.path,
                    symbol=text(node.named_children[0]),
                    type=type_and_version.split("@")[0],
                    existing=any(c.type == "existing" for c in node.children),
                    body=body_of(node),
                )
            )
        return out

    def variables(self) -> dict[str, Node]:
        return {
            text(n.named_children[0]): n.named_children[-1]
            for n, _ in self.declarations("variable_declaration")
        }

    def params(self) -> dict[str, tuple[Node, Node | None]]:
        """name -> (declaration, decorators)."""
        return {text(n.named_children[0]): (n, d) for n, d in self.declarations("parameter_declaration")}

    def param_default(self, name: str) -> Any:
        node, _ = self.params()[name]
        assert any(c.type == "=" for c in node.children), f"{name} has no default"
        return literal(node.named_children[-1])

    def modules(self) -> dict[str, tuple[str, Node, Node]]:
        """symbol -> (path, body object, declaration)."""
        out = {}
        for node, _ in self.declarations("module_declaration"):
            out[text(node.named_children[0])] = (literal(node.named_children[1]), body_of(node), node)
        return out

    def outputs(self) -> dict[str, Node]:
        return {text(n.named_children[0]): n for n, _ in self.declarations("output_declaration")}


def decorator_args(decorators: Node | None, name: str) -> list[Node] | None:
    if decorators is None:
        return None
    for decorator in decorators.named_children:
        call = decorator.named_children[0]
        if call.type == "call_expression" and text(call.named_children[0]) == name:
            return list(call.named_children[1].named_children)
    return None


def load(name: str) -> BicepFile:
    return BicepFile.load(MODULES / name if name != "main.bicep" else MAIN)


def all_resources(type_name: str) -> list[Resource]:
    found = [
        r for f in BICEP_FILES for r in BicepFile.load(f).resources() if r.type.lower() == type_name.lower()
    ]
    return [r for r in found if not r.existing]


# ---- every file compiles ------------------------------------------------------------------------


def test_the_infrastructure_is_all_there() -> None:
    names = {p.name for p in MODULES.glob("*.bicep")}
    for expected in (
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
    ):
        assert expected in names
    assert (
        MAIN.exists()
        and (INFRA / "main.parameters.json").exists()
        and (INFRA / "abbreviations.json").exists()
    )


@pytest.mark.parametrize("file", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses_without_error_or_missing_nodes(file: Path) -> None:
    root = PARSER.parse(file.read_bytes()).root_node
    problems = [
        f"{n.start_point.row + 1}:{n.start_point.column + 1} {'MISSING ' + n.type if n.is_missing else repr(text(n)[:60])}"
        for n in walk(root)
        if n.type == "ERROR" or n.is_missing
    ]
    assert not problems, f"{file.name}: {problems}"


# Top-level resource properties Bicep requires to be known when a deployment starts (BCP120), and
# the members of an existing resource that are (Azure/bicep AzResourceTypeProvider:
# ReadWriteDeployTimeConstantPropertyNames / WriteOnlyDeployTimeConstantPropertyNames).
DEPLOY_TIME_CONSTANT_PROPERTIES = ("name", "location", "kind", "sku", "identity", "tags", "zones", "plan")
READABLE_AT_DEPLOY_START = {"id", "name", "type", "apiVersion"}


@pytest.mark.parametrize("file", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_deploy_time_constant_properties_read_nothing_known_only_at_run_time(file: Path) -> None:
    """The check `bicep build` makes (BCP120) and the offline type checker does not: an existing
    resource's location or a module's outputs are only known while the deployment runs."""
    bicep = BicepFile.load(file)
    existing = {r.symbol for r in bicep.resources() if r.existing}
    modules = set(bicep.modules())
    access = re.compile(r"\b([A-Za-z_]\w*)(?:\[[^\]]*\])?\.(\w+)")
    problems = []
    for resource in bicep.resources():
        if resource.existing:
            continue
        props = properties(resource.body)
        for name in DEPLOY_TIME_CONSTANT_PROPERTIES:
            if name not in props:
                continue
            for symbol, member in access.findall(text(props[name])):
                if (symbol in existing and member not in READABLE_AT_DEPLOY_START) or symbol in modules:
                    problems.append(f"{resource.symbol}.{name}: {symbol}.{member}")
    assert not problems, f"{file.name}: {problems}"


def _bicep_cli() -> str:
    return find_tool(
        "bicep",
        env_var="BICEP",
        how_to_install="bicep build / bicep lint did not run here (install it with `az bicep install` "
        "or from the Bicep releases; CI takes it from ../shared/bin)",
    )


def test_bicep_build_compiles_main_and_every_module_without_warnings() -> None:
    bicep = _bicep_cli()
    result = subprocess.run(
        [bicep, "build", str(MAIN), "--stdout"], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    diagnostics = [line for line in result.stderr.splitlines() if re.search(r": (Warning|Error) ", line)]
    assert not diagnostics, "\n".join(diagnostics)
    template = json.loads(result.stdout)
    assert template["$schema"].endswith("subscriptionDeploymentTemplate.json#")


def test_bicep_lint_reports_nothing_for_any_file() -> None:
    bicep = _bicep_cli()
    findings = []
    for file in BICEP_FILES:
        result = subprocess.run(
            [bicep, "lint", str(file)], capture_output=True, text=True, timeout=300, check=False
        )
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or re.search(r": (Warning|Error) ", output):
            findings.append(f"{file.relative_to(INFRA)}:\n{output}")
    assert not findings, "\n".join(findings)


# ---- no keys anywhere --------------------------------------------------------------------------


@pytest.mark.parametrize("file", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_no_key_listing_functions_or_keyed_connection_strings(file: Path) -> None:
    root = BicepFile.load(file).root
    for node in walk(root):
        if node.type in ("identifier", "property_identifier") and re.match(r"^list[A-Z]", text(node)):
            pytest.fail(f"{file.name}:{node.start_point.row + 1}: {text(node)} hands out keys")
        if node.type == "string_content":
            for marker in ("AccountKey=", "SharedAccessKey", "SharedAccessSignature", "InstrumentationKey="):
                assert marker not in text(node), f"{file.name}:{node.start_point.row + 1}: {marker}"
    assert "@secure" not in file.read_text(), f"{file.name}: a secure parameter means a secret is passed in"


def test_every_storage_account_refuses_shared_keys() -> None:
    accounts = all_resources("Microsoft.Storage/storageAccounts")
    assert {r.file.name for r in accounts} >= {"storage.bicep", "demo-workspace.bicep"}
    for account in accounts:
        props = path(account.body, "properties")
        assert literal(properties(props)["allowSharedKeyAccess"]) is False, account.file.name
        assert literal(properties(props)["allowBlobPublicAccess"]) is False, account.file.name
        assert literal(properties(props)["minimumTlsVersion"]) == "TLS1_2", account.file.name


def test_application_insights_is_workspace_based_with_local_auth_disabled() -> None:
    components = all_resources("Microsoft.Insights/components")
    assert components, "no Application Insights component"
    for component in components:
        props = properties(path(component.body, "properties"))
        assert literal(props["DisableLocalAuth"]) is True
        assert "WorkspaceResourceId" in props
    workspaces = all_resources("Microsoft.OperationalInsights/workspaces")
    assert workspaces and all(
        literal(path(w.body, "properties.features.disableLocalAuth")) is True for w in workspaces
    )


def test_every_key_vault_uses_rbac_soft_delete_and_purge_protection() -> None:
    vaults = all_resources("Microsoft.KeyVault/vaults")
    assert {v.file.name for v in vaults} >= {"keyvault.bicep"}
    for vault in vaults:
        props = properties(path(vault.body, "properties"))
        assert literal(props["enableRbacAuthorization"]) is True, vault.file.name
        assert literal(props["enableSoftDelete"]) is True, vault.file.name
        assert literal(props["enablePurgeProtection"]) is True, vault.file.name
        assert "accessPolicies" not in props, vault.file.name


# ---- least privilege -----------------------------------------------------------------------------


def _role_ids(file: BicepFile, expression: Node) -> set[str]:
    """GUIDs an expression resolves to (through variables), or the parameter names it takes."""
    found: set[str] = set()
    variables = file.variables()
    params = file.params()
    for node in walk(expression):
        if node.type == "string_content" and GUID.match(text(node)):
            found.add(text(node).lower())
        elif node.type == "identifier" and text(node) in variables:
            found |= _role_ids(file, variables[text(node)])
        elif node.type == "identifier" and text(node) in params:
            found.add(f"param:{text(node)}")
    return found


def test_every_role_assignment_grants_an_allow_listed_role() -> None:
    granted: dict[str, list[str]] = {}
    for bicep in BICEP_FILES:
        file = BicepFile.load(bicep)
        for resource in file.resources():
            if resource.type != "Microsoft.Authorization/roleAssignments" or resource.existing:
                continue
            props = properties(path(resource.body, "properties"))
            roles = _role_ids(file, props["roleDefinitionId"])
            assert len(roles) == 1, (
                f"{bicep.name}:{resource.symbol}: role id does not resolve to one role: {roles}"
            )
            (role,) = roles
            if role.startswith("param:"):
                assert (bicep.name, role.removeprefix("param:")) == CUSTOM_ROLE_PARAM, f"{bicep.name}: {role}"
            else:
                assert role in ALLOWED_BUILTIN_ROLES, (
                    f"{bicep.name}:{resource.symbol} grants {role}, not allow-listed"
                )
            assert literal(props["principalType"]) == "ServicePrincipal", f"{bicep.name}:{resource.symbol}"
            granted.setdefault(role, []).append(f"{bicep.name}:{resource.symbol}")
    # Each allow-listed role is actually needed: a stale entry would hide an unreviewed change.
    assert set(ALLOWED_BUILTIN_ROLES) <= set(granted), set(ALLOWED_BUILTIN_ROLES) - set(granted)
    assert f"param:{CUSTOM_ROLE_PARAM[1]}" in granted


def test_the_custom_role_has_only_the_three_aml_read_actions_and_is_what_workspaces_get() -> None:
    role_file = load("aml-reader-role.bicep")
    (definition,) = [r for r in role_file.resources() if r.type == "Microsoft.Authorization/roleDefinitions"]
    props = properties(path(definition.body, "properties"))
    (permission,) = props["permissions"].named_children
    permission_props = properties(permission)
    actions = permission_props["actions"]
    actions_value = literal(role_file.variables()[text(actions)] if actions.type == "identifier" else actions)
    assert actions_value == AML_READ_ACTIONS
    for empty in ("notActions", "dataActions", "notDataActions"):
        assert literal(permission_props[empty]) == []
    assert literal(props["type"]) == "CustomRole"
    # Assignable only in the workspace's resource group, not the subscription.
    main = load("main.bicep")
    _, role_module, _ = main.modules()["readerRoles"]
    assert string_template(path(role_module, "params.assignableScope")) == (
        "/subscriptions/${ws.subscriptionId}/resourceGroups/${ws.resourceGroup}"
    )
    _, access_module, _ = main.modules()["workspaceAccess"]
    assert (
        text(path(access_module, "params.amlReaderRoleDefinitionId"))
        == "readerRoles[i].outputs.roleDefinitionId"
    )
    assert text(path(access_module, "scope")) == "resourceGroup(ws.subscriptionId, ws.resourceGroup)"
    # The assignment's scope is the workspace itself.
    access = load("workspace-access.bicep")
    (assignment,) = [r for r in access.resources() if r.type == "Microsoft.Authorization/roleAssignments"]
    assert text(path(assignment.body, "scope")) == "workspace"


def test_workspace_role_assignment_name_has_the_principal_and_is_the_one_teardown_removes() -> None:
    """A role assignment's principal cannot change under the same name (RoleAssignmentUpdateNotPermitted),
    and one left on a customer's workspace for a deleted identity is not removed by Azure: the name
    must change with the identity. The postdown hook deletes the ids of AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS,
    so that output must name exactly the assignment deployed."""
    main = load("main.bicep")
    _, access_module, _ = main.modules()["workspaceAccess"]
    deployed = text(path(access_module, "params.assignmentGuid"))
    assert "identity.outputs.principalId" in deployed
    output = text(main.outputs()["AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS"])
    (guid_call,) = re.findall(r"guid\([^)]*\([^)]*\)[^)]*\)", output)
    assert guid_call == deployed.replace("ws.id", "id")


def test_only_the_role_assignment_is_deployed_into_an_observed_workspace_resource_group() -> None:
    """`azd down` deletes every resource group holding a resource of the deployment; anything else
    placed in a workspace's own group would take the customer's workspace down with it."""
    main = load("main.bicep")
    in_workspace_group = [
        symbol
        for symbol, (_, body, _) in main.modules().items()
        if "scope" in properties(body) and "ws.resourceGroup" in text(path(body, "scope"))
    ]
    assert in_workspace_group == ["workspaceAccess"]
    access = load("workspace-access.bicep")
    created = [r.type for r in access.resources() if not r.existing]
    assert created == ["Microsoft.Authorization/roleAssignments"]
    # System topics and event subscriptions go to this environment's group in the workspace's subscription.
    for symbol in ("systemTopics", "eventSubscriptions"):
        _, body, _ = main.modules()[symbol]
        assert text(path(body, "scope")) == "resourceGroup(ws.subscriptionId, resourceGroupName)"
    # And the predown hook has a switch to take even the role assignment out of the deployment.
    assert literal(main.variables()["observedWorkspaceIds"].named_children[1]) == []


def test_every_role_assignment_scope_is_the_narrowest_resource() -> None:
    expected_scope = {
        ("rbac.bicep", "blobOwner"): "storageAccount",
        ("rbac.bicep", "queueContributor"): "storageAccount",
        ("rbac.bicep", "tableContributor"): "storageAccount",
        ("rbac.bicep", "metricsPublisher"): "applicationInsights",
        ("rbac.bicep", "secretsUser"): "connectionStringSecret",
        ("deadletter-access.bicep", "deadLetterWriter"): "deadLetterContainer",
        ("workspace-access.bicep", "amlReader"): "workspace",
    }
    for (name, symbol), scope in expected_scope.items():
        (resource,) = [r for r in load(name).resources() if r.symbol == symbol]
        assert text(path(resource.body, "scope")) == scope, (name, symbol)


# ---- the Function App ---------------------------------------------------------------------------


def _app_settings() -> dict[str, Node]:
    (config,) = [r for r in load("functionapp.bicep").resources() if r.type == "Microsoft.Web/sites/config"]
    assert literal(path(config.body, "name")) == "appsettings"
    return properties(path(config.body, "properties"))


def test_credential_settings_are_key_vault_references_resolved_with_the_user_identity() -> None:
    app_settings = _app_settings()
    credential_like = [name for name in app_settings if CREDENTIAL_SETTING.search(name)]
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in credential_like
    for name in credential_like:
        value = app_settings[name]
        assert value.type == "string" and string_template(value).startswith(KEY_VAULT_REFERENCE), name
    (site,) = [r for r in load("functionapp.bicep").resources() if r.type == "Microsoft.Web/sites"]
    assert text(path(site.body, "properties.keyVaultReferenceIdentity")) == "identityId"
    assert literal(path(site.body, "identity.type")) == "UserAssigned"
    # The vault's reader role is on the very secret the reference names.
    main = load("main.bicep")
    _, fn_module, _ = main.modules()["functionApp"]
    assert text(path(fn_module, "params.appInsightsConnectionStringSecretUri")) == (
        "keyVault.outputs.appInsightsConnectionStringSecretUri"
    )


def test_app_settings_are_the_ones_the_code_reads_and_none_flex_consumption_rejects() -> None:
    app_settings = _app_settings()
    assert not set(app_settings) & FLEX_FORBIDDEN_SETTINGS
    assert literal(app_settings["AzureWebJobsStorage__credential"]) == "managedidentity"
    assert string_template(app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]) == (
        "Authorization=AAD;ClientId=${identityClientId}"
    )
    for name in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"):
        assert text(app_settings[name]) == "identityClientId"
    assert "environment().resourceManager" in text(load("functionapp.bicep").variables()["armEndpoint"])

    # Substitute what ARM would put in (storage endpoints end in '/', the ARM endpoint is trimmed)
    # and check the app's own settings loader accepts them as identity-based storage.
    deployed_values = {
        "storageAccount.properties.primaryEndpoints.blob": "https://stabc.blob.core.windows.net/",
        "storageAccount.properties.primaryEndpoints.queue": "https://stabc.queue.core.windows.net/",
        "storageAccount.properties.primaryEndpoints.table": "https://stabc.table.core.windows.net/",
        "identityClientId": "00000000-0000-0000-0000-00000000c1d0",
    }
    env: dict[str, str] = {}
    for name, node in app_settings.items():
        if node.type == "string":
            rendered = string_template(node)
            for expression, value in deployed_values.items():
                rendered = rendered.replace("${" + expression + "}", value)
            env[name] = rendered
        elif text(node) in deployed_values:
            env[name] = deployed_values[text(node)]
    env["AML_OBS_ARM_ENDPOINT"] = "https://management.azure.com"
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "IngestionEndpoint=https://example.invalid/"
    loaded = settings.Settings.from_env(env)
    assert loaded.storage is not None
    assert loaded.storage.connection_string is None
    assert loaded.storage.blob_service_uri == "https://stabc.blob.core.windows.net"
    assert loaded.storage.table_service_uri == "https://stabc.table.core.windows.net"
    assert loaded.storage.client_id == loaded.azure_client_id == deployed_values["identityClientId"]
    assert (
        loaded.appinsights_authentication_string
        == f"Authorization=AAD;ClientId={deployed_values['identityClientId']}"
    )


def test_function_app_is_flex_consumption_python_https_only_tls12_no_rejected_site_config() -> None:
    fn = load("functionapp.bicep")
    (plan,) = [r for r in fn.resources() if r.type == "Microsoft.Web/serverfarms"]
    assert literal(path(plan.body, "sku")) == {"tier": "FlexConsumption", "name": "FC1"}
    (site,) = [r for r in fn.resources() if r.type == "Microsoft.Web/sites"]
    props = path(site.body, "properties")
    assert literal(path(props, "httpsOnly")) is True
    assert literal(path(props, "siteConfig.minTlsVersion")) == "1.2"
    assert literal(path(props, "siteConfig.scmMinTlsVersion")) == "1.2"
    # Flex Consumption has no FTP and Resource Manager refuses these siteConfig properties on a Flex
    # site (error 51021); runtime and scale belong in functionAppConfig.
    rejected = {
        "ftpsState",
        "linuxFxVersion",
        "alwaysOn",
        "use32BitWorkerProcess",
        "netFrameworkVersion",
        "preWarmedInstanceCount",
        "functionAppScaleLimit",
        "functionsRuntimeScaleMonitoringEnabled",
    }
    assert not set(properties(path(props, "siteConfig"))) & rejected
    assert literal(path(props, "functionAppConfig.runtime.name")) == "python"
    assert text(path(props, "functionAppConfig.runtime.version")) == "pythonVersion"
    deployment = path(props, "functionAppConfig.deployment.storage")
    assert literal(path(deployment, "type")) == "blobContainer"
    assert literal(path(deployment, "authentication.type")) == "UserAssignedIdentity"
    # azd finds the app to deploy by this tag; it must name the service in azure.yaml.
    assert "'azd-service-name': serviceName" in text(path(site.body, "tags"))


def test_python_version_defaults_to_the_version_the_tests_run_on() -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert load("functionapp.bicep").param_default("pythonVersion") == running
    main = load("main.bicep")
    assert main.param_default("pythonVersion") == running
    _, fn_module, _ = main.modules()["functionApp"]
    assert text(path(fn_module, "params.pythonVersion")) == "pythonVersion"


# ---- Event Grid ----------------------------------------------------------------------------------


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


def test_event_subscription_endpoint_names_the_function_src_function_app_defines() -> None:
    main = load("main.bicep")
    function_name = literal(main.variables()["eventFunctionName"])
    assert function_name in _event_grid_functions_in_function_app()
    _, subscription_module, _ = main.modules()["eventSubscriptions"]
    assert text(path(subscription_module, "params.functionName")) == "eventFunctionName"
    assert text(path(subscription_module, "params.functionAppId")) == "functionApp.outputs.id"
    (subscription,) = [r for r in load("event-subscription.bicep").resources() if not r.existing]
    destination = path(subscription.body, "properties.destination")
    assert literal(path(destination, "endpointType")) == "AzureFunction"
    assert (
        string_template(path(destination, "properties.resourceId"))
        == "${functionAppId}/functions/${functionName}"
    )


def test_event_type_filter_is_exactly_what_the_code_accepts() -> None:
    main = load("main.bicep")
    _, decorators = main.params()["includedEventTypes"]
    allowed = decorator_args(decorators, "allowed")
    assert allowed is not None and set(literal(allowed[0])) == set(events.SUPPORTED_EVENT_TYPES)
    assert main.param_default("includedEventTypes") == list(events.SUPPORTED_EVENT_TYPES)
    (subscription,) = [r for r in load("event-subscription.bicep").resources() if not r.existing]
    assert text(path(subscription.body, "properties.filter.includedEventTypes")) == "includedEventTypes"
    _, subscription_module, _ = main.modules()["eventSubscriptions"]
    assert text(path(subscription_module, "params.includedEventTypes")) == "includedEventTypes"


def _status_filter() -> dict[str, Any]:
    (subscription,) = [r for r in load("event-subscription.bicep").resources() if not r.existing]
    filters = path(subscription.body, "properties.filter.advancedFilters")
    # empty(excludedRunStatuses) ? [] : [ {...} ]
    assert filters.type == "ternary_expression", text(filters)
    (status_filter,) = [c for c in filters.named_children if c.type == "array" and c.named_children]
    (entry,) = status_filter.named_children
    return {k: (text(v) if v.type == "identifier" else literal(v)) for k, v in properties(entry).items()}


def test_status_filter_lets_run_completed_through_and_covers_every_known_status() -> None:
    main = load("main.bicep")
    assert _status_filter() == {
        "operatorType": "StringNotIn",
        "key": "data.runStatus",
        "values": "excludedRunStatuses",
    }
    known = literal(main.variables()["knownRunStatuses"])
    assert known == list(events.KNOWN_STATUSES)
    _, decorators = main.params()["runStatuses"]
    allowed = decorator_args(decorators, "allowed")
    assert allowed is not None and literal(allowed[0]) == list(events.KNOWN_STATUSES)
    default = main.param_default("runStatuses")
    assert set(events.TERMINAL_STATUSES) | {"Running"} <= set(default)
    assert text(main.variables()["excludedRunStatuses"]) == (
        "filter(knownRunStatuses, status => !contains(runStatuses, status))"
    )

    # The default delivers every status: every status change becomes a record.
    assert set(default) == set(events.KNOWN_STATUSES)

    # Event Grid's documented semantics for StringNotIn: case-insensitive, and a missing key matches.
    def delivered(event: dict[str, Any], run_statuses: list[str]) -> bool:
        excluded = {s.lower() for s in known if s not in run_statuses}
        if event["eventType"] not in main.param_default("includedEventTypes"):
            return False
        status = event["data"].get("runStatus")
        return status is None or status.lower() not in excluded

    narrowed = ["Running", "Completed", "Failed", "Canceled"]
    completed = {"eventType": events.RUN_COMPLETED, "data": {"runId": "r"}}
    for statuses in (default, narrowed):
        assert (
            delivered(completed, statuses)
            and events.parse_event(
                {**completed, "id": "1", "topic": _WS, "data": {"runId": "r", "experimentId": "e"}}
            ).run_status
            == "Completed"
        )
        assert delivered({"eventType": events.RUN_STATUS_CHANGED, "data": {"runStatus": "FAILED"}}, statuses)
    queued = {"eventType": events.RUN_STATUS_CHANGED, "data": {"runStatus": "Queued"}}
    assert delivered(queued, default)
    assert not delivered(queued, narrowed)


_WS = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def test_failed_deliveries_are_retried_then_dead_lettered_by_the_topic_identity() -> None:
    (subscription,) = [r for r in load("event-subscription.bicep").resources() if not r.existing]
    props = path(subscription.body, "properties")
    assert set(properties(path(props, "retryPolicy"))) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
    dead_letter = path(props, "deadLetterWithResourceIdentity")
    assert literal(path(dead_letter, "identity.type")) == "SystemAssigned"
    assert literal(path(dead_letter, "deadLetterDestination.endpointType")) == "StorageBlob"
    assert "deadLetterDestination" not in properties(props), "key-based dead-lettering"
    (topic,) = [r for r in load("system-topic.bicep").resources() if not r.existing]
    assert literal(path(topic.body, "identity.type")) == "SystemAssigned"
    assert literal(path(topic.body, "properties.topicType")) == "Microsoft.MachineLearningServices.Workspaces"
    main = load("main.bicep")
    _, subscription_module, _ = main.modules()["eventSubscriptions"]
    assert (
        text(path(subscription_module, "params.deadLetterContainerName"))
        == "storage.outputs.deadLetterContainerName"
    )
    # Containers and table the code uses exist, named as DESIGN.md says.
    storage = load("storage.bicep")
    assert storage.param_default("rejectedEventsContainerName") == "rejected-events"
    assert storage.param_default("processedEventsTableName") == "processedevents"
    assert storage.param_default("deadLetterContainerName") == "deadletter-events"


def test_event_subscription_is_gated_by_enable_event_subscription() -> None:
    main = load("main.bicep")
    _, _, declaration = main.modules()["eventSubscriptions"]
    loop = declaration.named_children[-1]
    assert loop.type == "for_statement"
    condition = loop.named_children[-1]
    assert (
        condition.type == "if_statement" and text(condition.named_children[0]) == "(enableEventSubscription)"
    )
    assert main.param_default("enableEventSubscription") is False


# ---- parameters and outputs --------------------------------------------------------------------


def test_parameters_file_maps_every_required_parameter_to_azd_env_values() -> None:
    main = load("main.bicep")
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main.params()
    assert set(mapped) <= set(declared)
    required = {name for name, (node, _) in declared.items() if not any(c.type == "=" for c in node.children)}
    assert required <= set(mapped)
    env_names = {
        name: re.fullmatch(r"\$\{([A-Z_]+)(=[^}]*)?\}", v["value"]).group(1) for name, v in mapped.items()
    }  # type: ignore[union-attr]
    assert env_names["amlWorkspaceIds"] == "AML_WORKSPACE_IDS"
    assert env_names["enableEventSubscription"] == "ENABLE_EVENT_SUBSCRIPTION"
    assert env_names["alertEmails"] == "ALERT_EMAILS"
    assert mapped["enableEventSubscription"]["value"] == "${ENABLE_EVENT_SUBSCRIPTION=false}"


@pytest.mark.parametrize(
    "file",
    [f for f in BICEP_FILES if f.name not in ("dashboard.bicep", "alerts.bicep")],
    ids=lambda p: p.name,
)
def test_every_parameter_and_output_is_described(file: Path) -> None:
    bicep = BicepFile.load(file)
    for name, (_, decorators) in bicep.params().items():
        assert decorator_args(decorators, "description"), f"{file.name}: param {name}"
    if file != MAIN:
        for node, decorators in bicep.declarations("output_declaration"):
            assert decorator_args(decorators, "description"), (
                f"{file.name}: output {text(node.named_children[0])}"
            )


def test_outputs_are_azd_env_values_and_hold_no_secret() -> None:
    outputs = load("main.bicep").outputs()
    for name in (
        "AZURE_FUNCTION_APP_NAME",
        "APPLICATIONINSIGHTS_NAME",
        "AZURE_KEY_VAULT_NAME",
        "AZURE_RESOURCE_GROUP",
        "AZURE_LOCATION",
        "AZURE_STORAGE_ACCOUNT_NAME",
    ):
        assert name in outputs
    for name, node in outputs.items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
        assert not re.search(r"SECRET|PASSWORD|CONNECTION_STRING|_KEY$", name), name
        assert "ConnectionString" not in text(node) and "secretUri" not in text(node), name


def test_resource_group_is_named_after_the_environment() -> None:
    main = load("main.bicep")
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    assert abbreviations["resourcesResourceGroups"] == "rg-"
    assert (
        string_template(main.variables()["resourceGroupName"])
        == "${abbrs.resourcesResourceGroups}${environmentName}"
    )
    (group,) = [r for r in main.resources() if r.type == "Microsoft.Resources/resourceGroups"]
    assert text(path(group.body, "name")) == "resourceGroupName"


def test_demo_workspace_only_when_no_workspace_is_given() -> None:
    main = load("main.bicep")
    variables = main.variables()
    assert text(variables["deployDemoWorkspace"]) == "empty(requestedWorkspaceIds)"
    assert (
        text(variables["workspaceIds"]) == "deployDemoWorkspace ? [demoWorkspaceId] : requestedWorkspaceIds"
    )
    _, _, declaration = main.modules()["demoWorkspace"]
    condition = declaration.named_children[-1]
    assert condition.type == "if_statement" and text(condition.named_children[0]) == "(deployDemoWorkspace)"
    demo = load("demo-workspace.bicep")
    (workspace,) = [r for r in demo.resources() if r.type == "Microsoft.MachineLearningServices/workspaces"]
    assert literal(path(workspace.body, "properties.systemDatastoresAuthMode")) == "Identity"
