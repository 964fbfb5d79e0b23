"""The exporter's side channels, off: set before any azure.monitor / opentelemetry import, in the test
process (tests/conftest.py) and in every worker process a test starts (tests/chaos), so that no detector
or background channel ever starts and nothing is sent but what a test sends to 127.0.0.1."""

from __future__ import annotations

QUIET_EXPORTER_ENV = {
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_LIVE_METRICS_DISABLED": "true",
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_SDK_DISABLED": "false",
}
