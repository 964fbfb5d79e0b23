"""Azure Functions entry point (Python v2 programming model): a thin adapter over ``amlobs``.

The host indexes this module at cold start, so it imports only ``azure.functions`` and the small
event model; the SDKs behind the processor load on the first event.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from amlobs.runtime import get_processor

app = func.FunctionApp()


def event_grid_payload(event: func.EventGridEvent) -> dict[str, Any]:
    """The Event Grid wire shape of the event the host decoded, as the parser (and replay) sees it."""
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


@app.function_name("aml_run_events")
@app.event_grid_trigger(arg_name="event")
def aml_run_events(event: func.EventGridEvent) -> None:
    # Transient failures propagate: the invocation fails and Event Grid redelivers (then dead-letters).
    outcome = get_processor().process(event_grid_payload(event))
    logging.getLogger("amlobs").debug("event %s: %s", outcome.event_id, outcome.kind)
