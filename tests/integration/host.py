"""Drive ``function_app`` the way the Functions Python worker does: index the app once, decode the
trigger payload with the binding's registered converter, call the user function."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import azure.functions as func
from azure.functions import meta


@cache
def indexed_functions() -> dict[str, Any]:
    # The worker indexes once per process; azure-functions refuses a second get_functions() on the
    # same app object (it would see every name twice).
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def trigger_binding(function_name: str = "aml_run_events") -> Any:
    function = indexed_functions()[function_name]
    triggers = [b for b in function.get_bindings() if b.type.endswith("Trigger")]
    assert len(triggers) == 1, triggers
    return triggers[0]


def invoke(event: dict[str, Any] | str, function_name: str = "aml_run_events") -> None:
    """One invocation; raises exactly what the user function raises (the host then fails it)."""
    function = indexed_functions()[function_name]
    binding = trigger_binding(function_name)
    converter = func.get_binding_registry().get(binding.type)
    body = event if isinstance(event, str) else json.dumps(event)
    argument = converter.decode(meta.Datum(body, "json"), trigger_metadata={})
    function.get_user_function()(**{binding.name: argument})
