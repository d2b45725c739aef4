"""Where backups live: a local directory or an S3 bucket, behind one small interface.

Every `put_*` either stores the whole object under its key or raises; a put that fails leaves the
key as it was (absent for a new key). Data is streamed in bounded chunks, so memory use does not
grow with the size of a backup. Failures are StorageError with a message for an operator;
TransientStorageError marks the ones worth retrying (S3 5xx, throttling, timeouts, lost
connections). Invalid keys (absolute, `..`, empty) are programming errors: ValueError.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from .commands import env_reference_problem

CHUNK_SIZE = 8 * 1024 * 1024  # what put_stream reads at a time
READ_CHUNK_SIZE = 1024 * 1024  # what open_read yields at a time
PARTIAL_SUFFIX = ".partial"

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None = None  # filled when we computed it while writing/reading


class StorageError(Exception):
    """The storage cannot do what was asked; the message says why, in an operator's words."""


class TransientStorageError(StorageError):
    """A failure worth retrying: S3 5xx, throttling, timeouts, connection errors."""


class Storage(Protocol):
    description: str  # e.g. "local /var/backups/hadr" or "s3://bucket/prefix"

    def put_stream(self, key: str, stream: BinaryIO, *, on_progress: ProgressCallback | None = None) -> StoredObject:
        """Store everything `stream` yields until EOF; returns size and SHA-256 of what was stored."""
        ...

    def put_bytes(self, key: str, data: bytes) -> StoredObject: ...

    def open_read(self, key: str) -> Iterator[bytes]:
        """The stored bytes in chunks. A missing object raises StorageError at the call, not later."""
        ...

    def sha256(self, key: str) -> StoredObject:
        """Re-read the stored bytes and hash them."""
        ...

    def stat(self, key: str) -> StoredObject | None: ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting what is not there is not an error."""
        ...

    def list(self, prefix: str = "") -> list[StoredObject]: ...

    def check(self) -> None:
        """Raise StorageError if backups could not be written here."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object as a file on this machine, when storage is a local directory (a restore reads it in
        place instead of copying it); None otherwise."""
        ...


class HashingReader:
    """Wraps a binary stream: counts and hashes what is read through it.

    `read(n)` returns exactly n bytes unless the stream has ended. Pipes hand out at most 64 KiB per
    read, and s3transfer takes a short first read to mean "small object" and then reads the rest
    with one unbounded `read()`, into memory: so short reads are filled up here.
    """

    def __init__(self, stream: BinaryIO, on_progress: ProgressCallback | None = None) -> None:
        self._stream = stream
        self._on_progress = on_progress
        self._hash = hashlib.sha256()
        self._reported = 0
        self.size = 0
        self.eof = False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            pieces = []
            while chunk := self.read(CHUNK_SIZE):
                pieces.append(chunk)
            return b"".join(pieces)
        pieces, wanted = [], size
        while wanted > 0 and (piece := self.read_some(wanted)):
            pieces.append(piece)
            wanted -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read_some(self, size: int) -> bytes:
        """One read of the underlying stream (at most `size` bytes; b"" only at its end)."""
        if self.eof:
            return b""
        data = self._stream.read(size)
        if not data:
            self.eof = True
            data = b""
        self._hash.update(data)
        self.size += len(data)
        if self._on_progress and (
            self.size - self._reported >= CHUNK_SIZE or (self.eof and self.size != self._reported)
        ):
            self._reported = self.size
            self._on_progress(self.size)
        return data

    def readable(self) -> bool:
        return True

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _check_key(key: str) -> str:
    """Keys are relative POSIX paths without `.` or `..` parts: they must stay inside the storage."""
    path = PurePosixPath(key)
    if not key or key.startswith("/") or "\\" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}: use a relative path like 'cluster/2024-01-01/base.tar'")
    if path.name.endswith(PARTIAL_SUFFIX):
        raise ValueError(f"invalid storage key {key!r}: names ending in {PARTIAL_SUFFIX} are reserved")
    return key


# --- local directory --------------------------------------------------------------------------------


class LocalStorage:
    """Backups as files under `root` (a key `a/b.tar` is the file `<root>/a/b.tar`).

    A put writes `<root>/<key>.partial`, fsyncs it, renames it to `<root>/<key>` and fsyncs the
    directory: the final name only ever holds a complete file. A put that raises removes its
    `.partial`; one killed outright leaves it behind, for `partials()` / `cleanup_partials()`.
    Two writers of the same key at once are not supported (they share the `.partial`).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.description = f"local {self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    def put_stream(self, key: str, stream: BinaryIO, *, on_progress: ProgressCallback | None = None) -> StoredObject:
        final = self._path(key)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        reader = HashingReader(stream, on_progress)
        with _os_errors(final):
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A backup holds all the data: readable by its owner only, from the first byte.
            out = os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        try:
            with out:
                # Whatever each read gives: a file has no use for full chunks, and this holds one only.
                while chunk := reader.read_some(CHUNK_SIZE):  # the stream's own errors pass through as they are
                    with _os_errors(final):
                        out.write(chunk)
                with _os_errors(final):
                    out.flush()
                    os.fsync(out.fileno())
            with _os_errors(final):
                os.replace(partial, final)
                _fsync_dir(final.parent)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return StoredObject(key, reader.size, reader.hexdigest)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        return self.put_stream(key, io.BytesIO(data))

    def open_read(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # the generator below closes it
        except FileNotFoundError:
            raise StorageError(f"no backup object {key!r} in {self.description}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(READ_CHUNK_SIZE):
                    yield chunk

        return chunks()

    def sha256(self, key: str) -> StoredObject:
        return _hash_chunks(key, self.open_read(key))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        return StoredObject(key, info.st_size) if path.is_file() else None

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _os_errors(path, "delete"):
            path.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[StoredObject]:
        return [StoredObject(key, size) for key, size, _ in self._walk(prefix) if not key.endswith(PARTIAL_SUFFIX)]

    def partials(self, older_than_seconds: float = 0) -> list[str]:
        """Names (relative to root) of `.partial` files not modified for `older_than_seconds`:
        leftovers of writers that were killed. A write in progress keeps its file's mtime fresh."""
        cutoff = time.time() - older_than_seconds
        return [key for key, _, mtime in self._walk("") if key.endswith(PARTIAL_SUFFIX) and mtime <= cutoff]

    def cleanup_partials(self, older_than_seconds: float = 3600) -> list[str]:
        """Remove the `.partial` leftovers older than `older_than_seconds`; returns what was removed."""
        removed = self.partials(older_than_seconds)
        for name in removed:
            with _os_errors(self.root / name, "delete"):
                (self.root / name).unlink(missing_ok=True)
        return removed

    def check(self) -> None:
        """The root exists (it is created if missing) and a file can be written, synced and removed."""
        probe = self.root / f".hadr-check-{secrets.token_hex(4)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as out:
                out.write(b"ok")
                out.flush()
                os.fsync(out.fileno())
            probe.unlink()
        except OSError as exc:
            reason = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
            raise StorageError(f"backup directory {self.root} is not usable: {reason}") from exc

    def _walk(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            base = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = name if base == "." else f"{base}/{name}"
                if not key.startswith(prefix) or key.startswith(".hadr-check-"):
                    continue
                try:
                    info = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # removed while we looked
                    continue
                yield key, info.st_size, info.st_mtime


@contextmanager
def _os_errors(path: Path, action: str = "write") -> Iterator[None]:
    """Turn OSError from our own file operations into StorageError (ENOSPC: "disk full writing …")."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(f"disk full writing {path}") from exc
        raise StorageError(f"cannot {action} {path}: {exc.strerror or exc}") from exc


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry is on disk too.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_chunks(key: str, chunks: Iterator[bytes]) -> StoredObject:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return StoredObject(key, size, digest.hexdigest())


# --- S3 -------------------------------------------------------------------------------------------

# Error codes S3 (and S3-compatible stores) use for "retry later".
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "OperationAborted",
}
_UNKNOWN = "<unknown>"  # "what was under the key before" when we could not look
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccountProblem",
    "InvalidObjectState",
}


class S3Storage:
    """Backups as objects in an S3 (or S3-compatible) bucket, under `prefix/`.

    `put_stream` is a managed upload: one PUT below `multipart_chunk_mb`, otherwise a multipart
    upload of parts that size, `max_concurrency` at a time. The stream is not seekable, so parts are
    held in memory: peak use is about (max_concurrency + 2..4) × multipart_chunk_mb (measured
    +93 MiB with the defaults, 16 MiB × 4; +32 MiB with 5 MiB × 2). A failed upload
    is aborted (no dangling multipart upload) and leaves the key as it was. Credentials come from
    the caller; when None, boto3's default chain (environment, config files, instance role).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        sse: str | None = None,
        multipart_chunk_mb: int = 16,
        max_concurrency: int = 4,
    ) -> None:
        import boto3  # heavy: only when S3 is used
        from botocore.config import Config

        if not bucket:
            raise StorageError("no S3 bucket configured")
        if multipart_chunk_mb < 5:
            raise ValueError("multipart_chunk_mb must be at least 5: S3 rejects smaller parts")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.sse = sse
        self.description = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._chunk = multipart_chunk_mb * 1024 * 1024
        self._concurrency = max_concurrency
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._client = session.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(
                connect_timeout=10,
                read_timeout=120,
                retries={"max_attempts": 4, "mode": "standard"},
                max_pool_connections=max(10, max_concurrency + 2),
            ),
        )

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _url(self, full_key: str = "") -> str:
        return f"s3://{self.bucket}/{full_key}"

    def put_stream(self, key: str, stream: BinaryIO, *, on_progress: ProgressCallback | None = None) -> StoredObject:
        from boto3.s3.transfer import TransferConfig

        full_key = self._key(key)
        config = TransferConfig(
            multipart_threshold=self._chunk,
            multipart_chunksize=self._chunk,
            max_concurrency=self._concurrency,
            # The CRT client (when awscrt is installed) buffers differently; keep the bounds above.
            preferred_transfer_client="classic",
        )
        # s3transfer's default keeps up to 10 parts of a non-seekable stream in memory.
        config.max_in_memory_upload_chunks = self._concurrency
        reader = HashingReader(stream, on_progress)
        try:
            before: str | None = self._etag(full_key)
        except StorageError:
            # A write-only policy may not let us look. Then we cannot tell a new object from an
            # old one after a failure, and leave the key alone.
            before = _UNKNOWN
        try:
            self._client.upload_fileobj(
                reader,
                self.bucket,
                full_key,
                Config=config,
                ExtraArgs={"ServerSideEncryption": self.sse} if self.sse else None,
            )
        except BaseException as exc:
            self._remove_if_new(full_key, before, exc)
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, full_key) from exc
            raise  # the stream's own error (e.g. the backup failed): the caller's to see as it is
        return StoredObject(key, reader.size, reader.hexdigest)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        full_key = self._key(key)
        extra = {"ServerSideEncryption": self.sse} if self.sse else {}
        try:
            self._client.put_object(Bucket=self.bucket, Key=full_key, Body=data, **extra)
        except Exception as exc:
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, full_key) from exc
            raise
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest())

    def open_read(self, key: str) -> Iterator[bytes]:
        full_key = self._key(key)
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=full_key)["Body"]
        except Exception as exc:
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, full_key) from exc
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(READ_CHUNK_SIZE)
            except Exception as exc:
                if _is_boto_error(exc):
                    raise _storage_error(exc, self.bucket, full_key) from exc
                raise
            finally:
                body.close()

        return chunks()

    def sha256(self, key: str) -> StoredObject:
        return _hash_chunks(key, self.open_read(key))

    def local_path(self, key: str) -> Path | None:
        return None

    def stat(self, key: str) -> StoredObject | None:
        full_key = self._key(key)
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=full_key)
        except Exception as exc:
            if _not_found(exc):
                if not self._bucket_exists():
                    raise StorageError(f"bucket {self.bucket!r} does not exist") from exc
                return None
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, full_key) from exc
            raise
        return StoredObject(key, int(head["ContentLength"]))

    def delete(self, key: str) -> None:
        full_key = self._key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full_key)  # S3 deletes are idempotent
        except Exception as exc:
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, full_key) from exc
            raise

    def list(self, prefix: str = "") -> list[StoredObject]:
        base = f"{self.prefix}/" if self.prefix else ""
        found = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            ):
                found.extend(
                    StoredObject(item["Key"][len(base) :], int(item["Size"])) for item in page.get("Contents", [])
                )
        except Exception as exc:
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, base + prefix) from exc
            raise
        return sorted(found, key=lambda item: item.key)

    def check(self) -> None:
        """The bucket exists and we may write to it: HEAD the bucket, then put and delete a tiny
        probe object under the prefix. A bucket that refuses deletes (object lock) still passes."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if _not_found(exc):
                raise StorageError(f"bucket {self.bucket!r} does not exist") from exc
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, "") from exc
            raise
        probe = self._key(f".hadr-check-{secrets.token_hex(4)}")
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=probe, Body=b"ok", **({"ServerSideEncryption": self.sse} if self.sse else {})
            )
        except Exception as exc:
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, probe) from exc
            raise
        try:
            self._client.delete_object(Bucket=self.bucket, Key=probe)
        except Exception as exc:
            if not _is_boto_error(exc):
                raise
            if _code(exc) not in _DENIED_CODES:
                raise _storage_error(exc, self.bucket, probe) from exc

    def _bucket_exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if _not_found(exc):
                return False
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, "") from exc
            raise
        return True

    def _etag(self, full_key: str) -> str | None:
        """The ETag of what is stored under the key now (None if nothing)."""
        try:
            return str(self._client.head_object(Bucket=self.bucket, Key=full_key)["ETag"])
        except Exception as exc:
            if _not_found(exc):
                return None
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, full_key) from exc
            raise

    def _remove_if_new(self, full_key: str, before: str | None, failure: BaseException) -> None:
        """After a failed upload: if an object appeared under the key (say the completion went
        through but its reply was lost), remove it. An object that was there before stays."""
        if before == _UNKNOWN:
            return
        try:
            if (now := self._etag(full_key)) is not None and now != before:
                self._client.delete_object(Bucket=self.bucket, Key=full_key)
        except Exception as cleanup:  # report the upload's failure, not the cleanup's
            failure.add_note(f"could not check for or remove a partial object at {self._url(full_key)}: {cleanup}")


def _is_boto_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _not_found(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and (_code(exc) in ("404", "NoSuchKey", "NotFound") or _status(exc) == 404)


def _storage_error(exc: BaseException, bucket: str, full_key: str) -> StorageError:
    """Say what a botocore error means for an operator, and whether retrying may help."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    url = f"s3://{bucket}/{full_key}"
    if isinstance(exc, ClientError):
        code, status = _code(exc), _status(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        if code == "NoSuchBucket":
            return StorageError(f"bucket {bucket!r} does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(f"no backup object at {url}")
        if code in _DENIED_CODES or status == 403:
            return StorageError(f"access denied to {url} ({code}: {message})")
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientStorageError(f"S3 temporarily failed on {url} ({code or status}: {message}); retry later")
        return StorageError(f"S3 refused {url} ({code or status}: {message})")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageError(f"no usable S3 credentials for {url}: {exc}")
    if isinstance(exc, ConnectionError | HTTPClientError | IncompleteReadError):
        return TransientStorageError(f"cannot reach S3 for {url}: {exc}")
    return StorageError(f"S3 error on {url}: {exc}")


# --- configuration --------------------------------------------------------------------------------


def storage_from_config(kind: str, config: Mapping[str, Any], environ: Mapping[str, str]) -> Storage:
    """Build the storage a backup target's settings describe.

    kind "local": config `path`. kind "s3": config `bucket`, `prefix`, `endpoint_url`, `region`,
    `sse`, `multipart_chunk_mb`, `max_concurrency`, and `access_key_env` / `secret_key_env`: the
    NAMES of environment variables holding the credentials (secrets never live in the settings).
    """
    if kind == "local":
        path = config.get("path")
        if not path:
            raise StorageError("local backup storage needs a 'path'")
        return LocalStorage(Path(str(path)))
    if kind == "s3":
        credentials: dict[str, str | None] = {}
        for setting, argument in (("access_key_env", "access_key_id"), ("secret_key_env", "secret_access_key")):
            name = config.get(setting)
            if name:
                if problem := env_reference_problem(name):
                    raise StorageError(f"refused: {problem}")
                if name not in environ or not environ[name]:
                    raise StorageError(f"environment variable {name} (the S3 {setting}) is not set")
                credentials[argument] = environ[name]
            else:
                credentials[argument] = None
        if (credentials["access_key_id"] is None) != (credentials["secret_access_key"] is None):
            raise StorageError("set both access_key_env and secret_key_env, or neither (boto3's default credentials)")
        return S3Storage(
            bucket=str(config.get("bucket") or ""),
            prefix=str(config.get("prefix") or ""),
            endpoint_url=config.get("endpoint_url") or None,
            region=config.get("region") or None,
            sse=config.get("sse") or None,
            multipart_chunk_mb=int(config.get("multipart_chunk_mb") or 16),
            max_concurrency=int(config.get("max_concurrency") or 4),
            **credentials,
        )
    raise StorageError(f"unknown backup storage kind {kind!r} (expected 'local' or 's3')")
