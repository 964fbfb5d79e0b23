"""An Event Grid push delivery simulator: at-least-once, out of order, concurrent, retried, dead-lettered.

* Each published event is delivered at least once; a share of them is delivered twice (the second copy
  close behind the first, so both are often in flight at once, or later).
* Deliveries start at random times within a window, so statuses of one run arrive in any order, and a
  ``RunCompleted`` arrives together with the ``RunStatusChanged``/Completed of the same run.
* ``concurrency`` deliveries are in flight at once, spread over the worker processes of a
  :class:`WorkerPool`.
* A delivery that fails (HTTP 5xx, connection refused or reset, no answer within the delivery timeout)
  is retried with exponential backoff and jitter; after ``max_attempts`` it is dead-lettered: written as
  an Event Grid dead-letter blob (a JSON array holding the event and its delivery history).

Every attempt is logged with its worker, times and outcome, for the analysis.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.scenario import Key, SourceEvent

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Attempt:
    delivery: int
    event_id: str
    key: Key
    event_type: str
    number: int
    worker: int  # pid
    started: float
    ended: float = 0.0
    outcome: str = ""  # ok | failed | killed | timeout | unreachable
    error: str = ""  # exception type reported by the worker
    message: str = ""


@dataclass
class Worker:
    process: subprocess.Popen[str]
    port: int
    in_flight: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid


class WorkerPool:
    """Worker processes running ``tests.chaos.worker``; one can be killed (SIGKILL) and replaced."""

    def __init__(self, size: int, env: Mapping[str, str], threads: int) -> None:
        self._env = {
            **env,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "CHAOS_WORKER_THREADS": str(threads),
        }
        self._lock = threading.Condition()
        self._workers: list[Worker] = []
        self.killed: set[int] = set()
        self.started = 0
        starting = [self._spawn() for _ in range(size)]
        for process in starting:
            self._add(process)

    def _spawn(self) -> subprocess.Popen[str]:
        self.started += 1
        return subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.worker"],
            cwd=ROOT,
            env=self._env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def _add(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        line = process.stdout.readline().split()  # blocks until the worker listens (or dies)
        if len(line) != 2 or line[0] != "READY":
            process.kill()
            raise RuntimeError(f"chaos worker did not start (exit code {process.wait()})")
        with self._lock:
            self._workers.append(Worker(process, int(line[1])))
            self._lock.notify_all()

    def acquire(self, rng: random.Random) -> Worker:
        with self._lock:
            while not self._workers:
                self._lock.wait()
            worker = min(self._workers, key=lambda w: (w.in_flight, rng.random()))
            worker.in_flight += 1
            return worker

    def release(self, worker: Worker) -> None:
        with self._lock:
            worker.in_flight -= 1

    def kill_one_busy(self, rng: random.Random, wait_seconds: float = 5.0) -> int | None:
        """SIGKILL a worker that is in the middle of an invocation, then start a replacement."""
        deadline = time.monotonic() + wait_seconds
        with self._lock:
            while True:
                busy = [w for w in self._workers if w.in_flight]
                if busy or time.monotonic() > deadline:
                    break
                self._lock.wait(0.05)
            candidates = busy or list(self._workers)
            if not candidates:
                return None
            victim = rng.choice(candidates)
            self._workers.remove(victim)
            self.killed.add(victim.pid)
        os.kill(victim.pid, signal.SIGKILL)
        victim.process.wait()
        self._add(self._spawn())
        return victim.pid

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()  # the worker exits when its stdin closes
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


@dataclass(order=True)
class _Due:
    due: float
    order: int
    delivery: int = field(compare=False)
    event: SourceEvent = field(compare=False)
    attempt: int = field(compare=False, default=1)
    first_at: float = field(compare=False, default=0.0)


@dataclass
class DeliveryPolicy:
    concurrency: int = 8
    duplicate_rate: float = 0.10
    spread_seconds: float = 4.0  # first deliveries start within this window
    max_attempts: int = 8
    backoff_seconds: float = 0.3  # first retry after about this long, doubling each time
    max_backoff_seconds: float = 4.0
    delivery_timeout_seconds: float = 20.0


class EventGridSimulator:
    def __init__(
        self, pool: WorkerPool, policy: DeliveryPolicy, rng: random.Random, deadletter_dir: Path
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._rng = rng
        self._deadletter_dir = deadletter_dir
        self._heap: list[_Due] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._pending = 0  # deliveries not yet succeeded or dead-lettered
        self.attempts: list[Attempt] = []
        self.deliveries = 0
        self.duplicate_deliveries = 0
        self.deadlettered: list[SourceEvent] = []
        self.delivered_ok = 0

    def publish(self, events: list[SourceEvent]) -> None:
        """Schedule every event once, plus a duplicate delivery for a share of them."""
        now = time.monotonic()
        policy = self._policy
        completed_at: dict[Key, float] = {}
        for event in events:
            if event.is_run_completed and event.key in completed_at:
                offset = completed_at[event.key] + self._rng.uniform(0.0, 0.05)  # both at once
            else:
                offset = self._rng.uniform(0.0, policy.spread_seconds)
                completed_at[event.key] = offset
            self._schedule(event, now + offset)
            if self._rng.random() < policy.duplicate_rate:
                self.duplicate_deliveries += 1
                late = self._rng.random() < 0.5
                extra = self._rng.uniform(0.5, policy.spread_seconds) if late else self._rng.uniform(0, 0.05)
                self._schedule(event, now + offset + extra)

    def _schedule(self, event: SourceEvent, due: float) -> None:
        with self._cond:
            delivery = next(self._order)
            heapq.heappush(self._heap, _Due(due, delivery, delivery, event, 1, due))
            self._pending += 1
            self._cond.notify()

    def run(self) -> None:
        senders = [
            threading.Thread(target=self._send_loop, name=f"eventgrid-{n}", daemon=True)
            for n in range(self._policy.concurrency)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._pending > 0

    def _next(self) -> _Due | None:
        with self._cond:
            while True:
                if self._pending == 0:
                    self._cond.notify_all()
                    return None
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                    self._cond.wait(min(wait, 0.2))
                else:
                    self._cond.wait(0.2)

    def _send_loop(self) -> None:
        while (due := self._next()) is not None:
            attempt = self._deliver(due)
            with self._cond:
                self.attempts.append(attempt)
                self.deliveries += 1
                if attempt.outcome == "ok":
                    self.delivered_ok += 1
                    self._pending -= 1
                elif due.attempt >= self._policy.max_attempts:
                    self.deadlettered.append(due.event)
                    self._write_deadletter(due, attempt)
                    self._pending -= 1
                else:
                    backoff = min(
                        self._policy.max_backoff_seconds,
                        self._policy.backoff_seconds * 2 ** (due.attempt - 1),
                    ) * self._rng.uniform(0.8, 1.2)
                    heapq.heappush(
                        self._heap,
                        _Due(
                            time.monotonic() + backoff,
                            next(self._order),
                            due.delivery,
                            due.event,
                            due.attempt + 1,
                            due.first_at,
                        ),
                    )
                self._cond.notify_all()

    def _deliver(self, due: _Due) -> Attempt:
        worker = self._pool.acquire(self._rng)
        event = due.event
        attempt = Attempt(
            due.delivery, event.event_id, event.key, event.event_type, due.attempt, worker.pid, time.time()
        )
        connection = http.client.HTTPConnection(
            "127.0.0.1", worker.port, timeout=self._policy.delivery_timeout_seconds
        )
        try:
            connection.request(
                "POST",
                "/runtime/webhooks/eventgrid",
                body=event.body.encode(),
                headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
            )
            response = connection.getresponse()
            answer = json.loads(response.read() or b"{}")
            if response.status == 200:
                attempt.outcome = "ok"
            else:
                attempt.outcome = "failed"
                attempt.error = str(answer.get("error", ""))
                attempt.message = str(answer.get("message", ""))
        except TimeoutError:
            attempt.outcome = "timeout"
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            attempt.outcome = "killed" if worker.pid in self._pool.killed else "unreachable"
            attempt.message = type(exc).__name__
        finally:
            connection.close()
            attempt.ended = time.time()
            self._pool.release(worker)
        return attempt

    def _write_deadletter(self, due: _Due, attempt: Attempt) -> None:
        # The shape Event Grid writes to the dead-letter container: the event plus its delivery history.
        event = json.loads(due.event.body)
        event.update(
            deadLetterReason="MaxDeliveryAttemptsExceeded",
            deliveryAttempts=due.attempt,
            lastDeliveryOutcome="Probation" if attempt.outcome != "failed" else "GenericError",
            lastHttpStatusCode=500 if attempt.outcome == "failed" else 0,
            publishTime=event.get("eventTime"),
            lastDeliveryAttemptTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(attempt.ended)),
        )
        path = self._deadletter_dir / f"{due.delivery:06d}-{due.event.event_id}.json"
        path.write_text(json.dumps([event]), encoding="utf-8")
