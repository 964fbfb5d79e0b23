"""Pipeline runs as traces, through ``function_app`` and the ingestion fake (which enforces ingestion's
48-hour window): one span per run, one trace per pipeline run whatever the order and duplication of
the events, the run's own times, failures marked, and nothing that can fail forever."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amlobs.errors import TelemetryExportFailed
from tests.fakes.ingestion import DEPENDENCY_ENVELOPE, METRIC_ENVELOPE, TOO_OLD
from tests.integration.conftest import App
from tests.integration.host import invoke
from tests.integration.test_cli import run_cli
from tests.trace_scenario import (
    RECORDED_ERROR_CODE,
    Pipeline,
    Span,
    events_in,
    lifecycle_events,
    ms,
    parse_time,
    recorded_v2_pipeline,
    run_event,
    spans_from,
    trace_of,
    v1_pipeline,
    v2_pipeline,
)

HOUR = timedelta(hours=1)


def deliver_shuffled(pipeline: Pipeline, *, seed: int) -> list[dict[str, Any]]:
    """Every event of the pipeline once, a third of them twice, in a shuffled order in which a step's
    terminal event comes before its pipeline's (as Event Grid may deliver them)."""
    rng = random.Random(seed)
    deliveries = pipeline.events + rng.sample(pipeline.events, len(pipeline.events) // 3)
    rng.shuffle(deliveries)
    first_step_done = next(
        e for e in deliveries if e["data"]["runId"] != pipeline.root["runId"] and e["data"].get("runStatus")
    )
    deliveries.remove(first_step_done)
    deliveries.insert(0, first_step_done)
    for event in deliveries:
        invoke(event)
    return deliveries


def run_spans(trace: list[Span]) -> dict[str, Span]:
    found = Counter(s.run_id for s in trace if s.phase == "run")
    assert set(found.values()) == {1}, f"runs with more than one span: {found}"
    return {s.run_id: s for s in trace if s.phase == "run"}


def assert_one_trace_with_the_runs_own_times(app: App, pipeline: Pipeline) -> list[Span]:
    stored = spans_from(app.ingestion.envelopes)
    trace = trace_of(stored, pipeline.root["runId"])
    by_run = run_spans(trace)
    # One span per run, all in the root's trace; no span of these runs anywhere else.
    assert set(by_run) == {r["runId"] for r in pipeline.runs}
    assert all(s.trace_id == trace[0].trace_id for s in stored if s.run_id in by_run)
    ids = {s.span_id for s in trace}
    assert len(ids) == len(trace)
    for span in trace:
        run = pipeline.run(span.run_id)
        if span.phase == "run":
            # The run's own times (to the millisecond the records carry).
            assert ms(span.start) == ms(parse_time(run["startTimeUtc"])), span.name
            assert round(span.duration_ms) == ms(parse_time(run["endTimeUtc"])) - ms(
                parse_time(run["startTimeUtc"])
            ), span.name
        else:  # its queue time: created → started, under the run's span
            assert span.phase == "queue" and span.name == "Queued"
            assert span.parent_id == by_run[span.run_id].span_id
            assert ms(span.start) == ms(parse_time(run["createdUtc"]))
            assert round(span.duration_ms) == ms(parse_time(run["startTimeUtc"])) - ms(
                parse_time(run["createdUtc"])
            )
    # Every parent link resolves inside the trace: the root has none, each run's parent is its
    # parent run's span (a step's pipeline, a sub-pipeline's pipeline).
    root = by_run[pipeline.root["runId"]]
    assert root.kind == "request" and root.parent_id is None
    assert all(s.parent_id in ids for s in trace if s is not root)
    for run_id, span in by_run.items():
        parent = pipeline.run(run_id).get("parentRunId")
        if parent:
            assert span.kind == "dependency"
            assert span.parent_id == by_run[parent].span_id, span.name
    return trace


def test_a_v1_pipeline_delivered_shuffled_and_twice_is_one_trace_of_its_runs(app: App) -> None:
    pipeline = v1_pipeline(app.aml.workspace(), end=datetime.now(UTC) - HOUR)

    deliver_shuffled(pipeline, seed=9)

    trace = assert_one_trace_with_the_runs_own_times(app, pipeline)
    by_run = run_spans(trace)
    root = by_run[pipeline.root["runId"]]
    assert root.name == "churn-training"  # the experiment
    assert not root.success  # the pipeline failed
    steps = [by_run[r["runId"]] for r in pipeline.runs[1:]]
    assert [s.name for s in steps] == ["step_0", "step_1", "step_2"]
    failed = steps[1]
    assert not failed.success
    assert failed.properties["error_code"] == RECORDED_ERROR_CODE
    assert failed.properties["error_category"] == "ServiceError"
    assert failed.properties["status"] == "Failed"
    assert all(s.success for s in (steps[0], steps[2]))
    for step in steps:
        assert step.properties["step_type"] == "PythonScriptStep"
        assert step.properties["compute_name"] == "cpu-cluster"
        assert step.target == "cpu-cluster"  # the compute is the dependency's target
        assert step.type == "InProc | Microsoft.MachineLearningServices"
        assert step.properties["node_id"] and step.properties["parent_run_id"] == pipeline.root["runId"]
        assert step.properties["root_run_id"] == pipeline.root["runId"]
    assert {s.role for s in trace} == {"azureml.sample-ws"}
    # Four runs, two statuses each: each status recorded once, and each record sits in the trace
    # under its run's span; the summary under the pipeline's.
    records = app.records()
    assert len(records) == 8
    placed = events_in(app.ingestion.envelopes, root.trace_id)
    assert sorted(placed) == sorted(
        [("AmlRunStatusChanged", run_id, span.span_id) for run_id, span in by_run.items() for _ in range(2)]
        + [("AmlPipelineRunSummary", root.run_id, root.span_id)]
    )
    # No envelope ingestion refused, and the exporter's resource metric is not sent.
    assert all(r.status == 200 for r in app.ingestion.track_requests())
    assert not [e for e in app.ingestion.envelopes if "_OTELRESOURCE_" in json.dumps(e)]


def test_a_v2_pipeline_with_a_sub_pipeline_and_a_reused_node_nests_as_it_ran(app: App) -> None:
    ws = app.aml.workspace()
    pipeline = v2_pipeline(ws, end=datetime.now(UTC) - HOUR)

    deliver_shuffled(pipeline, seed=4)

    trace = assert_one_trace_with_the_runs_own_times(app, pipeline)
    by_run = run_spans(trace)
    root, reused, second, sub, *sub_steps = (by_run[r["runId"]] for r in pipeline.runs)
    # The sub-pipeline's nodes are children of the sub-pipeline, itself a child of the pipeline.
    assert sub.parent_id == root.span_id and sub.name == "train_and_evaluate"
    assert {s.parent_id for s in sub_steps} == {sub.span_id}
    assert second.parent_id == root.span_id
    # v2 nodes of an inline component are named after the node; the reused one is marked, with its
    # real, short duration, and has no queue span (it never queued).
    assert second.name == "featurize"
    assert reused.name == "prep_data (reused)"
    assert [s.name for s in sub_steps] == ["train_model", "evaluate_model"]
    assert reused.properties["is_reused"] == "true" and reused.properties["reused_run_id"]
    assert reused.duration_ms < 100  # 48 ms as recorded (48 or 49 at the records' millisecond precision)
    assert not [s for s in trace if s.phase == "queue" and s.run_id == reused.run_id]
    assert [s.properties["job_kind"] for s in sub_steps] == ["pipeline_step", "pipeline_step"]


def test_the_recorded_reused_node_keeps_its_recorded_duration(app: App) -> None:
    pipeline = recorded_v2_pipeline(app.aml.workspace(), end=datetime.now(UTC) - HOUR)
    for event in reversed(pipeline.events):  # the node before its pipeline
        invoke(event)

    by_run = run_spans(trace_of(spans_from(app.ingestion.envelopes), "test_845087997000"))
    node = by_run["9fd0d9f9-3a92-4168-bb40-339711114ed3"]
    # 05:00:07.8393236 → 05:00:07.8874981 in the recording: 48 ms (49 at millisecond precision)
    assert node.duration_ms == 48.0 and node.name.endswith("(reused)")
    assert node.parent_id == by_run["test_845087997000"].span_id


# --------------------------------------------------------------------------------------------------
# The 48-hour window


def skipped_counts(app: App) -> Counter[str]:
    counts: Counter[str] = Counter()
    for point in app.ingestion.metrics("aml_trace_spans_skipped"):
        counts[point["properties"]["reason"]] += int(point["value"])
    return counts


def iso_ms(epoch_ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_a_pipeline_that_ran_three_days_is_recorded_and_its_trace_clamped_to_what_ingestion_takes(
    app: App,
) -> None:
    now = datetime.now(UTC)
    ws = app.aml.workspace()
    # Three steps of a day each, ending a minute ago; every event is delivered now (the first step's
    # live event was lost, say, and replayed).
    root, steps = ws.add_pipeline_run(
        "three-days", steps=3, created=now - timedelta(days=3, minutes=1), step_seconds=86_400 - 6
    )
    pipeline = Pipeline(root, [root, *steps], [])
    pipeline.events = lifecycle_events(ws, pipeline.runs)

    for event in pipeline.events:
        invoke(event)  # every invocation succeeds

    assert len(app.records()) == 8  # every status of every run recorded
    assert all(r.status == 200 for r in app.ingestion.track_requests())  # nothing refused, nothing retried
    by_run = {s.run_id: s for s in spans_from(app.ingestion.envelopes) if s.phase == "run"}
    window_start = now - timedelta(hours=47)
    # The pipeline and the second step started more than 47 h ago and ended inside the window: sent,
    # starting at the window's edge, saying so and keeping the real start.
    for run in (root, steps[1]):
        span = by_run[run["runId"]]
        assert abs(span.start - window_start) < timedelta(minutes=2)
        start_ms = ms(parse_time(run["startTimeUtc"]))
        assert span.properties["span_start_clamped_from"] == iso_ms(start_ms)
        assert span.properties["start_time_utc_ms"] == str(start_ms)
        assert abs(ms(span.end) - ms(parse_time(run["endTimeUtc"]))) <= 1
    # The last step is inside the window: as it ran. The first ended two days ago: not sent, counted,
    # as are the queue spans that ended before the window (the pipeline's, the first two steps').
    assert "span_start_clamped_from" not in by_run[steps[2]["runId"]].properties
    assert steps[0]["runId"] not in by_run
    assert by_run[steps[1]["runId"]].parent_id == by_run[root["runId"]].span_id
    assert skipped_counts(app) == {"ended_before_ingestion_window": 4}


def test_a_thirty_day_backfill_succeeds_and_sends_only_the_spans_ingestion_takes(
    app: App, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    ws = app.aml.workspace()
    pipelines = []
    for day in range(30):
        root, steps = ws.add_pipeline_run(
            "nightly", steps=2, created=now - timedelta(days=day, hours=1), step_seconds=60
        )
        pipelines.append((day, root, steps))

    code, out, err = run_cli(
        "backfill", "--workspace", ws.resource_id, "--since", "31d",
        "--checkpoint", str(tmp_path / "checkpoint.json"),
    )  # fmt: skip

    assert code == 0, out + err
    assert len(app.records()) >= 30 * 3  # every run recorded (sample runs too)
    assert all(r.status == 200 for r in app.ingestion.track_requests())  # ingestion refused nothing
    traced = {s.run_id for s in spans_from(app.ingestion.envelopes) if s.phase == "run"}
    recent = {r["runId"] for day, root, steps in pipelines if day < 2 for r in (root, *steps)}
    old = {r["runId"] for day, root, steps in pipelines if day >= 2 for r in (root, *steps)}
    assert recent <= traced  # the last two days: their traces, as live
    assert not traced & old  # the other 28 days: no span, never an invocation that fails for it
    skipped = skipped_counts(app)
    assert skipped["ended_before_ingestion_window"] >= len(old)
    # Rerunning the backfill sends nothing twice and fails nothing.
    sent = len(app.ingestion.envelopes)
    code, out, err = run_cli(
        "backfill", "--workspace", ws.resource_id, "--since", "31d",
        "--checkpoint", str(tmp_path / "again.json"),
    )  # fmt: skip
    assert code == 0 and len(app.ingestion.envelopes) == sent


def test_ingestion_refuses_an_item_older_than_48_hours_with_its_own_answer(app: App) -> None:
    # The fake is what holds the code to ingestion's rule: its answers are the service's.
    import urllib.request

    now = datetime.now(UTC)

    def item(moment: datetime) -> dict[str, Any]:
        return {
            "name": "Microsoft.ApplicationInsights.Event",
            "time": moment.isoformat().replace("+00:00", "Z"),
            "iKey": app.ingestion.instrumentation_key,
            "data": {"baseType": "EventData", "baseData": {"ver": 2, "name": "probe"}},
        }

    def post(items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{app.ingestion.endpoint}v2.1/track", json.dumps(items).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())

    status, body = post([item(now - timedelta(hours=49)), item(now - timedelta(hours=47))])
    assert status == 206
    assert body == {
        "itemsReceived": 2,
        "itemsAccepted": 1,
        "errors": [{"index": 0, "statusCode": 400, "message": TOO_OLD}],
    }
    assert TOO_OLD == (
        "103: Field 'time' on type 'Envelope' is older than the allowed min date. Expected: now - 172800000ms"
    )
    status, body = post([item(now - timedelta(days=3))])
    assert status == 400 and body["itemsAccepted"] == 0 and body["errors"][0]["message"] == TOO_OLD
    status, body = post([item(now + timedelta(hours=3))])
    assert status == 400 and body["errors"][0]["message"].startswith("104: ")


def test_a_span_ingestion_still_refuses_for_its_time_never_fails_the_invocation_forever(app: App) -> None:
    # If ingestion's clock were two hours ahead of this host's, the decision before sending would let
    # a span through that ingestion refuses for its age (206, item 400 "103: …"). The record is stored,
    # the span given up (logged), and the invocation succeeds: a redelivery would meet the same refusal.
    now = datetime.now(UTC)
    app.ingestion.clock = lambda: datetime.now(UTC).timestamp() + 2 * 3600
    ws = app.aml.workspace()
    _root, [step] = ws.add_pipeline_run(
        "old-step", steps=1, created=now - timedelta(hours=46, minutes=40), step_seconds=46 * 3600
    )
    done = run_event(ws, step, "Completed")

    invoke(done)

    [answer] = app.ingestion.track_requests()
    assert answer.status == 206  # its spans refused for their time, the record and metrics stored
    assert answer.answer is not None
    assert [(e["statusCode"], e["message"]) for e in answer.answer["errors"]] == [(400, TOO_OLD)] * 2
    refused = [answer.envelopes[e["index"]]["name"] for e in answer.answer["errors"]]
    assert refused == [DEPENDENCY_ENVELOPE] * 2  # the step's span and its queue span
    assert [r["run_id"] for r in app.records()] == [step["runId"]]
    assert spans_from(app.ingestion.envelopes) == []
    invoke(done)  # a redelivery finds the status recorded: nothing is sent again
    assert len(app.ingestion.track_requests()) == 1


# --------------------------------------------------------------------------------------------------
# Failures and concurrency


def test_a_refused_span_fails_the_flush_and_only_the_span_is_sent_again(app: App) -> None:
    pipeline = v1_pipeline(app.aml.workspace(), end=datetime.now(UTC) - HOUR)
    step = pipeline.runs[2]
    done = run_event(app.aml.workspace(), step, "Completed")
    # Ingestion stores the record and the metrics and refuses the spans (a retryable 503, twice).
    app.ingestion.fail_with(
        "partial", partial_status=503, matching=DEPENDENCY_ENVELOPE.rsplit(".", 1)[1], times=2
    )

    with pytest.raises(TelemetryExportFailed, match="503"):
        invoke(done)
    assert [r["run_id"] for r in app.records()] == [step["runId"]]
    assert spans_from(app.ingestion.envelopes) == []
    assert app.claim_states() and done["id"] not in app.processed_ids()

    invoke(done)  # Event Grid's redelivery: only what was refused

    assert len(app.records()) == 1  # the record is not sent twice
    spans = spans_from(app.ingestion.envelopes)
    assert Counter(s.phase for s in spans) == {"run": 1, "queue": 1}
    assert {s.run_id for s in spans} == {step["runId"]}
    resent = app.ingestion.track_requests()[-1]
    assert {e["name"] for e in resent.envelopes} == {DEPENDENCY_ENVELOPE}


def test_an_ingestion_outage_fails_the_invocation_and_the_redelivery_sends_the_span_once(app: App) -> None:
    pipeline = v1_pipeline(app.aml.workspace(), end=datetime.now(UTC) - HOUR)
    done = run_event(app.aml.workspace(), pipeline.root, "Failed")
    app.ingestion.fail_with(503)

    with pytest.raises(TelemetryExportFailed):
        invoke(done)
    assert app.ingestion.envelopes == []
    app.ingestion.reset()
    invoke(done)
    invoke(done)

    spans = spans_from(app.ingestion.envelopes)
    assert [s.run_id for s in spans if s.phase == "run"] == [pipeline.root["runId"]]
    assert len(app.records()) == 1


def test_concurrent_invocations_each_send_their_own_spans_exactly_once(app: App) -> None:
    pipeline = v2_pipeline(app.aml.workspace(), end=datetime.now(UTC) - HOUR)
    # Every event of the pipeline in flight at once, each terminal one delivered twice.
    terminal = [e for e in pipeline.events if e["data"].get("runStatus") in ("Completed", "Failed")]
    deliveries = pipeline.events + terminal
    random.Random(2).shuffle(deliveries)
    barrier = threading.Barrier(len(deliveries))
    errors: list[BaseException] = []

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        try:
            invoke(event)
        except BaseException as exc:  # a concurrent duplicate may be told to retry later
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(e,)) for e in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for event in deliveries:  # Event Grid redelivers what failed; the rest are duplicates
        invoke(event)

    assert all(type(e).__name__ == "DeliveryInProgress" for e in errors), errors
    assert_one_trace_with_the_runs_own_times(app, pipeline)
    spans = spans_from(app.ingestion.envelopes)
    assert len(spans) == len({s.span_id for s in spans})  # no span sent twice
    # Each span travelled in the request of the invocation that recorded its run's terminal status.
    for request in app.ingestion.track_requests():
        runs = {
            e["data"]["baseData"]["properties"].get("run_id")
            for e in request.envelopes
            if e["name"] != METRIC_ENVELOPE
        }
        assert len(runs) == 1, runs
