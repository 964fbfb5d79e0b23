"""The cache behind the cost lookups: values until they expire, one lookup per key at a time."""

from __future__ import annotations

import threading

from amlobs.lookup_cache import Budget, LookupCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_kept_for_its_own_time_to_live_then_fetched_again() -> None:
    clock = Clock()
    cache: LookupCache[str, str] = LookupCache(clock)
    calls: list[str] = []

    def fetch(value: str, ttl: float) -> tuple[str, float]:
        calls.append(value)
        return value, ttl

    assert cache.get("k", Budget(1.0, clock), lambda: fetch("a", 60.0), busy="busy") == "a"
    clock.now += 59.0
    assert cache.get("k", Budget(1.0, clock), lambda: fetch("b", 60.0), busy="busy") == "a"
    clock.now += 1.0
    assert cache.get("k", Budget(1.0, clock), lambda: fetch("b", 0.0), busy="busy") == "b"
    # a time to live of 0 keeps nothing: the next caller asks again
    assert cache.fresh("k") is None
    assert cache.get("k", Budget(1.0, clock), lambda: fetch("c", 60.0), busy="busy") == "c"
    assert calls == ["a", "b", "c"]


def test_concurrent_callers_of_one_key_share_one_lookup() -> None:
    cache: LookupCache[str, int] = LookupCache()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> tuple[int, float]:
        calls.append(1)
        started.set()
        release.wait(5)
        return 42, 60.0

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(cache.get("k", Budget(5.0), slow, busy=-1)))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: results.append(cache.get("k", Budget(5.0), slow, busy=-1)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert results == [42, 42]
    assert calls == [1]


def test_a_caller_whose_budget_ends_while_another_looks_up_gets_busy_not_a_wait() -> None:
    cache: LookupCache[str, int] = LookupCache()
    started, release = threading.Event(), threading.Event()

    def slow() -> tuple[int, float]:
        started.set()
        release.wait(5)
        return 42, 60.0

    holder = threading.Thread(target=lambda: cache.get("k", Budget(5.0), slow, busy=-1))
    holder.start()
    started.wait(5)
    try:
        assert cache.get("k", Budget(0.05), lambda: (7, 60.0), busy=-1) == -1
        assert cache.get("other", Budget(0.05), lambda: (7, 60.0), busy=-1) == 7  # other keys never wait
    finally:
        release.set()
        holder.join(5)
