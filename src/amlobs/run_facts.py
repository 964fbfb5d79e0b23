"""Pure readers of what run history says about a run, for SDK v1 and v2 jobs alike.

The answers are ``Run`` (``GET /runs/{id}``), ``RunDetails`` (``/details``) and the run definition
(``RunDetails.runDefinition`` for v1 runs, ``GetRunDataResult.runDefinition`` from ``POST /rundata``
for v2 jobs): shapes of azure-ai-ml's ``_restclient/runhistory/models/_models.py`` and of
Microsoft's recordings in ``sdk/ml/azure-ai-ml/tests/recordings`` (``tests/data/aml/README.md``
names each one). Every reader returns None for "not said", never a default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

PIPELINE_RUN_TYPE = "azureml.PipelineRun"
MAX_SCRIPT_CHARS = 1024
MAX_ERROR_MESSAGE_CHARS = 4096
ANONYMOUS_COMPONENT = "azureml_anonymous"

# One vocabulary for the compute a run used. The service writes the same cluster as "AmlCompute"
# (properties.ComputeTargetType), "amlctrain" (properties._azureml.ComputeTargetType of v2 jobs),
# "AmlcTrain" (runTypeV2.computeType), "amlcompute" (compute.targetType) or "batchai" (v1 ScriptRun);
# the names on the right are azure-ai-ml's ComputeType values. Unlisted raw values pass through.
_COMPUTE_TYPES = {
    "amlcompute": "AmlCompute",
    "amlctrain": "AmlCompute",
    "batchai": "AmlCompute",
    "computeinstance": "ComputeInstance",
    "kubernetes": "Kubernetes",
    "cmk8s": "Kubernetes",
    "aks": "Kubernetes",
    "virtualmachine": "VirtualMachine",
    "databricks": "Databricks",
    "hdinsight": "HDInsight",
    "synapsespark": "SynapseSpark",
    "local": "Local",
    "serverless": "Serverless",
}
_CLUSTER_TYPES = frozenset({"AmlCompute"})
_TIMESPAN = re.compile(
    r"^(?P<sign>-)?(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?$"
)


def path(source: Mapping[str, Any] | None, *keys: str) -> Any:
    current: Any = source
    for key in keys:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def integer(value: Any) -> int | None:
    """An int, not a bool (JSON's ``true`` is no count of milliseconds)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def first_known(*values: int | None) -> int | None:
    """The first value that is known (0 is a value, unlike with ``or``)."""
    return next((value for value in values if value is not None), None)


def first_text(*values: Any) -> str | None:
    for value in values:
        found = text(value)
        if found is not None:
            return found
    return None


def lookup(sources: Iterable[Mapping[str, Any] | None], *keys: str) -> str | None:
    """First non-empty string value among ``keys`` (case-insensitive) across ``sources``, in order."""
    wanted = [k.lower() for k in keys]
    for source in sources:
        # A malformed answer (properties as a list or a string) is unknown, not a crash that would
        # fail the invocation on every redelivery.
        if not isinstance(source, Mapping) or not source:
            continue
        lowered = {str(k).lower(): v for k, v in source.items()}
        for key in wanted:
            value = lowered.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
    return None


def run_definition(value: Any) -> Mapping[str, Any] | None:
    """A run definition as an object (the TypeSpec models type it as a string, the service sends an
    object; both are read). None when absent or empty."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) and value else None


def timespan_ms(value: Any) -> int | None:
    """.NET ``TimeSpan`` text (``"00:00:10.4548575"``, ``"1.02:03:04"``) → milliseconds."""
    if not isinstance(value, str):
        return None
    match = _TIMESPAN.match(value.strip())
    if match is None or match["sign"]:
        return None
    fraction = (match["f"] or "0")[:7].ljust(7, "0")
    ticks = (
        ((int(match["days"] or 0) * 24 + int(match["h"])) * 60 + int(match["m"])) * 60 + int(match["s"])
    ) * 10_000_000 + int(fraction)
    return round(ticks / 10_000)


def script(definition: Mapping[str, Any] | None, run: Mapping[str, Any] | None) -> str | None:
    """The script, else the command (v2 jobs), else the run's ``scriptName``; at most 1024 chars."""
    value = first_text(path(definition, "script"), path(definition, "command"), path(run, "scriptName"))
    if value is not None and len(value) > MAX_SCRIPT_CHARS:
        value = value[: MAX_SCRIPT_CHARS - 1] + "…"
    return value


def environment(definition: Mapping[str, Any] | None) -> str | None:
    """``name:version`` of the run's environment (just the name when it has no version)."""
    name = text(path(definition, "environment", "name"))
    version = text(path(definition, "environment", "version"))
    if name is None:
        return None
    return f"{name}:{version}" if version else name


def image(definition: Mapping[str, Any] | None, properties: Iterable[Mapping[str, Any] | None]) -> str | None:
    """Base image; else the environment (``name:version``, else its asset id); else the image v1
    built for the run (``AzureML.DerivedImageName``). Curated and Dockerfile environments have no
    base image."""
    return first_text(
        path(definition, "environment", "docker", "baseImage"),
        environment(definition),
        path(definition, "environment", "assetId"),
    ) or lookup(properties, "AzureML.DerivedImageName")


def compute_target_type(
    properties: list[Mapping[str, Any] | None], runs: Iterable[Mapping[str, Any] | None]
) -> tuple[str | None, str | None]:
    """(normalised type, raw value it came from)."""
    raw = lookup(properties, "ComputeTargetType", "azureml.computeTargetType", "_azureml.ComputeTargetType")
    for run in runs:
        raw = raw or first_text(
            path(run, "compute", "targetType"),
            path(run, "runTypeV2", "computeType"),
            path(run, "computeTargetType"),
        )
    if raw is None:
        return None, None
    return _COMPUTE_TYPES.get(raw.replace(" ", "").lower(), raw), raw


def compute_name(
    definition: Mapping[str, Any] | None, runs: Iterable[Mapping[str, Any] | None]
) -> str | None:
    """The compute target's name; absent for serverless jobs (they name none)."""
    for run in runs:
        name = first_text(path(run, "target"), path(run, "compute", "target"))
        if name is not None:
            return None if name.lower() == "serverless" else name
    name = text(path(definition, "target"))
    return None if name is None or name.lower() == "serverless" else name


def serverless_type(normalised: str | None, name: str | None) -> str | None:
    """A cluster-type job that names no cluster ran on serverless compute."""
    if normalised in _CLUSTER_TYPES and name is None:
        return "Serverless"
    return normalised


def is_pipeline(run_type: str | None) -> bool:
    return run_type is not None and run_type.lower() == PIPELINE_RUN_TYPE.lower()


def is_reused(run: Mapping[str, Any]) -> bool:
    """A pipeline step whose output an earlier pipeline run computed (``azureml.isreused``)."""
    return str(path(run, "properties", "azureml.isreused") or "").strip().lower() == "true"


def run_type_of(run: Mapping[str, Any] | None) -> str | None:
    """A run answer's type: ``runType``, else ``properties.azureml.runsource`` (azureml-core filters
    on either: ``(RunType eq x or Properties/azureml.runsource eq x)``, ``_odata/constants.py``)."""
    return text(path(run, "runType")) or lookup([path(run, "properties")], "azureml.runsource")


# (run template, run type) → job kind; the template is more specific (AutoML trials carry no type).
_KIND_BY_TEMPLATE = {"automl_child": "automl_trial", "automl": "automl", "hyperdrive": "sweep"}
_KIND_BY_RUN_TYPE = {
    "automl": "automl",
    "hyperdrive": "sweep",
    PIPELINE_RUN_TYPE.lower(): "pipeline",
    "azureml.steprun": "pipeline_step",
    "azureml.reusedsteprun": "pipeline_step",
    "azureml.scriptrun": "command",
}


def job_kind(run_type: str | None, properties: list[Mapping[str, Any] | None]) -> str | None:
    """A clear name for what ran: pipeline, pipeline_step, automl, automl_trial, sweep, command.

    v2 command jobs have no run type in the answers Microsoft recorded; they are the runs placed on
    a compute by the v2 job service (``_azureml.ComputeTargetType``) that are nothing else.
    """
    template = (lookup(properties, "runTemplate", "run_template") or "").lower()
    kind = _KIND_BY_TEMPLATE.get(template) or _KIND_BY_RUN_TYPE.get((run_type or "").lower())
    if kind is None and lookup(properties, "_azureml.ComputeTargetType") is not None:
        kind = "command"
    return kind


def step_name(
    kind: str | None, run: Mapping[str, Any] | None, properties: list[Mapping[str, Any] | None]
) -> str | None:
    """A pipeline step's component (``azureml.moduleName``); for an anonymous (inline) component the
    node's display name, which is what the pipeline calls it."""
    if kind != "pipeline_step":
        return None
    module = lookup(properties, "azureml.moduleName")
    if module is not None and module != ANONYMOUS_COMPONENT:
        return module
    return text(path(run, "displayName"))


def _root_error(answer: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``RunHistoryErrorResponse.error`` (a ``RootError``), or a bare ``RootError``."""
    error = path(answer, "error")
    nested = path(error, "error")
    if isinstance(nested, Mapping):
        return nested
    return error if isinstance(error, Mapping) else None


def error_facts(*answers: Mapping[str, Any] | None) -> dict[str, str]:
    """error_category (the service's coarse code), error_code (the most specific code),
    error_code_chain (top > inner > …), error_message, error_details."""
    for answer in answers:
        root = _root_error(answer)
        if root is None:
            continue
        category, message = text(root.get("code")), text(root.get("message"))
        if category is None and message is None:
            continue
        chain = [category] if category else []
        inner = root.get("innerError")
        for _ in range(32):  # a cycle-safe bound: real chains are a few levels deep
            if not isinstance(inner, Mapping):
                break
            code = text(inner.get("code"))
            if code:
                chain.append(code)
            inner = inner.get("innerError")
        details = [
            ": ".join(part for part in (text(d.get("code")), text(d.get("message"))) if part)
            for d in root.get("details") or []
            if isinstance(d, Mapping)
        ]
        facts = {
            "error_category": category,
            "error_code": chain[-1] if chain else None,
            "error_code_chain": " > ".join(chain) if len(chain) > 1 else None,
            "error_message": _capped(message),
            "error_details": _capped("\n".join(d for d in details if d)),
        }
        return {key: value for key, value in facts.items() if value}
    return {}


def _capped(value: str | None) -> str | None:
    if value and len(value) > MAX_ERROR_MESSAGE_CHARS:
        return value[:MAX_ERROR_MESSAGE_CHARS] + "…"
    return value or None
