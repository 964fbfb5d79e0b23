"""Dedupe table and rejected-event blobs against Azurite (the real storage emulator) on loopback."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from hypothesis import given, settings
from hypothesis import strategies as st

from amlobs.errors import ClaimLost, DeliveryInProgress, StorageUnavailable, TransientError
from amlobs.settings import Settings, SettingsError, StorageSettings
from amlobs.storage import (
    DEDUPE_TABLE,
    MAX_STORED_PAYLOAD_BYTES,
    REJECTED_CONTAINER,
    BlobRejectedEventStore,
    ClaimPolicy,
    MemoryDedupeStore,
    MemoryRejectedEventStore,
    NullDedupeStore,
    NullRejectedEventStore,
    StorageTimeouts,
    TableDedupeStore,
    create_stores,
    dedupe_key,
    rejected_document,
)
from amlobs.storage.claims import VersionConflict
from tests.fakes.azurite import DEV_ACCOUNT, REPO_ROOT, Azurite, start_azurite

FIXED_NOW = dt.datetime(2026, 11, 26, 23, 59, 30, tzinfo=dt.UTC)
BLOB_NAME = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/([A-Za-z0-9._-]+)-([0-9a-f]{32})\.json$")
# Characters Table storage forbids in PartitionKey/RowKey.
FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")

AWKWARD_IDS = [
    "a/b",
    "a\\b",
    "a#b",
    "a?b",
    "/\\#?",
    "tab\tnew\nline\r",
    "\x00\x01\x1f\x7f\x9f",
    "événement-💥-\u2028-中文",
    "\ud800-lone-surrogate",  # legal in a JSON-decoded string
    "x" * 256,
    "/\\#?" * 64,
    " ",
    "",
]


def _conn_settings(azurite: Azurite) -> StorageSettings:
    return StorageSettings(connection_string=azurite.connection_string)


def _fresh_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request_counter() -> tuple[list[tuple[str, str]], Any]:
    seen: list[tuple[str, str]] = []

    def hook(request: Any) -> None:
        seen.append((request.http_request.method, request.http_request.url))

    return seen, hook


# ---------------------------------------------------------------------------------------------
# Dedupe table


def record(store: Any, key: str, context: dict[str, str] | None = None) -> None:
    """What the processor does for a key it records: claim, send (nothing here), mark done."""
    claim = store.claim(key, context or {})
    assert claim is not None, f"{key} was already recorded"
    store.complete(store.start_sending(claim))


class Clock:
    def __init__(self, now: dt.datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _store(azurite: Azurite, **kwargs: Any) -> TableDedupeStore:
    kwargs.setdefault("policy", ClaimPolicy(lease_seconds=60, wait_seconds=0.3, poll_seconds=0.05))
    return TableDedupeStore(_conn_settings(azurite), **kwargs)


def test_claim_send_done_round_trip(storage_env: Azurite) -> None:
    clock = Clock()
    store = _store(storage_env, clock=clock)
    assert store.state_of("run|ws|r1|completed") is None  # the table does not even exist yet

    claim = store.claim("run|ws|r1|completed", {"run_id": "r1", "status": "Completed"})
    assert claim is not None and claim.state == "claimed" and claim.attempt == 1
    assert not claim.accepted and not claim.maybe_delivered
    assert store.state_of("run|ws|r1|completed") == "claimed"
    claim = store.start_sending(claim)
    assert store.state_of("run|ws|r1|completed") == "sending"
    store.complete(claim)

    # A fresh store (another worker process) sees it recorded: every later delivery is a duplicate.
    assert _store(storage_env).claim("run|ws|r1|completed", {}) is None
    assert store.state_of("run|ws|r2|completed") is None
    [entity] = storage_env.list_entities(DEDUPE_TABLE)
    assert entity["event_id"] == "run|ws|r1|completed"
    assert (entity["state"], entity["run_id"], entity["status"]) == ("done", "r1", "Completed")
    assert entity["processed_at"] == FIXED_NOW
    assert entity["RowKey"] == hashlib.sha256(b"run|ws|r1|completed").hexdigest()
    assert entity["PartitionKey"] == entity["RowKey"][:2]


def test_concurrent_claims_on_one_key_record_it_once(storage_env: Azurite) -> None:
    # Two deliveries of one event, or RunCompleted + RunStatusChanged/Completed: one records, the
    # others wait for it and find it recorded.
    stores = [_store(storage_env, policy=ClaimPolicy(lease_seconds=60, wait_seconds=10)) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def deliver(store: TableDedupeStore) -> None:
        barrier.wait()
        claim = store.claim("run|ws|r1|completed", {})
        if claim is None:
            outcomes.append("duplicate")
            return
        time.sleep(0.3)  # enrichment and the POST
        store.complete(store.start_sending(claim))
        outcomes.append("recorded")

    threads = [threading.Thread(target=deliver, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["duplicate"] * 5 + ["recorded"]


def test_a_fresh_claim_of_another_invocation_means_retry_later(storage_env: Azurite) -> None:
    store = _store(storage_env)
    assert store.claim("k", {}) is not None
    started = time.monotonic()
    with pytest.raises(DeliveryInProgress, match="another invocation") as raised:
        _store(storage_env).claim("k", {})
    assert isinstance(raised.value, TransientError)  # Event Grid redelivers
    assert time.monotonic() - started >= 0.3  # it waited for the other invocation first


def test_an_expired_claim_is_taken_over_cleanly(storage_env: Azurite) -> None:
    # The first invocation died while enriching: nothing was sent, so nothing may be a duplicate.
    clock = Clock()
    first = _store(storage_env, clock=clock).claim("k", {})
    assert first is not None
    clock.advance(61)

    second = _store(storage_env, clock=clock).claim("k", {})

    assert second is not None and second.attempt == 2 and second.taken_over == "claimed"
    assert not second.maybe_delivered
    with pytest.raises(ClaimLost):  # the first one cannot send any more
        _store(storage_env, clock=clock).start_sending(first)


def test_a_claim_that_expired_while_sending_is_taken_over_as_maybe_delivered(storage_env: Azurite) -> None:
    clock = Clock()
    store = _store(storage_env, clock=clock)
    first = store.claim("k", {})
    assert first is not None
    first = store.start_sending(first)  # then the worker was killed during or after the POST
    clock.advance(30)
    with pytest.raises(DeliveryInProgress):  # within the lease: still its owner's
        store.claim("k", {})
    clock.advance(31)

    second = store.claim("k", {})

    assert second is not None and second.maybe_delivered and second.taken_over == "sending"
    store.complete(store.start_sending(second))
    store.complete(first)  # the first owner coming back cannot undo the second's record
    assert store.claim("k", {}) is None


def test_a_released_claim_is_taken_over_at_once_with_what_was_stored(storage_env: Azurite) -> None:
    store = _store(storage_env)
    first = store.claim("k", {"run_id": "r"})
    assert first is not None
    first = store.start_sending(first)
    store.release(first, accepted=frozenset({"event:AmlRunStatusChanged"}), maybe_delivered=False)
    assert store.state_of("k") == "retry"

    second = _store(storage_env).claim("k", {"run_id": "r"})

    assert second is not None and second.attempt == 2
    assert second.accepted == {"event:AmlRunStatusChanged"} and not second.maybe_delivered
    store.release(second, accepted=second.accepted, maybe_delivered=True)
    third = store.claim("k", {})
    assert third is not None and third.maybe_delivered and third.accepted == {"event:AmlRunStatusChanged"}


def test_a_key_recorded_by_the_previous_version_is_a_duplicate(storage_env: Azurite) -> None:
    # The previous version wrote {event_id, processed_at, context} once a key was recorded.
    key = dedupe_key("run|ws|r1|completed")
    storage_env.table_service().create_table_if_not_exists(DEDUPE_TABLE).create_entity(
        {
            "PartitionKey": key.partition_key,
            "RowKey": key.row_key,
            "event_id": "run|ws|r1|completed",
            "processed_at": FIXED_NOW,
            "run_id": "r1",
        }
    )
    assert _store(storage_env).claim("run|ws|r1|completed", {}) is None


def test_context_keeps_only_identifier_keys_and_cannot_override_the_claim(storage_env: Azurite) -> None:
    store = _store(storage_env)
    context = {"run_id": "r", "bad key": "x", "PartitionKey": "zz", "event_id": "forged", "state": "done"}
    claim = store.claim("k", {**context, "owner": "me", "long": "v" * 5000})
    assert claim is not None
    [entity] = storage_env.list_entities(DEDUPE_TABLE)
    assert entity["event_id"] == "k" and entity["state"] == "claimed" and entity["owner"] == claim.owner
    assert entity["PartitionKey"] == dedupe_key("k").partition_key
    assert "bad key" not in entity
    assert entity["long"] == "v" * 1024
    store.complete(store.start_sending(claim))
    assert storage_env.list_entities(DEDUPE_TABLE)[0]["run_id"] == "r"  # kept through every move


@pytest.mark.parametrize("key", AWKWARD_IDS, ids=lambda v: repr(v[:12]))
def test_awkward_keys_round_trip(storage_env: Azurite, key: str) -> None:
    store = _store(storage_env)
    record(store, key, {"run_id": "run-1"})

    assert store.claim(key, {}) is None
    assert store.state_of(key + "x") is None
    [entity] = storage_env.list_entities(DEDUPE_TABLE)
    assert entity["event_id"] == key
    assert not FORBIDDEN_KEY_CHARS.search(entity["PartitionKey"] + entity["RowKey"])


def test_keys_differing_only_in_forbidden_characters_stay_distinct(storage_env: Azurite) -> None:
    # A sanitiser that maps / \ # ? to one character would merge these and drop real events.
    store = _store(storage_env)
    record(store, "run/1")
    for sibling in ("run\\1", "run#1", "run?1", "run_1", "run%2F1", "run1"):
        assert store.state_of(sibling) is None, sibling
    assert store.state_of("run/1") == "done"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=256), st.text(max_size=256))
def test_dedupe_keys_are_valid_and_injective(a: str, b: str) -> None:
    key = dedupe_key(a)
    assert not FORBIDDEN_KEY_CHARS.search(key.partition_key + key.row_key)
    assert 0 < len(key.row_key) <= 1024
    assert dedupe_key(a) == key  # stable across calls (and processes: no salt)
    if a != b:
        assert dedupe_key(b).row_key != key.row_key


def test_table_is_created_once_on_first_write(storage_env: Azurite) -> None:
    table = _fresh_name("dedupe")
    seen, hook = _request_counter()
    store = _store(storage_env, table_name=table, client_options={"raw_request_hook": hook})
    assert table not in storage_env.tables()
    assert store.state_of("evt-0") is None
    assert table not in storage_env.tables()  # a lookup never creates anything

    for i in range(5):
        record(store, f"evt-{i}")

    assert table in storage_env.tables()
    creates = [url for method, url in seen if method == "POST" and url.rstrip("/").endswith("/Tables")]
    assert len(creates) == 1
    assert len(storage_env.list_entities(table)) == 5


def test_existing_table_is_used(storage_env: Azurite) -> None:
    # In Azure, Bicep creates the table before the first event.
    table = _fresh_name("dedupe")
    storage_env.table_service().create_table(table)
    store = _store(storage_env, table_name=table)
    record(store, "evt-1")
    assert store.state_of("evt-1") == "done"


def test_table_deleted_behind_our_back_is_recreated(storage_env: Azurite) -> None:
    table = _fresh_name("dedupe")
    store = _store(storage_env, table_name=table)
    record(store, "evt-1")
    storage_env.table_service().delete_table(table)

    record(store, "evt-2")

    assert store.state_of("evt-2") == "done"
    assert store.state_of("evt-1") is None


class _AnswerLost(MemoryDedupeStore):
    """Applies a write, then reports a conflict, as the SDK does when it retries a write whose
    first answer was lost (the retry finds the write already applied)."""

    lose_next = False

    def _insert(self, entity: dict[str, Any]) -> str | None:
        version = super()._insert(entity)
        if self.lose_next:
            self.lose_next = False
            raise VersionConflict
        return version

    def _replace(self, entity: dict[str, Any], version: str | None) -> str | None:
        new_version = super()._replace(entity, version)
        if self.lose_next:
            self.lose_next = False
            raise VersionConflict
        return new_version


def test_a_write_applied_but_unanswered_still_counts_as_ours() -> None:
    store = _AnswerLost()
    store.lose_next = True
    claim = store.claim("k", {})  # the insert landed, its answer did not
    assert claim is not None and claim.attempt == 1
    store.lose_next = True
    claim = store.start_sending(claim)  # the same for the move to "sending"
    store.complete(claim)
    assert store.recorded == {"k"}


# ---------------------------------------------------------------------------------------------
# Rejected-event blobs


def test_rejected_event_blob_content_and_metadata(storage_env: Azurite) -> None:
    store = BlobRejectedEventStore(_conn_settings(storage_env), clock=lambda: FIXED_NOW)
    payload = '{"id": "evt-9", "eventType": "Microsoft.Storage.BlobCreated", "data": {"é": 1}}'

    name = store.store(payload, reason="unsupported_event_type", detail="not an AML event", event_id="evt-9")

    [blob] = storage_env.list_blobs(REJECTED_CONTAINER)
    assert blob.name == name
    match = BLOB_NAME.match(blob.name)
    assert match is not None, blob.name
    assert match.group(1, 2, 3) == ("2026", "11", "26")
    assert match.group(4) == "evt-9"
    assert blob.metadata == {
        "reason": "unsupported_event_type",
        "event_id": "evt-9",
        "payload_truncated": "false",
    }
    assert blob.content_type == "application/json; charset=utf-8"
    document = json.loads(blob.content.decode("utf-8"))
    assert document == {
        "reason": "unsupported_event_type",
        "detail": "not an AML event",
        "received_at": "2026-11-26T23:59:30.000+00:00",
        "event_id": "evt-9",
        "payload": payload,
        "payload_encoding": "utf-8",
        "payload_truncated": False,
        "payload_size_bytes": len(payload.encode("utf-8")),
        "payload_sha256": hashlib.sha256(payload.encode("utf-8")).hexdigest(),
    }


def test_rejected_event_without_id_and_with_binary_payload(storage_env: Azurite) -> None:
    store = BlobRejectedEventStore(_conn_settings(storage_env))
    payload = b"\xff\xfe\x00not json at all\x80"

    name = store.store(payload, reason="not_json", detail="Expecting value", event_id=None)

    [blob] = storage_env.list_blobs(REJECTED_CONTAINER)
    assert blob.name == name
    assert BLOB_NAME.match(blob.name) and "/no-event-id-" in blob.name
    document = json.loads(blob.content)
    assert "event_id" not in document
    assert "event_id" not in blob.metadata
    assert document["payload_encoding"] == "base64"
    assert base64.b64decode(document["payload"]) == payload  # nothing lost


@pytest.mark.parametrize(
    ("event_id", "in_metadata"),
    [
        ("../../etc/passwd", True),
        ("a/b?c#d", True),
        ("x" * 256, True),
        ("\ud800", False),
        ("événement", False),
    ],
)
def test_awkward_event_id_gives_a_flat_safe_blob_name(
    storage_env: Azurite, event_id: str, in_metadata: bool
) -> None:
    store = BlobRejectedEventStore(_conn_settings(storage_env))
    name = store.store("{}", reason="missing_data", detail="d", event_id=event_id)
    assert name is not None
    match = BLOB_NAME.match(name)
    assert match is not None, name
    assert match.group(4).startswith("sha256-")
    [blob] = storage_env.list_blobs(REJECTED_CONTAINER)
    assert json.loads(blob.content)["event_id"] == event_id
    # Metadata travels as HTTP headers: an id that is not printable ASCII is kept in the body only.
    assert blob.metadata.get("event_id") == (event_id if in_metadata else None)


def test_every_rejection_gets_its_own_blob(storage_env: Azurite) -> None:
    store = BlobRejectedEventStore(_conn_settings(storage_env))
    names = {store.store("same", reason="not_json", detail="d", event_id="same-id") for _ in range(3)}
    assert len(names) == 3
    assert {b.name for b in storage_env.list_blobs(REJECTED_CONTAINER)} == names


def test_huge_payload_keeps_head_size_and_sha256(storage_env: Azurite) -> None:
    store = BlobRejectedEventStore(_conn_settings(storage_env))
    # A 2-byte character straddles the cut: the head must still be valid text.
    payload = ("a" * (MAX_STORED_PAYLOAD_BYTES - 1) + "é" + "tail" * 1000).encode("utf-8")

    store.store(payload, reason="too_large", detail="event is too large", event_id="big")

    [blob] = storage_env.list_blobs(REJECTED_CONTAINER)
    document = json.loads(blob.content)
    assert document["payload_truncated"] is True
    assert blob.metadata["payload_truncated"] == "true"
    assert document["payload_size_bytes"] == len(payload)
    assert document["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    head = document["payload"].encode("utf-8")
    assert payload.startswith(head)
    assert MAX_STORED_PAYLOAD_BYTES - 1 <= len(head) <= MAX_STORED_PAYLOAD_BYTES


def test_payload_at_the_limit_is_kept_whole() -> None:
    payload = "z" * MAX_STORED_PAYLOAD_BYTES
    document = rejected_document(payload, reason="r", detail="d", event_id=None, received_at=FIXED_NOW)
    assert document["payload_truncated"] is False
    assert document["payload"] == payload


def test_container_is_created_once(storage_env: Azurite) -> None:
    container = _fresh_name("rejected-")
    seen, hook = _request_counter()
    store = BlobRejectedEventStore(
        _conn_settings(storage_env), container_name=container, client_options={"raw_request_hook": hook}
    )
    for i in range(4):
        store.store("x", reason="not_json", detail="d", event_id=f"e{i}")
    creates = [url for method, url in seen if method == "PUT" and "restype=container" in url]
    assert len(creates) == 1
    assert len(storage_env.list_blobs(container)) == 4


def test_container_deleted_behind_our_back_is_recreated(storage_env: Azurite) -> None:
    container = _fresh_name("rejected-")
    store = BlobRejectedEventStore(_conn_settings(storage_env), container_name=container)
    store.store("x", reason="r", detail="d", event_id="e1")
    storage_env.blob_service().delete_container(container)
    name = store.store("y", reason="r", detail="d", event_id="e2")
    assert [b.name for b in storage_env.list_blobs(container)] == [name]


def test_memory_stores_match_the_storage_shape() -> None:
    dedupe = MemoryDedupeStore()
    assert dedupe.state_of("a/b") is None
    record(dedupe, "a/b", {"run_id": "r"})
    assert dedupe.claim("a/b", {}) is None and dedupe.state_of("a\\b") is None
    assert dedupe.recorded == {"a/b"}
    rejected = MemoryRejectedEventStore(clock=lambda: FIXED_NOW)
    name = rejected.store(b"\xff", reason="not_json", detail="d", event_id="e1")
    assert name is not None and BLOB_NAME.match(name) and name.startswith("2026/11/26/e1-")
    [stored] = rejected.stored
    assert stored.name == name
    assert stored.metadata["reason"] == "not_json"
    assert base64.b64decode(stored.document["payload"]) == b"\xff"


# ---------------------------------------------------------------------------------------------
# Storage unavailable: fail fast with a transient error (Event Grid redelivers)


def _dead_storage() -> StorageSettings:
    port = _free_port()  # bound then released: nothing listens there
    return StorageSettings(
        connection_string=(
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
        )
    )


def test_closed_port_raises_storage_unavailable_quickly() -> None:
    dedupe, rejected = create_stores(
        Settings.from_env({"AzureWebJobsStorage": _dead_storage().connection_string or ""}), None
    )
    for call in (
        lambda: dedupe.claim("e1", {}),
        lambda: rejected.store("x", reason="r", detail="d", event_id="e1"),
    ):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as raised:
            call()
        assert time.monotonic() - started < 5.0
        assert isinstance(raised.value, TransientError)


def test_azurite_stopping_mid_life_raises_storage_unavailable() -> None:
    with start_azurite() as private:
        settings = _conn_settings(private)
        dedupe = TableDedupeStore(settings)
        rejected = BlobRejectedEventStore(settings)
        claim = dedupe.claim("e1", {})
        assert claim is not None
        claim = dedupe.start_sending(claim)
        assert rejected.store("x", reason="r", detail="d", event_id="e1")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        dedupe.complete(claim)
    with pytest.raises(StorageUnavailable):
        dedupe.claim("e2", {})
    with pytest.raises(StorageUnavailable):
        rejected.store("x", reason="r", detail="d", event_id="e2")
    assert time.monotonic() - started < 10.0


def test_wrong_account_key_is_storage_unavailable(azurite: Azurite) -> None:
    wrong = azurite.connection_string.replace("AccountKey=", "AccountKey=AAAA")
    store = TableDedupeStore(StorageSettings(connection_string=wrong))
    with pytest.raises(StorageUnavailable, match="403"):
        store.claim("e1", {})
    with pytest.raises(StorageUnavailable, match="403"):
        BlobRejectedEventStore(StorageSettings(connection_string=wrong)).store(
            "x", reason="r", detail="d", event_id=None
        )


class _BadStorage(BaseHTTPRequestHandler):
    """Answers 503 (mode "busy") or never answers (mode "hang"): what no emulator does on demand."""

    mode = "busy"
    requests: list[str] = []  # noqa: RUF012 - replaced per server below
    release = threading.Event()

    def _handle(self) -> None:
        type(self).requests.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if type(self).mode == "hang":
            type(self).release.wait(30)
            return
        body = b'{"odata.error":{"code":"ServerBusy","message":{"value":"busy"}}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(params=["busy", "hang"])
def bad_storage(request: pytest.FixtureRequest) -> Iterator[tuple[StorageSettings, type[_BadStorage]]]:
    handler = type(
        "Handler", (_BadStorage,), {"mode": request.param, "requests": [], "release": threading.Event()}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    settings = StorageSettings(
        connection_string=(
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
        )
    )
    yield settings, handler
    handler.release.set()
    server.shutdown()
    server.server_close()


def test_5xx_and_hangs_are_retried_a_bounded_number_of_times(
    bad_storage: tuple[StorageSettings, type[_BadStorage]],
) -> None:
    settings, handler = bad_storage
    timeouts = StorageTimeouts(
        connection_timeout_seconds=1, read_timeout_seconds=0.5, max_attempts=3, backoff_seconds=0.1
    )

    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="503" if handler.mode == "busy" else "table"):
        TableDedupeStore(settings, timeouts=timeouts).state_of("e1")
    table_elapsed = time.monotonic() - started
    assert len(handler.requests) == 3
    assert table_elapsed < 5.0

    handler.requests.clear()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        BlobRejectedEventStore(settings, timeouts=timeouts).store("x", reason="r", detail="d", event_id=None)
    assert len(handler.requests) == 3
    assert time.monotonic() - started < 5.0


def test_timeouts_follow_the_settings_and_stay_short() -> None:
    default = StorageTimeouts.from_settings(Settings.from_env({}))
    assert default.connection_timeout_seconds <= 5
    assert default.max_attempts == 3
    strict = StorageTimeouts.from_settings(
        Settings.from_env({"AML_OBS_HTTP_MAX_ATTEMPTS": "1", "AML_OBS_HTTP_TIMEOUT_SECONDS": "2"})
    )
    assert (strict.max_attempts, strict.read_timeout_seconds, strict.connection_timeout_seconds) == (
        1,
        2.0,
        2.0,
    )


# ---------------------------------------------------------------------------------------------
# Identity-based storage (bearer tokens) against Azurite over https with OAuth checks on


class _JwtCredential:
    """A TokenCredential minting unsigned JWTs; Azurite's basic OAuth checks iss/aud/lifetime only."""

    def __init__(self, audience: str | None = None) -> None:
        self.audience = audience
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {
            "aud": self.audience or scopes[0].removesuffix("/.default"),
            "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": "11111111-1111-1111-1111-111111111111",
        }

        def part(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        return AccessToken(f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln", now + 3600)


class _FailingCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError("ManagedIdentityCredential: no identity assigned")


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    cert, key = _self_signed_cert(tmp_path_factory.mktemp("tls"))
    with start_azurite(tls=(cert, key), oauth=True) as running:
        yield running, cert


def _identity_settings(azurite: Azurite) -> Settings:
    return Settings.from_env(
        {
            "AzureWebJobsStorage__blobServiceUri": azurite.blob_endpoint,
            "AzureWebJobsStorage__tableServiceUri": azurite.table_endpoint,
            "AzureWebJobsStorage__clientId": "22222222-2222-2222-2222-222222222222",
        }
    )


def test_identity_based_storage_uses_bearer_tokens(azurite_oauth: tuple[Azurite, Path]) -> None:
    azurite, cert = azurite_oauth
    settings = _identity_settings(azurite)
    assert settings.storage is not None and settings.storage.connection_string is None
    credential = _JwtCredential()
    tls = {"connection_verify": str(cert)}
    table = _fresh_name("dedupe")
    dedupe = TableDedupeStore(settings.storage, credential, table_name=table, client_options=tls)
    rejected = BlobRejectedEventStore(settings.storage, credential, client_options=tls)

    record(dedupe, "evt/1", {"run_id": "r"})
    assert dedupe.state_of("evt/1") == "done"
    name = rejected.store("not json", reason="not_json", detail="d", event_id="evt-2")

    assert credential.scopes and {s for scopes in credential.scopes for s in scopes} == {
        "https://storage.azure.com/.default"
    }
    assert [e["event_id"] for e in azurite.list_entities(table)] == ["evt/1"]
    assert [b.name for b in azurite.list_blobs(REJECTED_CONTAINER)] == [name]


def test_identity_with_a_token_for_another_audience_is_storage_unavailable(
    azurite_oauth: tuple[Azurite, Path],
) -> None:
    azurite, cert = azurite_oauth
    settings = _identity_settings(azurite)
    assert settings.storage is not None
    wrong = _JwtCredential(audience="https://management.azure.com")
    store = TableDedupeStore(settings.storage, wrong, client_options={"connection_verify": str(cert)})
    with pytest.raises(StorageUnavailable):
        store.claim("e1", {})


def test_identity_credential_failure_is_storage_unavailable() -> None:
    storage = StorageSettings(
        blob_service_uri=f"https://127.0.0.1:{_free_port()}/{DEV_ACCOUNT}",
        table_service_uri=f"https://127.0.0.1:{_free_port()}/{DEV_ACCOUNT}",
    )
    with pytest.raises(StorageUnavailable, match="no identity assigned"):
        TableDedupeStore(storage, _FailingCredential()).claim("e1", {})
    with pytest.raises(StorageUnavailable, match="no identity assigned"):
        BlobRejectedEventStore(storage, _FailingCredential()).store(
            "x", reason="r", detail="d", event_id=None
        )


def test_identity_storage_needs_credential_and_https() -> None:
    https = StorageSettings(
        blob_service_uri="https://a.blob.core.windows.net",
        table_service_uri="https://a.table.core.windows.net",
    )
    with pytest.raises(SettingsError, match="credential"):
        create_stores(Settings(None, None, None, https), None)
    plain = StorageSettings(
        blob_service_uri="http://127.0.0.1:1/acct", table_service_uri="http://127.0.0.1:2/acct"
    )
    with pytest.raises(SettingsError, match="https"):
        create_stores(Settings(None, None, None, plain), _JwtCredential())


# ---------------------------------------------------------------------------------------------
# Factory, storage off, import cost


def test_create_stores_from_environment_uses_azurite(storage_env: Azurite) -> None:
    dedupe, rejected = create_stores(Settings.from_env(), None)
    assert isinstance(dedupe, TableDedupeStore) and isinstance(rejected, BlobRejectedEventStore)
    record(dedupe, "evt-1", {"run_id": "r"})
    name = rejected.store("bad", reason="not_json", detail="d", event_id="evt-1")
    assert dedupe.claim("evt-1", {}) is None
    assert [b.name for b in storage_env.list_blobs(REJECTED_CONTAINER)] == [name]


def test_differing_storage_client_id_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env(
        {
            "AZURE_CLIENT_ID": "app-identity",
            "AzureWebJobsStorage__accountName": "acct",
            "AzureWebJobsStorage__clientId": "host-identity",
        }
    )
    with caplog.at_level("WARNING", logger="amlobs.storage"):
        create_stores(settings, _JwtCredential())
    assert "host-identity" in caplog.text and "app-identity" in caplog.text
    caplog.clear()
    same = Settings.from_env(
        {
            "AZURE_CLIENT_ID": "one",
            "AzureWebJobsStorage__accountName": "acct",
            "AzureWebJobsStorage__clientId": "one",
        }
    )
    with caplog.at_level("WARNING", logger="amlobs.storage"):
        create_stores(same, _JwtCredential())
    assert caplog.text == ""


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_storage_off_warns_once_per_process_and_logs_rejected_events() -> None:
    result = _run_python(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s|%(name)s|%(message)s")
        from amlobs.settings import Settings
        from amlobs.storage import create_stores
        settings = Settings.from_env({})
        stores = [create_stores(settings, None) for _ in range(3)]
        dedupe, rejected = stores[0]
        claim = dedupe.claim("e1", {"run_id": "r"})
        dedupe.complete(dedupe.start_sending(claim))
        print("PROCESSED", dedupe.claim("e1", {}) is None)
        print("NAMES", rejected.store('{"broken": ', reason="not_json", detail="bad json", event_id="e1"),
              rejected.store("y" * 5000, reason="too_large", detail="big", event_id=None))
        print("COUNT", rejected.count)
        print("AZURE", sorted(m for m in sys.modules if m.startswith("azure")))
        """
    )
    lines = result.stdout.splitlines()
    storage_off = [line for line in lines if "dedupe and rejected-event storage are off" in line]
    assert len(storage_off) == 1 and storage_off[0].startswith("WARNING|amlobs.storage|AzureWebJobsStorage")
    assert "PROCESSED False" in lines
    assert "NAMES None None" in lines
    assert "COUNT 2" in lines
    assert "AZURE []" in lines
    rejected_lines = [line for line in lines if "not stored (no storage configured)" in line]
    assert len(rejected_lines) == 2
    assert 'not_json: bad json; payload: {"broken": ' in rejected_lines[0]
    assert "y" * 2000 + "… (5000 chars)" in rejected_lines[1]


def test_null_stores_in_process(caplog: pytest.LogCaptureFixture) -> None:
    dedupe, rejected = NullDedupeStore(), NullRejectedEventStore()
    claim = dedupe.claim("e", {})
    assert claim is not None
    dedupe.complete(dedupe.start_sending(claim))
    assert dedupe.claim("e", {}) is not None  # storage off: nothing is remembered
    with caplog.at_level("WARNING", logger="amlobs.storage"):
        assert rejected.store(b"\xffpayload", reason="not_json", detail="d", event_id=None) is None
    assert rejected.count == 1
    assert "payload" in caplog.text and "not_json" in caplog.text


def test_importing_and_creating_stores_does_not_import_the_sdks() -> None:
    # Cold start: the Functions host indexes function_app, which imports this module.
    result = _run_python(
        """
        import sys, time
        started = time.perf_counter()
        import amlobs.storage
        from amlobs.settings import Settings
        elapsed = time.perf_counter() - started
        cs = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
              "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;")
        amlobs.storage.create_stores(Settings.from_env({"AzureWebJobsStorage": cs}), None)
        print("AZURE", sorted(m for m in sys.modules if m.startswith("azure")))
        print("IMPORT_MS", round(elapsed * 1000, 1))
        """
    )
    assert "AZURE []" in result.stdout.splitlines()
