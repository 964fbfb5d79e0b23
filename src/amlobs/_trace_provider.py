"""The OpenTelemetry side of :mod:`amlobs.tracing`: a :class:`~amlobs.tracing.SpanPlan` → a finished span.

A private ``TracerProvider`` builds the spans, so each one is what the SDK itself would produce
(context, parent, kind, limits, status) and the exporter's own converter turns it into a ``requests``
or ``dependencies`` envelope (:mod:`amlobs._azure_monitor`). The provider is never made global and
has no span processor: nothing is exported behind the invocation's back, and nothing mixes with the
Functions worker's own telemetry. Its sampler is ``ALWAYS_ON``: the default is read from
``OTEL_TRACES_SAMPLER`` and a parent-based one would drop a span whose (remote) parent is unsampled.

Derived ids: ``Tracer.start_span`` always takes the span id from the provider's ``IdGenerator``, and
the trace id too when there is no valid parent (opentelemetry-sdk 1.45 ``sdk/trace/__init__.py``,
``Tracer.start_span``); the generator here hands out the plan's ids, per thread, right before the
span starts. A parent that is not sent in this invocation is a remote ``SpanContext``
(``NonRecordingSpan``) in the span's context. A root gets an explicit empty context, so a span the
worker may have active on this thread can never become its parent.

Imported with :mod:`amlobs._azure_monitor`, on the first unit sent (not at cold start).
"""

from __future__ import annotations

import threading

from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from . import __version__
from .settings import SettingsError
from .tracing import SpanPlan

SCOPE_NAME = "amlobs.tracing"
# Application Insights shows a span under its resource's "service.namespace.service.name"
# (ai.cloud.role): pipeline traces appear under "azureml.<workspace>", not under the function app.
SERVICE_NAMESPACE = "azureml"
_NS_PER_MS = 1_000_000


def remote_parent(trace_id: int, span_id: int) -> Context:
    """A fresh context whose current span is ``span_id`` of ``trace_id``, sent from elsewhere (or not
    at all): a parent the SDK links to without a span of its own, and never the worker's active span."""
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return set_span_in_context(NonRecordingSpan(parent), Context())


class _PlannedIds(IdGenerator):
    """Gives the SDK the ids the plan derived (per thread: invocations run concurrently)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def expect(self, trace_id: int, span_id: int) -> None:
        self._local.ids = (trace_id, span_id)

    def _ids(self) -> tuple[int, int]:
        ids: tuple[int, int] | None = getattr(self._local, "ids", None)
        if ids is None:
            raise RuntimeError("a span was started without planned ids")
        return ids

    def generate_trace_id(self) -> int:
        return self._ids()[0]

    def generate_span_id(self) -> int:
        return self._ids()[1]

    def is_trace_id_random(self) -> bool:
        return False  # derived from the root run id (W3C trace-context "random" flag off)


class TraceSpans:
    """One private provider per workspace (its resource names the cloud role), built on first use."""

    def __init__(self) -> None:
        self._ids = _PlannedIds()
        self._lock = threading.Lock()
        self._tracers: dict[str, Tracer] = {}
        self._providers: list[TracerProvider] = []

    def _tracer(self, workspace: str) -> Tracer:
        with self._lock:
            tracer = self._tracers.get(workspace)
            if tracer is None:
                resource = Resource(
                    {
                        "service.namespace": SERVICE_NAMESPACE,
                        "service.name": workspace,
                        "service.instance.id": workspace,
                    }
                )
                provider = TracerProvider(
                    sampler=ALWAYS_ON,
                    resource=resource,
                    shutdown_on_exit=False,
                    id_generator=self._ids,
                    meter_provider=NoOpMeterProvider(),
                )
                created = provider.get_tracer(SCOPE_NAME, __version__)
                if not isinstance(created, Tracer):
                    raise SettingsError(
                        "OpenTelemetry SDK is disabled (OTEL_SDK_DISABLED): pipeline traces would be lost"
                    )
                self._providers.append(provider)
                self._tracers[workspace] = tracer = created
            return tracer

    def finished_span(self, plan: SpanPlan) -> ReadableSpan:
        tracer = self._tracer(plan.workspace)
        if plan.parent_span_id is None:
            context = Context()
        else:
            context = remote_parent(plan.trace_id, plan.parent_span_id)
        self._ids.expect(plan.trace_id, plan.span_id)
        span = tracer.start_span(
            plan.name,
            context=context,
            kind=SpanKind.SERVER if plan.root else SpanKind.INTERNAL,
            attributes=dict(plan.attributes),
            start_time=plan.start_ms * _NS_PER_MS,
            record_exception=False,
            set_status_on_exception=False,
        )
        if plan.error is not None:
            span.set_status(Status(StatusCode.ERROR, plan.error))
        span.end(end_time=plan.end_ms * _NS_PER_MS)
        made = span.get_span_context()
        derived = (made.trace_id, made.span_id) == (plan.trace_id, plan.span_id)
        if not isinstance(span, ReadableSpan) or not derived:
            raise RuntimeError(f"the tracer did not build span {plan.key} with its derived ids")
        return span

    def shutdown(self) -> None:
        with self._lock:
            providers, self._providers = self._providers, []
            self._tracers.clear()
        for provider in providers:
            provider.shutdown()
