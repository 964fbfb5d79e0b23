"""Azure Functions entry point (Python v2 programming model): a thin adapter over ``amlobs``.

The host indexes this module at cold start, so it imports only ``azure.functions`` and the small
event model; the SDKs behind the processor load on the first event.

The trigger parameter is a ``str``: the Python worker then binds the event's raw JSON through its
generic binding (a ``str``/``bytes`` annotation on a binding without implicit output) instead of
decoding it with the library's ``EventGridEvent`` converter. That converter runs ``json.loads``
before any of our code, so an event nested ~1,000 levels deep failed every delivery with a
``RecursionError`` until Event Grid dead-lettered it. With the raw text, every event reaches the
processor, which records it or stores it as rejected with its body as received. (Worker source:
Azure/azure-functions-python-worker ``azure_functions_worker/functions.py``, where a ``str``
annotation selects ``param_bind_type = 'generic'``, and ``bindings/generic.py``, whose ``decode``
returns the JSON text as is.)
"""

from __future__ import annotations

import logging

import azure.functions as func

from amlobs.runtime import get_processor, get_resource_use_pass

app = func.FunctionApp()


@app.function_name("aml_run_events")
@app.event_grid_trigger(arg_name="event")
def aml_run_events(event: str) -> None:
    # Transient failures propagate: the invocation fails and Event Grid redelivers (then dead-letters).
    outcome = get_processor().process(event)
    logging.getLogger("amlobs").debug("event %s: %s", outcome.event_id, outcome.kind)


# The reconciler (docs/reconciler.md): records what Event Grid never delivered, fills history on a
# workspace's first passes (AML_OBS_BACKFILL_DAYS), and judges schedules. The host reads the NCRONTAB
# period from the app setting (default in Bicep: every 5 minutes); the host's own timer lock and the
# reconciler's lease in the storage account both keep it to one pass at a time.
@app.function_name("aml_reconciler")
@app.timer_trigger(schedule="%AML_OBS_RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def aml_reconciler(timer: func.TimerRequest) -> None:
    from amlobs.reconcile.runtime import get_reconciler

    report = get_reconciler().run_pass()
    logging.getLogger("amlobs").info(
        "reconciler pass %s: %s", report.pass_id, "done" if report.ran else "skipped (lease held)"
    )


# The resource-use pass (docs/resource-use.md): after the fact, never on the event path. Every 10 minutes
# (NCRONTAB, seconds first); each pass reads the finished runs due and spends a bounded budget. When the
# reconciler's timer lands, this pass becomes one of its steps instead of a timer of its own.
@app.function_name("aml_resource_use")
@app.timer_trigger(schedule="0 */10 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
def aml_resource_use(timer: func.TimerRequest) -> None:
    report = get_resource_use_pass().run()
    logging.getLogger("amlobs").info(
        "resource use: runs judged %s, retried %d, left due %d; idle cluster days %d; %d metrics call(s)%s",
        report.runs.judged,
        report.runs.retried,
        report.runs.left_due,
        report.clusters.clusters,
        report.runs.http_calls + report.clusters.http_calls,
        " (past due)" if timer.past_due else "",
    )
