"""Answers of slow lookups kept until they expire, one lookup per key at a time, within a record's bound.

Shared by the compute facts and the retail prices of the cost estimate: a finished run's record may wait
for a lookup at most its :class:`~amlobs.lookup_cache.Budget`; a concurrent record that needs the same key
waits for the lookup already running (within its own budget) instead of starting another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Budget:
    """A deadline shared by the lookups of one record: the record never waits longer for its estimate."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = clock() + seconds

    def remaining(self) -> float:
        return max(self._deadline - self._clock(), 0.0)

    @property
    def spent(self) -> bool:
        return self.remaining() <= 0.0


@dataclass(frozen=True)
class Unavailable:
    """No value to be had now, and why (a lookup failed, was refused, or outlasted its budget)."""

    reason: str


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    expires: float


class LookupCache(Generic[K, V]):
    """Values per key until their own time to live ends (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[K, threading.Lock] = {}

    def fresh(self, key: K) -> V | None:
        """The value of ``key`` if it has not expired."""
        entry = self._entries.get(key)
        return entry.value if entry is not None and entry.expires > self._clock() else None

    def get(self, key: K, budget: Budget, fetch: Callable[[], tuple[V, float]], busy: V) -> V:
        """The fresh value of ``key``, else ``fetch()``'s (kept for the seconds it returns with it).

        ``busy`` is the answer when another thread's lookup of ``key`` outlasts ``budget``.
        """
        cached = self.fresh(key)
        if cached is not None:
            return cached
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        if not key_lock.acquire(timeout=max(budget.remaining(), 0.001)):
            return busy
        try:
            cached = self.fresh(key)  # the lookup this thread waited for may have answered
            if cached is not None:
                return cached
            value, ttl = fetch()
            self._entries[key] = _Entry(value, self._clock() + ttl)
            return value
        finally:
            key_lock.release()
