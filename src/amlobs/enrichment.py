"""The run history reads behind one record and one pipeline summary (the I/O edge of the processor).

Where the run definition comes from: ``RunDetails.runDefinition`` (``/details``) is what SDK v1's
``Run.get_details()`` read, and v1 runs carry it there. No Microsoft recording shows ``/details``
of a v2 job; the v2 client reads a job's definition from ``POST /rundata`` instead
(``RunOperations.get_run_data``), and the recordings show it there (``script`` null, ``command``
set, the environment by name, version and asset id). So: ``/details`` first; when it carries no
definition, ``/rundata``, whose ``runMetadata`` is the ``Run`` itself, replaces ``GET /runs/{id}``.
Two calls per event either way; a v1 run never causes a ``/rundata`` call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import run_facts as facts
from .errors import RunNotFound
from .events import WorkspaceRef

logger = logging.getLogger("amlobs")

# Levels of pipelines listed for a summary: the pipeline itself and up to four nested sub-pipelines
# below it. Each nested pipeline costs one more (paged) children listing.
MAX_PIPELINE_DEPTH = 5


class RunSource(Protocol):
    def get_run_details(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]: ...

    def get_run(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]: ...

    def get_run_data(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]: ...

    def iter_children(self, ws: WorkspaceRef, run_id: str) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class RunAnswers:
    """What run history said about one run: kept whole so later readers need no extra call."""

    details: dict[str, Any]
    run: dict[str, Any] | None
    definition: Mapping[str, Any] | None
    definition_source: str | None  # "details", "rundata" or None (no run has one, e.g. a pipeline)


def fetch_run_answers(runs: RunSource, ws: WorkspaceRef, run_id: str) -> RunAnswers:
    """``/details`` and the run, plus the definition from ``/rundata`` when ``/details`` lacks it.

    Raises ``RunNotFound`` when the run is gone, ``EnrichmentUnavailable`` when the service is.
    """
    details = runs.get_run_details(ws, run_id)
    definition = facts.run_definition(details.get("runDefinition"))
    if definition is not None:
        return RunAnswers(details, runs.get_run(ws, run_id), definition, "details")
    try:
        data = runs.get_run_data(ws, run_id)
    except RunNotFound as refused:
        # The run was there a moment ago; /rundata refusing it must not lose the record.
        logger.warning("run data of %s unavailable (%s): recording without its definition", run_id, refused)
        data = {}
    metadata = data.get("runMetadata")
    definition = facts.run_definition(data.get("runDefinition"))
    run = metadata if isinstance(metadata, dict) and metadata else runs.get_run(ws, run_id)
    return RunAnswers(details, run, definition, "rundata" if definition is not None else None)


@dataclass
class PipelineListing:
    """A pipeline's children and, for each child that is itself a pipeline, its own listing.

    ``error`` says why ``children`` is None (listing unavailable); ``unlisted`` names nested
    pipelines below :data:`MAX_PIPELINE_DEPTH` whose steps were not listed.
    """

    run_id: str
    children: list[dict[str, Any]] | None
    error: str | None = None
    nested: dict[str, PipelineListing] = field(default_factory=dict)
    unlisted: list[str] = field(default_factory=list)
    answered_404: bool = False  # ``error`` is run history's 404 (judged by age), not a refusal for good

    def steps(self) -> Iterator[dict[str, Any]]:
        """The pipeline's steps: its children that are not pipelines, then, in listing order, the
        steps of each listed sub-pipeline. What the summary counts and the cost estimate adds up."""
        for child in self.children or ():
            if not is_pipeline_child(child):
                yield child
                continue
            nested = self.nested.get(facts.text(child.get("runId")) or "")
            if nested is not None:
                yield from nested.steps()


def is_pipeline_child(child: Mapping[str, Any]) -> bool:
    return facts.is_pipeline(facts.run_type_of(child))


def list_pipeline(runs: RunSource, ws: WorkspaceRef, run_id: str, depth: int = 1) -> PipelineListing:
    """The children of a pipeline run and of its sub-pipelines, down to :data:`MAX_PIPELINE_DEPTH`.

    A sub-pipeline whose listing fails (deleted, refused) is kept with its error; the summary
    then says its steps are missing. Transient failures raise, for Event Grid to redeliver.
    """
    try:
        children = list(runs.iter_children(ws, run_id))
    except RunNotFound as missing:
        return PipelineListing(
            run_id, None, error=str(missing) or "run not found", answered_404=missing.answered_404
        )
    listing = PipelineListing(run_id, children)
    for child in children:
        child_id = facts.text(child.get("runId"))
        if child_id is None or not is_pipeline_child(child) or child_id == run_id:
            continue
        if depth >= MAX_PIPELINE_DEPTH:
            listing.unlisted.append(child_id)
            continue
        listing.nested[child_id] = list_pipeline(runs, ws, child_id, depth + 1)
    return listing
