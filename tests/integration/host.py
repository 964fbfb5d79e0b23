"""Drive ``function_app`` the way the Functions Python worker does: index the app once, decode the
trigger payload with the binding the worker would choose for the parameter's annotation, call the
user function.

The worker's rule (Azure/azure-functions-python-worker ``azure_functions_worker/functions.py``,
``FunctionInfo``): a parameter annotated ``str`` or ``bytes`` on a binding without implicit output is
bound by the *generic* binding (``bindings/generic.py``: a ``json`` datum is handed over as its text);
any other annotation goes to the converter registered for the binding type (for ``eventGridTrigger``,
``azure.functions.eventgrid.EventGridEventInConverter``, which ``json.loads`` the payload first).
"""

from __future__ import annotations

import json
import typing
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


def _decoder(function: Any, binding: Any) -> Any:
    annotation = typing.get_type_hints(function.get_user_function()).get(binding.name)
    converter = func.get_binding_registry().get(binding.type)
    implicit_output = bool(getattr(converter, "has_implicit_output", lambda: False)())
    if annotation in (str, bytes) and not implicit_output:
        return lambda datum: datum.value  # the generic binding: the JSON text as received
    return lambda datum: converter.decode(datum, trigger_metadata={})


def invoke(event: dict[str, Any] | str, function_name: str = "aml_run_events") -> None:
    """One invocation; raises exactly what the user function raises (the host then fails it)."""
    function = indexed_functions()[function_name]
    binding = trigger_binding(function_name)
    body = event if isinstance(event, str) else json.dumps(event)
    argument = _decoder(function, binding)(meta.Datum(body, "json"))
    function.get_user_function()(**{binding.name: argument})
