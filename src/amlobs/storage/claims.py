"""Dedupe by claim: each (workspace, run, status) is recorded by exactly one invocation.

The check-then-act of the 2020 sample (look the key up, process, write the key) lets two overlapping
deliveries both record. Here the key is *claimed* with an insert that fails when the key exists, and
the claim then moves through states, each move conditional on the version the invocation last saw:

    (absent) --insert--> claimed --before the POST--> sending --after the POST--> done
                            |                           |
                            +-----failure of any step---+--> retry (what was stored, if anything)

* ``done``: recorded; every later delivery is a duplicate (``claim`` returns ``None``).
* ``claimed``/``sending`` with an unexpired lease: another invocation is at work. ``claim`` waits a
  little (a ``RunCompleted`` and the ``RunStatusChanged``/Completed of one run arrive together), then
  raises :class:`~amlobs.errors.DeliveryInProgress`: transient, Event Grid redelivers.
* ``retry``, or an expired lease: the claim is taken over at once. A ``sending`` claim whose lease
  expired (its invocation died after or during the POST) is taken over as *maybe delivered*: the
  telemetry may be stored already, so the new attempt's copy is flagged as a possible duplicate.
* An invocation whose lease expired and was taken over cannot send: moving to ``sending`` is
  conditional, so it fails with :class:`~amlobs.errors.ClaimLost` instead of recording twice.

Stored entities of the previous version (no state, just the key) read as ``done``.

Two things ride on a claim (issue 21): the telemetry its attempt decided to send, kept from "sending"
until "done" so that a later attempt repeats it (:mod:`.kept_unit`), and, on a "done" claim whose record
went out without run history's details, ``partial_reason`` (listed by :meth:`ClaimStoreBase.partial_claims`).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from ..errors import ClaimLost, DeliveryInProgress
from ._azure import logger, utc_now
from .kept_unit import PROPERTIES as KEPT_PROPERTIES
from .kept_unit import kept_properties, read_kept

DEDUPE_TABLE = "processedevents"

CLAIMED, SENDING, RETRY, DONE = "claimed", "sending", "retry", "done"
MAX_POLL_SECONDS = 0.5  # a waiting delivery looks again at most this often
STATES = frozenset({CLAIMED, SENDING, RETRY, DONE})
# On a "done" claim: the key was recorded without run history's details, and why (the seam for a
# reconciler that completes such records later: :meth:`ClaimStoreBase.partial_claims`).
PARTIAL_REASON = "partial_reason"
_MAX_PARTIAL_REASON_CHARS = 1024

# 256 partitions: enough spread for any event rate this app sees, few enough to scan per partition.
_PARTITION_HEX_CHARS = 2
_MAX_CONTEXT_PROPERTIES = 16
_MAX_CONTEXT_VALUE_CHARS = 1024
_MAX_STORED_KEY_CHARS = 1024
_RESERVED = frozenset(
    {"PartitionKey", "RowKey", "Timestamp", "event_id", "state", "owner", "lease_until", "attempt"}
    | {"accepted", "maybe_delivered", "processed_at", PARTIAL_REASON}
    | KEPT_PROPERTIES
)


class DedupeStore(Protocol):
    def claim(self, key: str, context: Mapping[str, str]) -> Claim | None:
        """This invocation's claim on ``key``, or ``None`` when it is already recorded."""
        ...

    def start_sending(self, claim: Claim, kept: bytes | None = None) -> Claim:
        """Move to "sending", keeping ``kept`` (the unit about to be sent) with the claim."""
        ...

    def complete(self, claim: Claim, *, partial_reason: str | None = None) -> None: ...
    def release(self, claim: Claim, *, accepted: frozenset[str], maybe_delivered: bool) -> None: ...
    def partial_claims(self) -> list[PartialClaim]: ...
    def clear_partial(self, key: str) -> str | None: ...
    def mark_partial(self, key: str, reason: str) -> None: ...


@dataclass(frozen=True)
class ClaimPolicy:
    """``lease_seconds``: how long a claim holds without progress (a crashed invocation blocks its
    key this long, then its claim is taken over). ``wait_seconds``: how long a delivery waits for
    another invocation's fresh claim before it fails and leaves the retry to Event Grid."""

    lease_seconds: float = 60.0
    wait_seconds: float = 5.0
    poll_seconds: float = 0.1

    @classmethod
    def for_lease(cls, lease_seconds: float) -> ClaimPolicy:
        return cls(lease_seconds=lease_seconds, wait_seconds=min(5.0, lease_seconds / 2))


@dataclass(frozen=True)
class Claim:
    """An invocation's hold on one key. ``accepted`` and ``maybe_delivered`` are inherited from the
    attempts before it: what they stored, and whether they may have stored more than that."""

    key: str
    owner: str
    version: str | None  # the storage's concurrency token (an ETag) of the state this claim last wrote
    state: str
    attempt: int = 1
    accepted: frozenset[str] = frozenset()
    maybe_delivered: bool = False
    taken_over: str | None = None  # the state it was taken over from, for the log
    context: Mapping[str, str] = field(default_factory=dict, compare=False)  # ops context, stored with it
    # What an earlier attempt decided to send (amlobs.resend's bytes): a resend sends exactly that.
    kept: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StoredClaim:
    state: str
    owner: str
    lease_until: datetime | None
    attempt: int
    accepted: frozenset[str]
    maybe_delivered: bool
    kept: bytes | None = None


@dataclass(frozen=True)
class PartialClaim:
    """A run status recorded without run history's details (``partial_reason`` on its claim)."""

    key: str  # run|<workspace>|<run id>|<status>
    reason: str
    run_id: str
    status: str
    source_event_id: str
    processed_at: datetime | None


# ---------------------------------------------------------------------------------------------------
# Pure core: keys, entities, decisions.


@dataclass(frozen=True)
class DedupeKey:
    partition_key: str
    row_key: str


def dedupe_key(key: str) -> DedupeKey:
    """Table keys for a dedupe key.

    Table keys forbid ``/ \\ # ?`` and control characters and are limited to 1 KiB, while a key
    holds any event id: the RowKey is the SHA-256 of its UTF-8 bytes (lossless for lookup, collisions
    are not a practical concern) and the PartitionKey its first hex digits, which spreads load.
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return DedupeKey(partition_key=digest[:_PARTITION_HEX_CHARS], row_key=digest)


def _context_properties(context: Mapping[str, str]) -> dict[str, str]:
    properties: dict[str, str] = {}
    for name, value in context.items():
        # Property names must be identifiers; a context key that is not one is ops sugar, not worth
        # failing an invocation for.
        if len(properties) >= _MAX_CONTEXT_PROPERTIES:
            break
        if name.isidentifier() and name.isascii() and name not in _RESERVED:
            properties[name] = str(value)[:_MAX_CONTEXT_VALUE_CHARS]
    return properties


def claim_entity(claim: Claim, *, lease_until: datetime | None, now: datetime) -> dict[str, Any]:
    """The stored form of ``claim`` (a Table entity; the memory store keeps the same dict)."""
    table_key = dedupe_key(claim.key)
    entity: dict[str, Any] = _context_properties(claim.context)
    entity.update(
        PartitionKey=table_key.partition_key,
        RowKey=table_key.row_key,
        event_id=claim.key[:_MAX_STORED_KEY_CHARS],
        state=claim.state,
        owner=claim.owner,
        attempt=claim.attempt,
        accepted=",".join(sorted(claim.accepted)),
        maybe_delivered=claim.maybe_delivered,
    )
    if lease_until is not None:
        entity["lease_until"] = lease_until
    if claim.state == DONE:
        entity["processed_at"] = now
    else:  # kept until the key is done: no later attempt can need it then
        entity.update(kept_properties(claim.kept))
    return entity


def partial_entity(entity: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """A "done" claim entity that also says the record went out partial, and why."""
    return {**entity, PARTIAL_REASON: reason[:_MAX_PARTIAL_REASON_CHARS]}


def read_partial(entity: Mapping[str, Any]) -> PartialClaim | None:
    reason = entity.get(PARTIAL_REASON)
    if entity.get("state") != DONE or not isinstance(reason, str) or not reason:
        return None
    processed = entity.get("processed_at")
    return PartialClaim(
        key=str(entity.get("event_id") or ""),
        reason=reason,
        run_id=str(entity.get("run_id") or ""),
        status=str(entity.get("status") or ""),
        source_event_id=str(entity.get("source_event_id") or ""),
        processed_at=processed if isinstance(processed, datetime) else None,
    )


def read_claim(entity: Mapping[str, Any]) -> StoredClaim:
    state = entity.get("state")
    if state not in STATES:
        state = DONE  # written by the previous version, which marked keys only once recorded
    accepted = str(entity.get("accepted") or "")
    lease = entity.get("lease_until")
    return StoredClaim(
        state=str(state),
        owner=str(entity.get("owner") or ""),
        lease_until=lease if isinstance(lease, datetime) else None,
        attempt=int(entity.get("attempt") or 1),
        accepted=frozenset(item for item in accepted.split(",") if item),
        maybe_delivered=bool(entity.get("maybe_delivered")),
        kept=read_kept(entity),
    )


Decision = Literal["duplicate", "busy", "take_over"]


def decide(stored: StoredClaim, now: datetime) -> Decision:
    if stored.state == DONE:
        return "duplicate"
    if stored.state == RETRY:
        return "take_over"
    if stored.lease_until is not None and stored.lease_until > now:
        return "busy"
    return "take_over"


def taken_over(stored: StoredClaim, key: str, owner: str, context: Mapping[str, str]) -> Claim:
    """The claim of a new attempt on a key whose stored claim it takes over."""
    return Claim(
        key=key,
        owner=owner,
        version=None,
        state=CLAIMED,
        attempt=stored.attempt + 1,
        accepted=stored.accepted,
        # A "sending" claim left behind may have sent anything: from now on, any copy may be a duplicate.
        maybe_delivered=stored.maybe_delivered or stored.state == SENDING,
        taken_over=stored.state,
        context=context,
        kept=stored.kept,
    )


# ---------------------------------------------------------------------------------------------------
# The protocol, written once over three storage primitives.


class VersionConflict(Exception):
    """The stored claim changed (or vanished) since the version this write was conditional on."""


class ClaimStoreBase(ABC):
    def __init__(
        self,
        policy: ClaimPolicy | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or ClaimPolicy()
        self._clock = clock
        self._sleep = sleep

    # -- primitives ------------------------------------------------------------------------------
    @abstractmethod
    def _insert(self, entity: dict[str, Any]) -> str | None:
        """Store a new entity; its version. Raises :class:`VersionConflict` when the key exists."""

    @abstractmethod
    def _read(self, key: str) -> tuple[StoredClaim, str | None] | None: ...

    @abstractmethod
    def _replace(self, entity: dict[str, Any], version: str | None) -> str | None:
        """Replace the entity if it is still at ``version``; the new version, or :class:`VersionConflict`."""

    @abstractmethod
    def _partial_entities(self) -> list[Mapping[str, Any]]:
        """Every stored entity that carries a non-empty ``partial_reason``."""

    @abstractmethod
    def _read_entity(self, key: str) -> tuple[dict[str, Any], str | None] | None:
        """The stored entity of ``key`` as written, and its version (``None``: no entity)."""

    # -- protocol --------------------------------------------------------------------------------
    def state_of(self, key: str) -> str | None:
        """The stored state of ``key`` (``None``: never claimed); for operators and tests."""
        found = self._read(key)
        return found[0].state if found is not None else None

    def partial_claims(self) -> list[PartialClaim]:
        """The run statuses recorded without run history's details, each with why (oldest first).

        What a reconciler reads to complete them; a record it completes later must carry no
        ``enrichment_error``, which is what the dashboards prefer among copies of one key.
        """
        found = [p for p in map(read_partial, self._partial_entities()) if p is not None]
        return sorted(found, key=lambda p: (p.processed_at is None, p.processed_at or utc_now(), p.key))

    def clear_partial(self, key: str) -> str | None:
        """Take the partial mark off the done claim of ``key``, conditional on the version read: the
        reason it had, or ``None`` when it had none or another writer moved first (so of two racing
        reconciler passes, exactly one gets the reason and sends the completing copy)."""
        found = self._read_entity(key)
        if found is None:
            return None
        entity, version = found
        reason = entity.get(PARTIAL_REASON)
        if entity.get("state") != DONE or not isinstance(reason, str) or not reason:
            return None
        cleared = {name: value for name, value in entity.items() if name != PARTIAL_REASON}
        try:
            self._replace(cleared, version)
        except VersionConflict:
            return None
        return reason

    def mark_partial(self, key: str, reason: str) -> None:
        """Put the partial mark back (the completing copy could not be sent): a later pass retries."""
        found = self._read_entity(key)
        if found is None or found[0].get("state") != DONE:
            return
        with contextlib.suppress(VersionConflict):  # moved meanwhile: the other writer owns the key
            self._replace(partial_entity(found[0], reason), found[1])

    def claim(self, key: str, context: Mapping[str, str]) -> Claim | None:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + self.policy.wait_seconds
        delay = self.policy.poll_seconds
        insert = True  # after the first conflict, read until the key is recorded, released or free
        while True:
            now = self._clock()
            fresh = Claim(key, owner, None, CLAIMED, context=dict(context))
            if insert:
                try:
                    return replace(fresh, version=self._insert(self._entity(fresh, now)))
                except VersionConflict:
                    insert = False
            found = self._read(key)
            if found is None:
                insert = True  # removed meanwhile (the table was deleted): insert again
                continue
            stored, version = found
            if stored.owner == owner:  # our own insert, retried by the SDK after a lost answer
                return replace(fresh, version=version)
            decision = decide(stored, now)
            if decision == "duplicate":
                return None
            if decision == "take_over":
                successor = taken_over(stored, key, owner, dict(context))
                try:
                    new_version = self._replace(self._entity(successor, now), version)
                except VersionConflict:
                    continue  # someone else moved first: look again
                logger.info("took over the %s claim on %s (attempt %d)", stored.state, key, successor.attempt)
                return replace(successor, version=new_version)
            if time.monotonic() >= deadline:
                until = f", lease until {stored.lease_until:%H:%M:%S}Z" if stored.lease_until else ""
                raise DeliveryInProgress(
                    f"{key} is being recorded by another invocation (claim {stored.state}{until}): "
                    "retry later"
                )
            self._sleep(delay)
            delay = min(delay * 2, MAX_POLL_SECONDS)

    def start_sending(self, claim: Claim, kept: bytes | None = None) -> Claim:
        sending = replace(claim, state=SENDING, kept=claim.kept if kept is None else kept)
        try:
            return self._move(claim, sending)
        except VersionConflict:
            raise ClaimLost(
                f"{claim.key}: this invocation's claim expired and was taken over before sending: "
                "the other invocation records it"
            ) from None

    def complete(self, claim: Claim, *, partial_reason: str | None = None) -> None:
        try:
            self._move(claim, replace(claim, state=DONE), partial_reason=partial_reason)
        except VersionConflict:
            logger.warning(
                "%s was recorded, but its claim had expired and was taken over meanwhile: it may be "
                "recorded twice (the other copy says delivery_maybe_duplicate)",
                claim.key,
            )

    def release(self, claim: Claim, *, accepted: frozenset[str], maybe_delivered: bool) -> None:
        retry = replace(claim, state=RETRY, accepted=accepted, maybe_delivered=maybe_delivered)
        with contextlib.suppress(VersionConflict):  # taken over already: the other attempt owns the key
            self._move(claim, retry)

    # -- helpers ---------------------------------------------------------------------------------
    def _entity(self, claim: Claim, now: datetime) -> dict[str, Any]:
        leased = claim.state in (CLAIMED, SENDING)
        lease = now + timedelta(seconds=self.policy.lease_seconds) if leased else None
        return claim_entity(claim, lease_until=lease, now=now)

    def _move(self, claim: Claim, target: Claim, *, partial_reason: str | None = None) -> Claim:
        entity = self._entity(target, self._clock())
        if partial_reason:
            entity = partial_entity(entity, partial_reason)
        try:
            return replace(target, version=self._replace(entity, claim.version))
        except VersionConflict:
            # The write may have been applied and only its answer lost (the SDK then retried it and
            # got the conflict): it counts if the stored claim is exactly what we wrote.
            found = self._read(claim.key)
            if found is not None and found[0].owner == claim.owner and found[0].state == target.state:
                return replace(target, version=found[1])
            raise
