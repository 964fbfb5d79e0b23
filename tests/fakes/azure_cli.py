"""Stand-ins for the `azd` and `az` commands the hook scripts call, run as real executables on PATH.

One JSON file holds the azd environment (.env values), what exists in "Azure" (role assignments,
role definitions, resource groups), faults to inject, and every call with the environment it ran in.
Only the commands and answers the hooks rely on are modelled, each after the real tool:

- `azd env get-value KEY`: the value and a newline; a missing key fails (cli/azd/cmd/env.go,
  envGetValueAction). `azd env set KEY VALUE` or `azd env set KEY=VALUE ...` (since azd 1.17.1,
  #4942); one argument without '=' fails ("invalid key=value format"), as a dropped empty argument
  would make it. `azd provision` records the values azd would read for the template parameters:
  the .env value first, the process environment otherwise (cli/azd/pkg/environment/environment.go,
  Getenv).
- `az role assignment delete --ids ID`: succeeds also when the assignment is already gone
  (azure-cli role/custom.py delete_role_assignments -> RoleAssignments_DeleteById, 204).
- `az rest --method get|delete --url ID?api-version=...`: RoleDefinitions_GetById / _Delete
  (azure-rest-api-specs authorization/stable/2022-04-01/authorization-RoleDefinitionsCalls.json:
  DELETE answers 200 or 204 when already gone, GET answers 404 RoleDefinitionDoesNotExist). A failed
  az rest prints "ERROR: <reason>(<response body>)" (azure-cli core/util.py send_raw_request).
- `az group delete --name N --subscription S`: a missing group fails with ResourceGroupNotFound.
- `az eventgrid system-topic list --subscription S --query '[].[id, source, identity.type,
  identity.principalId]' -o tsv`: the system topics of the subscription (SystemTopics_ListBySubscription,
  azure-rest-api-specs eventgrid/resource-manager/Microsoft.EventGrid/stable/2025-02-15). azure-cli
  prints the resource with its properties flattened beside id and identity (`source`, `topicType`:
  Azure/azure-cli eventgrid tests, test_eventgrid_commands.py and recordings/test_system_topic_identity.yaml,
  where a topic without identity answers `"identity": {"type": "None", "principalId": null}` or has no
  identity at all); -o tsv writes one tab-separated line per topic and an absent value (null) as
  `None`: knack's _TsvOutput._dump_obj writes str() of a scalar (microsoft/knack knack/output.py).
  Without read permission: AuthorizationFailed over the subscription.
- `az eventgrid system-topic event-subscription list --subscription S --resource-group G
  --system-topic-name T --query '[].name' -o tsv`, and `... event-subscription delete --subscription S
  --resource-group G --system-topic-name T --name N --yes` (SystemTopicEventSubscriptions_Delete answers
  200/202/204, so deleting a subscription that is gone succeeds; a topic that is gone fails with
  Resource Manager's ResourceNotFound). The only --query forms answered are the ones the hooks send.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

STATE_ENV = "FAKE_CLI_STATE"

# Injectable faults, by operation: the ids (case-insensitive) they apply to.
FAULTS = (
    "assignment_delete",  # az role assignment delete fails (no permission)
    "role_delete",  # az rest DELETE fails (no permission)
    "role_delete_ignored",  # DELETE answers success but the definition stays (a delete that did not take)
    "role_get",  # az rest GET fails with something other than 404
    "group_delete",  # az group delete fails (no permission)
    "topic_list",  # az eventgrid system-topic list fails (no read permission on the subscription)
    "event_subscription_list",  # listing a topic's event subscriptions fails (no permission)
    "event_subscription_delete",  # deleting an event subscription fails (no permission)
)
TOPIC_QUERY = "[].[id, source, identity.type, identity.principalId]"
NAME_QUERY = "[].name"
# The template parameters' env values a provision reads (infra/main.parameters.json).
PROVISION_INPUTS = (
    "AML_WORKSPACE_IDS",
    "AML_OBS_DETACH",
    "ENABLE_EVENT_SUBSCRIPTION",
    "AML_OBS_ADOPTED_SYSTEM_TOPICS",
)


def new_state(
    env: dict[str, str] | None = None,
    *,
    failing_provisions: int = 0,
    azure: dict[str, list[Any]] | None = None,
    faults: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    unknown = set(faults or {}) - set(FAULTS)
    assert not unknown, f"unknown faults {unknown}"
    return {
        "env": dict(env or {}),
        "calls": [],
        "provisions": 0,
        "failing_provisions": failing_provisions,
        "provision_inputs": [],
        "azure": {
            "roleAssignments": [],
            "roleDefinitions": [],
            "resourceGroups": [],
            # {"id", "source", "identity": {"type", "principalId"} | None}
            "systemTopics": [],
            # event subscription ids (<topic id>/eventSubscriptions/<name>)
            "eventSubscriptions": [],
            **(azure or {}),
        },
        "faults": {name: [i.lower() for i in ids] for name, ids in (faults or {}).items()},
    }


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def _has(items: list[str], item: str) -> bool:
    return item.lower() in (i.lower() for i in items)


def _remove(items: list[str], item: str) -> None:
    items[:] = [i for i in items if i.lower() != item.lower()]


def _faulty(state: dict[str, Any], fault: str, item: str) -> bool:
    return item.lower() in state["faults"].get(fault, [])


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _azd(state: dict[str, Any], args: list[str]) -> int:
    env: dict[str, str] = state["env"]
    if args[:2] == ["env", "get-value"]:
        if args[2] not in env:
            return _fail(f"ERROR: key not found in environment values: '{args[2]}'")
        print(env[args[2]])
        return 0
    if args[:2] == ["env", "set"]:
        values = args[2:]
        if len(values) == 2 and "=" not in values[0]:
            env[values[0]] = values[1]
            return 0
        if not values:
            return _fail("ERROR: no environment values provided")
        for value in values:
            key, sep, val = value.partition("=")
            if not sep:
                return _fail(f"ERROR: invalid key=value format: {value}")
            env[key] = val
        return 0
    if args[:1] == ["provision"]:
        state["provisions"] += 1
        state["provision_inputs"].append(
            {name: env.get(name, os.environ.get(name)) for name in PROVISION_INPUTS}
        )
        if state["provisions"] <= state["failing_provisions"]:
            return _fail("ERROR: deployment failed: function not found")
        return 0
    return _fail(f"fake azd: unsupported command {args}", 2)


def _role_definition_id(url: str) -> str:
    path, _, query = url.partition("?")
    if not query.startswith("api-version="):
        raise SystemExit(_fail("ERROR: Bad Request(MissingApiVersionParameter)"))
    return path


def _not_found(role_id: str) -> int:
    body = {
        "error": {
            "code": "RoleDefinitionDoesNotExist",
            "message": f"The specified role definition with ID '{role_id.rsplit('/', 1)[-1]}' does not exist.",
        }
    }
    return _fail(f"ERROR: Not Found({json.dumps(body)})")


def _forbidden(action: str, scope: str) -> str:
    return (
        "ERROR: (AuthorizationFailed) The client 'user@example.com' does not have authorization to "
        f"perform action '{action}' over scope '{scope}' or the scope is invalid."
    )


def _topic_id(args: list[str]) -> str:
    return (
        f"/subscriptions/{_option(args, '--subscription')}/resourceGroups/{_option(args, '--resource-group')}"
        f"/providers/Microsoft.EventGrid/systemTopics/{_option(args, '--system-topic-name')}"
    )


def _tsv(rows: list[list[str | None]]) -> None:
    for row in rows:
        print("\t".join(str(value) for value in row))


def _eventgrid(state: dict[str, Any], args: list[str]) -> int:
    azure: dict[str, list[Any]] = state["azure"]
    if args[:2] == ["system-topic", "list"]:
        subscription = _option(args, "--subscription")
        if (_option(args, "--query"), _option(args, "-o")) != (TOPIC_QUERY, "tsv"):
            return _fail(f"fake az: unsupported query {args}", 2)
        if _faulty(state, "topic_list", subscription):
            return _fail(
                _forbidden("Microsoft.EventGrid/systemTopics/read", f"/subscriptions/{subscription}")
            )
        topics = [t for t in azure["systemTopics"] if t["id"].split("/")[2].lower() == subscription.lower()]
        _tsv(
            [
                [
                    t["id"],
                    t["source"],
                    (t.get("identity") or {}).get("type"),
                    (t.get("identity") or {}).get("principalId"),
                ]
                for t in topics
            ]
        )
        return 0
    if args[:3] == ["system-topic", "event-subscription", "list"]:
        topic = _topic_id(args)
        if (_option(args, "--query"), _option(args, "-o")) != (NAME_QUERY, "tsv"):
            return _fail(f"fake az: unsupported query {args}", 2)
        if _faulty(state, "event_subscription_list", topic):
            return _fail(_forbidden("Microsoft.EventGrid/systemTopics/eventSubscriptions/read", topic))
        if not any(t["id"].lower() == topic.lower() for t in azure["systemTopics"]):
            return _not_found_topic(topic)
        prefix = f"{topic}/eventSubscriptions/".lower()
        _tsv([[e.rsplit("/", 1)[1]] for e in azure["eventSubscriptions"] if e.lower().startswith(prefix)])
        return 0
    if args[:3] == ["system-topic", "event-subscription", "delete"]:
        topic = _topic_id(args)
        subscription_id = f"{topic}/eventSubscriptions/{_option(args, '--name')}"
        if "--yes" not in args:
            # The real command asks for confirmation, which a hook cannot answer.
            return _fail("fake az: event-subscription delete without --yes would prompt", 2)
        if _faulty(state, "event_subscription_delete", subscription_id):
            return _fail(
                _forbidden("Microsoft.EventGrid/systemTopics/eventSubscriptions/delete", subscription_id)
            )
        if not any(t["id"].lower() == topic.lower() for t in azure["systemTopics"]):
            return _not_found_topic(topic)
        _remove(azure["eventSubscriptions"], subscription_id)
        return 0
    return _fail(f"fake az: unsupported command eventgrid {args}", 2)


def _not_found_topic(topic: str) -> int:
    parts = topic.split("/")
    return _fail(
        f"ERROR: (ResourceNotFound) The Resource 'Microsoft.EventGrid/systemTopics/{parts[8]}' under "
        f"resource group '{parts[4]}' was not found."
    )


def _az(state: dict[str, Any], args: list[str]) -> int:
    azure: dict[str, list[Any]] = state["azure"]
    if args[:1] == ["eventgrid"]:
        return _eventgrid(state, args[1:])
    if args[:3] == ["role", "assignment", "delete"]:
        assignment = _option(args, "--ids")
        if _faulty(state, "assignment_delete", assignment):
            return _fail(_forbidden("Microsoft.Authorization/roleAssignments/delete", assignment))
        _remove(azure["roleAssignments"], assignment)
        return 0
    if args[:1] == ["rest"]:
        method = _option(args, "--method").lower()
        role = _role_definition_id(_option(args, "--url"))
        exists = _has(azure["roleDefinitions"], role)
        if method == "delete":
            if _faulty(state, "role_delete", role):
                return _fail(_forbidden("Microsoft.Authorization/roleDefinitions/delete", role))
            if exists and not _faulty(state, "role_delete_ignored", role):
                _remove(azure["roleDefinitions"], role)
            if exists:
                print(json.dumps({"id": role, "type": "Microsoft.Authorization/roleDefinitions"}))
            return 0
        if method == "get":
            if _faulty(state, "role_get", role):
                return _fail(_forbidden("Microsoft.Authorization/roleDefinitions/read", role))
            if not exists:
                return _not_found(role)
            print(json.dumps({"id": role, "type": "Microsoft.Authorization/roleDefinitions"}))
            return 0
    if args[:2] == ["group", "delete"]:
        name = _option(args, "--name")
        group = f"/subscriptions/{_option(args, '--subscription')}/resourceGroups/{name}"
        if _faulty(state, "group_delete", group):
            return _fail(_forbidden("Microsoft.Resources/subscriptions/resourcegroups/delete", group))
        if not _has(azure["resourceGroups"], group):
            return _fail(f"ERROR: (ResourceGroupNotFound) Resource group '{name}' could not be found.", 3)
        _remove(azure["resourceGroups"], group)
        return 0
    return _fail(f"fake az: unsupported command {args}", 2)


def main(cli: str, args: list[str]) -> int:
    path = Path(os.environ[STATE_ENV])
    state = json.loads(path.read_text())
    state["calls"].append({"cli": cli, "args": args, "in_predown": os.environ.get("AML_OBS_IN_PREDOWN")})
    try:
        code = (_azd if cli == "azd" else _az)(state, args)
    except SystemExit as stop:
        code = int(stop.code or 0)
    path.write_text(json.dumps(state))
    return code


def write_executable(directory: Path, cli: str) -> Path:
    """An executable `cli` in ``directory`` that runs this module with the current interpreter."""
    target = directory / cli
    root = Path(__file__).resolve().parents[2]
    target.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from tests.fakes.azure_cli import main\n"
        f"sys.exit(main({cli!r}, sys.argv[1:]))\n"
    )
    target.chmod(0o755)
    return target
