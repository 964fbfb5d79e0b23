"""Every run created since a time, across the experiments of a workspace, page by page (``backfill``).

The run history API has no workspace-wide ``runs:query``: azureml-core's ``Experiment.list`` +
``Run.list`` walk ``POST …/experiments:query`` and then ``POST …/experimentids/{id}/runs:query``
per experiment. :func:`iter_runs` does the same and folds both positions into one opaque
continuation token for checkpointing.

Request bodies are the official clients' (each literal below cites where it comes from), so the
service sees nothing it has not seen from the SDKs:

* ``api-version=v1.0`` on every call: azure-ai-ml 1.35.2,
  ``azure/ai/ml/_restclient/runhistory/operations/_operations.py`` lines 772-801 (runs:query by
  experiment id) and 1386-1418 (experiments:query); the default is set in ``_configuration.py:36``.
* body keys ``filter``, ``continuationToken``, ``orderBy``, ``top`` (``QueryParams``) and
  ``viewType``, ``continuationToken``, ``top`` (``ExperimentQueryParams``): azure-ai-ml 1.35.2
  ``azure/ai/ml/_restclient/runhistory/models/_models.py`` lines 2875 and 1606.
* the created-since filter ``(CreatedUtc ge {0})`` formatted with a timezone-aware ``datetime``:
  azureml-core 1.61.0, ``azureml/_restclient/_odata/constants.py:16`` (``CREATED_AFTER_FORMAT_STR``)
  used by ``_odata/runs.py:54``; azure-ai-ml builds no run filter of its own.
* the order ``CreatedUtc asc``: azureml-core 1.61.0 ``azureml/_restclient/utils.py:101-112``
  (``_validate_order_by`` renders ``"{key} {asc|desc}"``); oldest first so a checkpoint only moves
  forward.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .aml_discovery import segment
from .aml_transport import AmlHttp
from .errors import EnrichmentUnavailable

logger = logging.getLogger("amlobs.runhistory")

HISTORY_API_VERSION = "v1.0"
RUNS_PAGE_SIZE = 100
CREATED_ORDER = "CreatedUtc asc"
EXPERIMENTS_VIEW_TYPE = "All"  # runs of archived experiments still happened
_TOKEN_VERSION = 1


def created_since_filter(since: datetime) -> str:
    """azureml-core's ``CREATED_AFTER_FORMAT_STR.format(created_after)`` for an aware UTC datetime."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware (UTC)")
    return f"(CreatedUtc ge {since.astimezone(UTC)})"


@dataclass(frozen=True)
class RunPage:
    """One page of :func:`iter_runs`.

    ``continuation_token`` resumes the listing right after this page (store it as the checkpoint);
    it is ``None`` on the last page.
    """

    runs: list[dict[str, Any]]
    continuation_token: str | None


@dataclass(frozen=True)
class _Position:
    """Where :func:`iter_runs` stands: experiments page, experiment, runs page."""

    experiments_token: str | None  # token that fetched the current experiments page (None: first)
    index: int  # experiment within that page
    experiment: str  # its experimentId (or name), to notice pages that shifted since the checkpoint
    runs_token: str | None  # next runs page of that experiment (None: its first)

    def encode(self) -> str:
        payload = {
            "v": _TOKEN_VERSION,
            "e": self.experiments_token,
            "i": self.index,
            "x": self.experiment,
            "r": self.runs_token,
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> _Position:
        try:
            payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise ValueError("continuation_token was not produced by RunHistoryClient.iter_runs") from exc
        if not isinstance(payload, dict) or payload.get("v") != _TOKEN_VERSION:
            raise ValueError("continuation_token was not produced by RunHistoryClient.iter_runs")
        experiments_token, index, experiment, runs_token = (payload.get(k) for k in ("e", "i", "x", "r"))
        if (
            not isinstance(index, int)
            or index < 0
            or not isinstance(experiment, str)
            or not isinstance(experiments_token, (str, type(None)))
            or not isinstance(runs_token, (str, type(None)))
        ):
            raise ValueError("continuation_token is malformed")
        return cls(experiments_token, index, experiment, runs_token)


def _experiment_key(experiment: Mapping[str, Any]) -> str:
    return str(experiment.get("experimentId") or experiment.get("name") or "")


def _resume_index(experiments: list[dict[str, Any]], position: _Position) -> int:
    """The checkpointed experiment's index, found again if the page shifted since."""
    if not position.experiment:
        return position.index
    keys = [_experiment_key(e) for e in experiments]
    if position.index < len(keys) and keys[position.index] == position.experiment:
        return position.index
    if position.experiment in keys:
        return keys.index(position.experiment)
    logger.warning(
        "experiment %s left its page since the checkpoint; resuming by position", position.experiment
    )
    return position.index


def page_items(page: Mapping[str, Any], call: str) -> list[dict[str, Any]]:
    value = page.get("value")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise EnrichmentUnavailable(f"{call}: the page's 'value' is not a list of objects")
    return value


def page_token(page: Mapping[str, Any]) -> str | None:
    token = page.get("continuationToken")
    return token if isinstance(token, str) and token else None


class _RunListing:
    """The two-level walk behind :func:`iter_runs` (experiments, then their runs)."""

    def __init__(
        self, http: AmlHttp, *, prefix: str, workspace: str, created_filter: str, page_size: int
    ) -> None:
        self._http = http
        self._prefix = prefix
        self._workspace = workspace
        self._filter = created_filter
        self._page_size = page_size

    def _url(self, path: str) -> str:
        return f"{self._prefix}/{path}?api-version={HISTORY_API_VERSION}"

    def pages(self, start: _Position) -> Iterator[RunPage]:
        experiments_token = start.experiments_token
        resume: _Position | None = start
        while True:
            body: dict[str, Any] = {"viewType": EXPERIMENTS_VIEW_TYPE, "top": self._page_size}
            if experiments_token:
                body["continuationToken"] = experiments_token
            page = self._http.call_json(
                "experiments query", "POST", self._url("experiments:query"), body, workspace=self._workspace
            )
            experiments = page_items(page, "experiments query")
            next_token = page_token(page)
            if next_token == experiments_token:
                next_token = None  # a service that repeats itself would loop forever
            first = _resume_index(experiments, resume) if resume is not None else 0
            runs_token = resume.runs_token if resume is not None else None
            resume = None
            for index in range(first, len(experiments)):
                yield from self._experiment_pages(
                    experiments, index, experiments_token, next_token, runs_token
                )
                runs_token = None
            if next_token is None:
                return
            experiments_token = next_token

    def _experiment_pages(
        self,
        experiments: list[dict[str, Any]],
        index: int,
        experiments_token: str | None,
        next_experiments_token: str | None,
        runs_token: str | None,
    ) -> Iterator[RunPage]:
        experiment = experiments[index]
        exp_id, exp_name = experiment.get("experimentId"), experiment.get("name")
        if isinstance(exp_id, str) and exp_id:
            url = self._url(f"experimentids/{segment(exp_id)}/runs:query")
        elif isinstance(exp_name, str) and exp_name:
            url = self._url(f"experiments/{segment(exp_name)}/runs:query")
        else:
            return
        call = f"runs query of experiment {exp_name or exp_id}"
        while True:
            query: dict[str, Any] = {"filter": self._filter, "orderBy": CREATED_ORDER, "top": self._page_size}
            if runs_token:
                query["continuationToken"] = runs_token
            page = self._http.call_json(call, "POST", url, query, workspace=self._workspace)
            runs = page_items(page, call)
            if isinstance(exp_name, str) and exp_name:
                for run in runs:
                    run.setdefault("experimentName", exp_name)
            next_runs_token = page_token(page)
            runs_token = None if next_runs_token == runs_token else next_runs_token
            if runs:
                yield RunPage(
                    runs,
                    self._after(experiments, index, experiments_token, next_experiments_token, runs_token),
                )
            if runs_token is None:
                return

    @staticmethod
    def _after(
        experiments: list[dict[str, Any]],
        index: int,
        experiments_token: str | None,
        next_experiments_token: str | None,
        runs_token: str | None,
    ) -> str | None:
        if runs_token is not None:
            return _Position(
                experiments_token, index, _experiment_key(experiments[index]), runs_token
            ).encode()
        if index + 1 < len(experiments):
            return _Position(
                experiments_token, index + 1, _experiment_key(experiments[index + 1]), None
            ).encode()
        if next_experiments_token is not None:
            return _Position(next_experiments_token, 0, "", None).encode()
        return None


def iter_runs(
    http: AmlHttp,
    workspace_prefix: str,
    *,
    workspace: str,
    since: datetime,
    continuation_token: str | None,
    page_size: int,
) -> Iterator[RunPage]:
    """See :meth:`amlobs.runhistory.RunHistoryClient.iter_runs`."""
    listing = _RunListing(
        http,
        prefix=workspace_prefix,
        workspace=workspace,
        created_filter=created_since_filter(since),
        page_size=page_size,
    )
    start = _Position.decode(continuation_token) if continuation_token else _Position(None, 0, "", None)
    finished = False
    for page in listing.pages(start):
        finished = page.continuation_token is None
        yield page
    if not finished:
        yield RunPage(runs=[], continuation_token=None)
