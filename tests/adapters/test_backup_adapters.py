"""Backup storage and backup streams against real things: files on disk (and a tiny tmpfs to fill),
an S3 API over HTTP (moto's server on a free port), and the suite's PostgreSQL 15 primary and
streaming replica. Throughputs are printed (`pytest -s` shows them)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import secrets
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from moto.server import ThreadedMotoServer

from hadr_portal.adapters.pg.backup import backup_stream, pg_restore_list, server_facts
from hadr_portal.adapters.pg.connection import BackupFailed, PgConninfo, TransientBackupError
from hadr_portal.adapters.storage import (
    LocalStorage,
    S3Storage,
    StorageError,
    StoredObject,
    TransientStorageError,
    storage_from_config,
)
from hadr_portal.adapters.storage import local as local_storage
from tests.infra.plugin import Infrastructure, free_port

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
FAKE_KEY, FAKE_SECRET = "AKIAHADRTEST", "hadr-test-secret"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def report_speed(label: str, size: int, seconds: float) -> None:
    print(f"\n[speed] {label}: {size / MiB:.1f} MiB in {seconds:.2f} s = {size / MiB / max(seconds, 1e-9):.0f} MiB/s")


class Source(io.RawIOBase):
    """A non-seekable stream of `total` random bytes, generated 1 MiB at a time; raises
    RuntimeError("source broke") once `fail_after` bytes were handed out, if given."""

    def __init__(self, total: int, fail_after: int | None = None) -> None:
        super().__init__()
        self.left, self.given, self.fail_after = total, 0, fail_after
        self.pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.fail_after is not None and self.given >= self.fail_after:
            raise RuntimeError("source broke")
        if not self.pending and self.left:
            self.pending = os.urandom(min(MiB, self.left))
            self.left -= len(self.pending)
        size = len(self.pending) if size is None or size < 0 else size
        data, self.pending = self.pending[:size], self.pending[size:]
        self.given += len(data)
        return data


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


# --- LocalStorage ---------------------------------------------------------------------------------


def test_local_put_stream_stores_hashes_and_reads_back(tmp_path: Path) -> None:
    data = os.urandom(20 * MiB)
    store = LocalStorage(tmp_path / "backups")
    progress: list[int] = []
    started = time.monotonic()
    stored = store.put_stream("daily/one.bin", io.BytesIO(data), on_progress=progress.append)
    report_speed("LocalStorage.put_stream (fsync included)", len(data), time.monotonic() - started)

    assert stored == StoredObject("daily/one.bin", len(data), sha256_of(data))
    assert (tmp_path / "backups" / "daily" / "one.bin").read_bytes() == data
    assert b"".join(store.open_read("daily/one.bin")) == data
    assert store.sha256("daily/one.bin") == StoredObject("daily/one.bin", len(data), sha256_of(data))
    assert store.stat("daily/one.bin") == StoredObject("daily/one.bin", len(data))
    assert store.stat("daily/none.bin") is None
    assert progress == sorted(progress) and progress[-1] == len(data) and len(progress) >= 2
    assert store.list() == [StoredObject("daily/one.bin", len(data))]
    assert store.list("weekly/") == []
    with pytest.raises(StorageError, match="no backup object"):
        store.open_read("daily/none.bin")


def test_local_failed_stream_leaves_the_key_as_it_was(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.put_bytes("keep.bin", b"the old backup")

    with pytest.raises(RuntimeError, match="source broke"):
        store.put_stream("new.bin", Source(30 * MiB, fail_after=12 * MiB))
    with pytest.raises(RuntimeError, match="source broke"):
        store.put_stream("keep.bin", Source(30 * MiB, fail_after=12 * MiB))

    assert store.stat("new.bin") is None
    assert not (tmp_path / "new.bin").exists()
    assert b"".join(store.open_read("keep.bin")) == b"the old backup"
    assert files_under(tmp_path) == ["keep.bin"]  # the .partial files went too


def test_local_partials_of_killed_writers_are_ignored_and_cleaned_up(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.put_bytes("a/done.bin", b"complete")
    leftover = tmp_path / "a" / "killed.bin.partial"  # what a SIGKILLed writer leaves
    leftover.write_bytes(b"half")

    assert store.list() == [StoredObject("a/done.bin", 8)]
    assert store.partials(older_than_seconds=0) == ["a/killed.bin.partial"]
    assert store.cleanup_partials(older_than_seconds=3600) == []  # fresh: could be a write in progress
    assert leftover.exists()

    an_hour_ago = time.time() - 3700
    os.utime(leftover, (an_hour_ago, an_hour_ago))
    assert store.cleanup_partials(older_than_seconds=3600) == ["a/killed.bin.partial"]
    assert files_under(tmp_path) == ["a/done.bin"]


def test_local_delete_is_idempotent(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.put_bytes("x/y.bin", b"123")
    store.delete("x/y.bin")
    store.delete("x/y.bin")
    store.delete("never/was.bin")
    assert store.stat("x/y.bin") is None
    assert store.list() == []


def test_local_check_fails_where_nothing_can_be_written(tmp_path: Path) -> None:
    LocalStorage(tmp_path / "fine").check()
    assert (tmp_path / "fine").is_dir() and files_under(tmp_path) == []

    (tmp_path / "file").write_text("a regular file, not a directory")
    broken = LocalStorage(tmp_path / "file" / "sub")
    with pytest.raises(StorageError, match=r"backup directory .*/file/sub is not usable: Not a directory"):
        broken.check()
    with pytest.raises(StorageError, match="cannot write"):
        broken.put_bytes("a.bin", b"x")


def test_local_disk_full_is_reported_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:  # no privilege to mount: make the writes fail the way a full disk does
        real_open = open

        class FullDisk(io.BufferedWriter):
            def write(self, data: Any) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

        def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(path, mode, *args, **kwargs)
            return FullDisk(handle.detach().raw) if mode == "wb" else handle

        monkeypatch.setattr(local_storage, "open", fake_open, raising=False)
    try:
        store = LocalStorage(mount)
        with pytest.raises(StorageError, match=rf"disk full writing {mount}/big\.bin"):
            store.put_stream("big.bin", Source(4 * MiB))
        assert files_under(mount) == []
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "./a", "a\\b", "x.partial"])
def test_keys_must_stay_inside_the_storage(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        LocalStorage(tmp_path).put_bytes(key, b"x")


# --- S3 (moto's server over HTTP) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_SECRET,
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(s3_client: Any) -> Iterator[str]:
    name = f"hadr-test-{secrets.token_hex(4)}"
    s3_client.create_bucket(Bucket=name)
    yield name
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3_client.delete_object(Bucket=name, Key=item["Key"])
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture
def make_s3(s3_endpoint: str) -> Callable[..., S3Storage]:
    def make(bucket: str, **options: Any) -> S3Storage:
        return S3Storage(
            bucket,
            endpoint_url=s3_endpoint,
            region="us-east-1",
            access_key_id=FAKE_KEY,
            secret_access_key=FAKE_SECRET,
            **options,
        )

    return make


def test_s3_multipart_upload_stores_hashes_and_reads_back(
    bucket: str, s3_client: Any, make_s3: Callable[..., S3Storage]
) -> None:
    store = make_s3(bucket, prefix="/cluster1/", multipart_chunk_mb=8, max_concurrency=4)
    assert store.description == f"s3://{bucket}/cluster1"
    store.check()
    data = os.urandom(40 * MiB)
    progress: list[int] = []

    started = time.monotonic()
    stored = store.put_stream("daily/base.tar", io.BytesIO(data), on_progress=progress.append)
    report_speed("S3Storage.put_stream to moto (8 MiB parts, 4 at a time)", len(data), time.monotonic() - started)

    assert stored == StoredObject("daily/base.tar", len(data), sha256_of(data))
    head = s3_client.head_object(Bucket=bucket, Key="cluster1/daily/base.tar")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-5"')  # a multipart upload of five 8 MiB parts
    assert progress[-1] == len(data)
    assert store.stat("daily/base.tar") == StoredObject("daily/base.tar", len(data))
    assert store.stat("daily/other.tar") is None
    assert store.list() == [StoredObject("daily/base.tar", len(data))]  # the check() probe is gone
    assert store.list("weekly/") == []
    started = time.monotonic()
    assert b"".join(store.open_read("daily/base.tar")) == data
    report_speed("S3Storage.open_read from moto", len(data), time.monotonic() - started)
    assert store.sha256("daily/base.tar").sha256 == sha256_of(data)

    store.delete("daily/base.tar")
    store.delete("daily/base.tar")
    assert store.stat("daily/base.tar") is None
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    with pytest.raises(StorageError, match="no backup object"):
        store.open_read("daily/base.tar")


class PipeLike(io.RawIOBase):
    """Hands out at most 64 KiB per read, like a pipe."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self.inner.read(min(65536, size if size is not None and size >= 0 else 65536))


def test_s3_short_reads_still_make_full_parts(bucket: str, s3_client: Any, make_s3: Callable[..., S3Storage]) -> None:
    """s3transfer takes a short first read for a small object (one PUT, the rest read into memory
    at once): 64 KiB pipe reads must still become 8 MiB parts."""
    store = make_s3(bucket, multipart_chunk_mb=8)
    data = os.urandom(20 * MiB)
    assert store.put_stream("piped.bin", PipeLike(data)).sha256 == sha256_of(data)
    assert s3_client.head_object(Bucket=bucket, Key="piped.bin")["ETag"].endswith('-3"')
    assert store.sha256("piped.bin").sha256 == sha256_of(data)

    small = os.urandom(3 * MiB)
    assert store.put_stream("small.bin", PipeLike(small)) == StoredObject("small.bin", len(small), sha256_of(small))
    assert "-" not in s3_client.head_object(Bucket=bucket, Key="small.bin")["ETag"]


def test_s3_missing_bucket_is_named(make_s3: Callable[..., S3Storage]) -> None:
    store = make_s3("hadr-no-such-bucket")
    for action in (
        store.check,
        lambda: store.put_bytes("a.bin", b"x"),
        lambda: store.put_stream("a.bin", Source(10 * MiB)),
        lambda: store.stat("a.bin"),
        lambda: store.list(),
    ):
        with pytest.raises(StorageError, match="bucket 'hadr-no-such-bucket' does not exist") as caught:
            action()
        assert not isinstance(caught.value, TransientStorageError)


@pytest.mark.parametrize("fail_after_mib", [20, 1], ids=["multipart", "single-put"])
def test_s3_failed_upload_leaves_no_object_and_no_multipart_upload(
    bucket: str, s3_client: Any, make_s3: Callable[..., S3Storage], fail_after_mib: int
) -> None:
    store = make_s3(bucket, prefix="p", multipart_chunk_mb=8, max_concurrency=2)
    store.put_bytes("keep.bin", b"the old backup")

    with pytest.raises(RuntimeError, match="source broke"):
        store.put_stream("new.bin", Source(40 * MiB, fail_after=fail_after_mib * MiB))
    with pytest.raises(RuntimeError, match="source broke"):
        store.put_stream("keep.bin", Source(40 * MiB, fail_after=fail_after_mib * MiB))

    assert store.stat("new.bin") is None
    assert [o.key for o in store.list()] == ["keep.bin"]
    assert b"".join(store.open_read("keep.bin")) == b"the old backup"
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_s3_upload_whose_reply_was_lost_is_removed(
    bucket: str, make_s3: Callable[..., S3Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload completed but we never heard so: an error means "not stored", so the object goes."""
    from botocore.exceptions import ConnectionClosedError

    store = make_s3(bucket, multipart_chunk_mb=8)
    upload = store._client.upload_fileobj

    def upload_then_lose_the_reply(*args: Any, **kwargs: Any) -> None:
        upload(*args, **kwargs)
        raise ConnectionClosedError(endpoint_url="http://s3.test")

    monkeypatch.setattr(store._client, "upload_fileobj", upload_then_lose_the_reply)
    with pytest.raises(TransientStorageError, match="cannot reach S3"):
        store.put_stream("lost.bin", io.BytesIO(os.urandom(10 * MiB)))
    assert store.stat("lost.bin") is None


def test_s3_server_side_encryption(bucket: str, s3_client: Any, make_s3: Callable[..., S3Storage]) -> None:
    store = make_s3(bucket, sse="AES256", multipart_chunk_mb=5)
    store.check()
    store.put_bytes("small.bin", b"tiny")
    store.put_stream("big.bin", Source(12 * MiB))
    for key in ("small.bin", "big.bin"):
        assert s3_client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


class FailingS3(BaseHTTPRequestHandler):
    """Answers every request with one S3 error."""

    status, code = 503, "SlowDown"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{self.code}</Code>'
            f"<Message>test says {self.code}</Message></Error>"
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = answer


@pytest.mark.slow  # a few seconds each: the transfer manager still tries a failing upload more than once
@pytest.mark.parametrize(
    ("status", "code", "transient", "message"),
    [
        (503, "SlowDown", True, "S3 temporarily failed .* SlowDown"),
        (500, "InternalError", True, "S3 temporarily failed"),
        (403, "AccessDenied", False, r"access denied to s3://b/k\.bin"),
    ],
)
def test_s3_errors_say_whether_to_retry(status: int, code: str, transient: bool, message: str) -> None:
    handler = type("Handler", (FailingS3,), {"status": status, "code": code})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        store = S3Storage(
            "b", endpoint_url=f"http://127.0.0.1:{server.server_port}", region="us-east-1",
            access_key_id=FAKE_KEY, secret_access_key=FAKE_SECRET,
            max_attempts=1,  # botocore's own retries would back off for seconds; the mapping is what is tested
        )  # fmt: skip
        with pytest.raises(StorageError, match=message) as caught:
            store.put_bytes("k.bin", b"x")
        assert isinstance(caught.value, TransientStorageError) is transient
        with pytest.raises(StorageError) as caught:
            store.check()
        assert isinstance(caught.value, TransientStorageError) is transient
    finally:
        server.shutdown()
        server.server_close()


def test_s3_unreachable_endpoint_is_transient() -> None:
    store = S3Storage(
        "b", endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1",
        access_key_id=FAKE_KEY, secret_access_key=FAKE_SECRET,
    )  # fmt: skip
    with pytest.raises(TransientStorageError, match="cannot reach S3"):
        store.check()


def test_storage_from_config(tmp_path: Path, bucket: str, s3_endpoint: str) -> None:
    local = storage_from_config("local", {"path": str(tmp_path)}, {})
    assert isinstance(local, LocalStorage) and local.description == f"local {tmp_path}"

    config = {
        "bucket": bucket,
        "prefix": "hadr",
        "endpoint_url": s3_endpoint,
        "region": "us-east-1",
        "access_key_env": "HADR_TEST_S3_KEY",
        "secret_key_env": "HADR_TEST_S3_SECRET",
    }
    with pytest.raises(StorageError, match="HADR_TEST_S3_SECRET"):
        storage_from_config("s3", config, {"HADR_TEST_S3_KEY": FAKE_KEY})
    with pytest.raises(StorageError, match="HADR_TEST_S3_KEY"):
        storage_from_config("s3", config, {"HADR_TEST_S3_SECRET": FAKE_SECRET})
    s3 = storage_from_config("s3", config, {"HADR_TEST_S3_KEY": FAKE_KEY, "HADR_TEST_S3_SECRET": FAKE_SECRET})
    assert s3.description == f"s3://{bucket}/hadr"
    s3.put_bytes("x.bin", b"hello")
    assert s3.stat("x.bin") == StoredObject("x.bin", 5)

    with pytest.raises(StorageError, match="unknown backup storage kind 'ftp'"):
        storage_from_config("ftp", {}, {})
    with pytest.raises(StorageError, match="needs a 'path'"):
        storage_from_config("local", {}, {})


# --- PostgreSQL backups ----------------------------------------------------------------------------


def primary_target(infra: Infrastructure, **changes: Any) -> PgConninfo:
    values = {
        "host": "127.0.0.1",
        "port": infra.primary.port,
        "user": "postgres",
        "password": infra.demo_password,
        "dbname": "onboarding",
    }
    return PgConninfo(**{**values, **changes})


@pytest.fixture(scope="module")
def dump_table(infra: Infrastructure) -> Iterator[str]:
    """A schema of our own in `onboarding` with 300 000 rows (≈ 60 MB), dropped afterwards."""
    schema = f"hadr_bk_{secrets.token_hex(4)}"
    infra.primary.psql(
        f"CREATE SCHEMA {schema};"
        f" CREATE TABLE {schema}.items (id int PRIMARY KEY, payload text);"
        f" INSERT INTO {schema}.items SELECT g, repeat(md5(g::text) || md5((g * 7)::text), 3)"
        " FROM generate_series(1, 300000) g;",
        dbname="onboarding",
    )
    yield schema
    infra.primary.psql(f"DROP SCHEMA {schema} CASCADE", dbname="onboarding")


def backup_children() -> list[psutil.Process]:
    names = {"pg_dump"}
    return [p for p in psutil.Process().children(recursive=True) if p.name() in names]


def wait_until(predicate: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.xdist_group("dump_table")  # one worker fills the table once
def test_pg_dump_streams_into_storage(infra: Infrastructure, dump_table: str, tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    for compress, key in ((None, "onboarding.dump"), ("0", "onboarding-plain.dump")):
        progress: list[int] = []
        started = time.monotonic()
        with backup_stream(primary_target(infra), engine="pg_dump", compress=compress) as stream:
            stored = store.put_stream(key, stream, on_progress=progress.append)
        report_speed(f"pg_dump -Fc --compress={compress} → LocalStorage", stored.size, time.monotonic() - started)

        assert stored.sha256 == sha256_file(tmp_path / key)
        assert stored.size == (tmp_path / key).stat().st_size == progress[-1]
        toc = pg_restore_list(tmp_path / key)
        assert any(f"TABLE DATA {dump_table} items" in line for line in toc), toc
        assert any(f"TABLE {dump_table} items" in line for line in toc)
    plain, packed = store.stat("onboarding-plain.dump"), store.stat("onboarding.dump")
    assert plain and packed and plain.size > 1.5 * packed.size
    assert backup_children() == []


def test_pg_restore_list_rejects_what_is_not_a_dump(tmp_path: Path) -> None:
    (tmp_path / "junk.dump").write_bytes(os.urandom(4096))
    with pytest.raises(BackupFailed, match="pg_restore"):
        pg_restore_list(tmp_path / "junk.dump")


@pytest.mark.parametrize(
    ("engine", "changes", "kind", "message"),
    [
        ("pg_dump", {"dbname": "hadr_no_such_db"}, BackupFailed, 'database "hadr_no_such_db" does not exist'),
        ("pg_dump", {"password": "wrong"}, BackupFailed, 'password authentication failed for user "postgres"'),
        ("pg_dump", {"port": "dead"}, TransientBackupError, "Connection refused"),
    ],
    ids=["pg_dump-no-database", "pg_dump-wrong-password", "pg_dump-dead-port"],
)
def test_failed_backups_store_nothing(
    infra: Infrastructure, tmp_path: Path, engine: str, changes: dict[str, Any], kind: type[Exception], message: str
) -> None:
    if changes.get("port") == "dead":
        changes = {"port": free_port()}
    store = LocalStorage(tmp_path)
    with pytest.raises(BackupFailed, match=message) as caught:
        with backup_stream(primary_target(infra, **changes), engine=engine) as stream:
            store.put_stream("failed.bin", stream)
    assert type(caught.value) is kind
    assert str(caught.value).startswith(f"{engine} exited with status 1: {engine}: error:")
    assert infra.demo_password not in str(caught.value)
    assert store.list() == [] and store.partials() == [] and files_under(tmp_path) == []
    assert backup_children() == []


@pytest.mark.xdist_group("dump_table")
def test_a_consumer_error_kills_pg_dump(infra: Infrastructure, dump_table: str) -> None:
    with pytest.raises(RuntimeError, match="consumer broke"):
        with backup_stream(primary_target(infra), engine="pg_dump", compress="0") as stream:
            assert len(stream.read(100_000)) > 0
            assert backup_children()
            raise RuntimeError("consumer broke")
    assert backup_children() == []
    # The server notices the client is gone and ends its backend (COPY) too.
    active = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hadr-portal-backup'"
    assert wait_until(lambda: infra.primary.psql(active) == "0")


@pytest.mark.xdist_group("dump_table")
def test_leaving_before_the_end_is_an_incomplete_backup(infra: Infrastructure, dump_table: str) -> None:
    with pytest.raises(BackupFailed, match="not read to its end; the backup is incomplete"):
        with backup_stream(primary_target(infra), engine="pg_dump", compress="0") as stream:
            stream.read(100_000)
    assert backup_children() == []


def test_a_consumer_may_stop_right_at_the_end(infra: Infrastructure, tmp_path: Path) -> None:
    """tarfile stops reading at the end-of-archive marker; a finished program is not an error."""
    with backup_stream(primary_target(infra), engine="pg_dump_dir", workdir=tmp_path) as stream:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            names = [member.name for member in tar]
    assert "toc.dat" in names


def test_bad_arguments_are_refused_before_anything_runs(infra: Infrastructure) -> None:
    cases = [
        ({"engine": "pg_dumpall"}, "unknown backup engine"),
        ({"engine": "pg_dump", "jobs": 4}, "parallel jobs need engine 'pg_dump_dir'"),
        ({"engine": "pg_dump_dir", "jobs": 0}, "at least 1"),
        ({"engine": "pg_dump", "compress": "--file=/etc/x"}, "invalid compression"),
        ({"engine": "pg_basebackup"}, "unknown backup engine"),  # retired: physical backups are pgBackRest's
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            with backup_stream(primary_target(infra), **arguments):
                pass
    assert backup_children() == []


def test_pg_dump_rejects_a_compression_it_does_not_know(infra: Infrastructure, tmp_path: Path) -> None:
    with pytest.raises(BackupFailed, match=r'invalid value "lz4" for option -Z/--compress') as caught:
        with backup_stream(primary_target(infra), engine="pg_dump", compress="lz4") as stream:
            LocalStorage(tmp_path).put_stream("x.dump", stream)
    assert not isinstance(caught.value, TransientBackupError)


@pytest.mark.xdist_group("dump_table")
def test_pg_dump_dir_runs_in_parallel_and_streams_a_tar(infra: Infrastructure, dump_table: str, tmp_path: Path) -> None:
    store, workdir = LocalStorage(tmp_path / "store"), tmp_path / "work"
    started = time.monotonic()
    with backup_stream(primary_target(infra), engine="pg_dump_dir", jobs=2, workdir=workdir) as stream:
        assert len(list(workdir.iterdir())) == 1  # the dump directory exists while we stream it
        stored = store.put_stream("onboarding.tar", stream)
    report_speed("pg_dump -Fd -j 2 → tar → LocalStorage", stored.size, time.monotonic() - started)

    assert list(workdir.iterdir()) == []  # removed afterwards
    assert stored.sha256 == sha256_file(tmp_path / "store" / "onboarding.tar")
    with tarfile.open(tmp_path / "store" / "onboarding.tar") as tar:
        names = tar.getnames()
        assert "toc.dat" in names and any(name.endswith(".dat.gz") for name in names)
        tar.extractall(tmp_path / "restored", filter="data")
    assert any(f"TABLE DATA {dump_table} items" in line for line in pg_restore_list(tmp_path / "restored"))

    with pytest.raises(BackupFailed, match="does not exist"):
        with backup_stream(primary_target(infra, dbname="hadr_no_such_db"), engine="pg_dump_dir", workdir=workdir):
            pytest.fail("a failed directory dump must raise on entering the block")
    assert list(workdir.iterdir()) == []
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(BackupFailed, match="cannot create a working directory for pg_dump"):
        with backup_stream(primary_target(infra), engine="pg_dump_dir", workdir=tmp_path / "file" / "work"):
            pass
    assert backup_children() == []


def test_pg_dump_dir_consumer_error_removes_the_directory(infra: Infrastructure, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="consumer broke"):
        with backup_stream(primary_target(infra), engine="pg_dump_dir", workdir=tmp_path) as stream:
            stream.read(10)
            raise RuntimeError("consumer broke")
    assert list(tmp_path.iterdir()) == []
    assert [t.name for t in threading.enumerate() if t.name == "hadr-backup-tar"] == []


def test_a_storage_failure_stops_the_backup(infra: Infrastructure, make_s3: Callable[..., S3Storage]) -> None:
    store = make_s3("hadr-no-such-bucket", multipart_chunk_mb=5)
    with pytest.raises(StorageError, match="does not exist"):
        with backup_stream(primary_target(infra), engine="pg_dump", compress="0") as stream:
            store.put_stream("b.dump", stream)
    assert backup_children() == []


def test_server_facts_on_primary_and_replica(infra: Infrastructure) -> None:
    primary = server_facts(primary_target(infra))
    assert primary.server_version.startswith("15.")
    assert primary.in_recovery is False and primary.timeline == 1
    assert primary.database_size and primary.database_size > 1_000_000
    assert primary.lsn.count("/") == 1

    replica = server_facts(primary_target(infra, port=infra.replica.port))
    assert replica.in_recovery is True and replica.timeline == 1
    assert replica.server_version == primary.server_version
    assert replica.lsn.count("/") == 1 and replica.database_size

    with pytest.raises(TransientBackupError, match="Connection refused"):
        server_facts(primary_target(infra, port=free_port()), timeout=2)
    with pytest.raises(BackupFailed, match="password authentication failed") as caught:
        server_facts(primary_target(infra, password="wrong"))
    assert not isinstance(caught.value, TransientBackupError)
    assert "wrong" not in repr(primary_target(infra, password="wrong"))


# --- memory ------------------------------------------------------------------------------------------

# Runs in a fresh process. Not ru_maxrss: Linux carries the parent's peak over into a child at exec,
# so a child of this (large) pytest process would report pytest's peak and never grow. VmHWM
# (/proc/self/status) is the peak of the child's own memory, and "5" to clear_refs resets it.
MEMORY_SCRIPT = """
import io, json, os, sys, time
from hadr_portal.adapters.storage import LocalStorage, S3Storage
import boto3.s3.transfer  # imported before the baseline: code, not data

def status_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

class Generated(io.RawIOBase):
    def __init__(self, total, hoard):
        self.left, self.hoard, self.kept = total, hoard, []
    def readable(self):
        return True
    def read(self, size=-1):
        n = min(self.left, 1 << 20, size if size >= 0 else 1 << 20)
        self.left -= n
        block = os.urandom(n)
        if self.hoard:  # the control: a reader that keeps everything it handed out
            self.kept.append(block)
        return block

kind, size, hoard = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hoard"
if kind == "local":
    store = LocalStorage(sys.argv[4])
else:
    store = S3Storage(sys.argv[4], endpoint_url=sys.argv[5], region="us-east-1", access_key_id="k",
                      secret_access_key="s", multipart_chunk_mb=5, max_concurrency=2)
store.put_bytes("warmup.bin", b"x")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status_kib("VmRSS")
started = time.monotonic()
stored = store.put_stream("big.bin", Generated(size, hoard))
seconds = time.monotonic() - started
print(json.dumps({"size": stored.size, "growth_kib": status_kib("VmHWM") - before, "seconds": seconds}))
"""


def measure_put(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_put_stream_memory_does_not_grow_with_size(tmp_path: Path, bucket: str, s3_endpoint: str) -> None:
    size = 200 * MiB
    control = measure_put("local", str(size), "hoard", str(tmp_path))
    assert control["growth_kib"] > 180 * 1024  # the measurement sees memory that is kept

    local = measure_put("local", str(size), "stream", str(tmp_path))
    growth = local["growth_kib"] / 1024
    report_speed(f"LocalStorage 200 MiB generated (peak RSS +{growth:.1f} MiB)", size, local["seconds"])
    assert local["size"] == size
    assert local["growth_kib"] < 50 * 1024

    s3 = measure_put("s3", str(size), "stream", bucket, s3_endpoint)
    growth = s3["growth_kib"] / 1024
    report_speed(f"S3Storage 200 MiB generated, 5 MiB parts × 2 (peak RSS +{growth:.1f} MiB)", size, s3["seconds"])
    assert s3["size"] == size
    # Parts of a non-seekable stream are held in memory: about (2 + 4) × 5 MiB here. With
    # s3transfer's default of 10 parts in memory this measured 73 MiB.
    assert s3["growth_kib"] < 50 * 1024


def test_local_backups_are_readable_by_their_owner_only(tmp_path):
    import io
    import stat as stat_module

    from hadr_portal.adapters.storage import LocalStorage

    storage = LocalStorage(tmp_path / "backups")
    storage.put_stream("policy/secret.dump", io.BytesIO(b"all the data"))
    stored = tmp_path / "backups" / "policy" / "secret.dump"
    assert stat_module.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat_module.S_IMODE(stored.parent.stat().st_mode) == 0o700
