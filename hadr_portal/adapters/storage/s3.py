"""Backups as objects in an S3 (or S3-compatible) bucket: managed uploads with bounded memory, and botocore's
errors in an operator's words (transient or not)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .base import (
    READ_CHUNK_SIZE,
    HashingReader,
    ProgressCallback,
    StorageError,
    StoredObject,
    TransientStorageError,
    chunks_hashed,
    key_checked,
)

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
        max_attempts: int = 4,
    ) -> None:
        """`max_attempts`: botocore's own tries of one request (backing off between them) before an error reaches
        the caller, which decides about retrying the whole operation."""
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
                retries={"max_attempts": max_attempts, "mode": "standard"},
                max_pool_connections=max(10, max_concurrency + 2),
            ),
        )

    def _key(self, key: str) -> str:
        key = key_checked(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _url(self, full_key: str = "") -> str:
        return f"s3://{self.bucket}/{full_key}"

    def _encryption(self) -> dict[str, Any]:
        """What every write adds: the configured server-side encryption, or nothing (the bucket's default)."""
        return {"ServerSideEncryption": self.sse} if self.sse else {}

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
                reader,  # type: ignore[arg-type]  # s3transfer only calls read() on it
                self.bucket,
                full_key,
                Config=config,
                ExtraArgs=self._encryption() or None,
            )
        except BaseException as exc:
            self._remove_if_new(full_key, before, exc)
            if _is_boto_error(exc):
                raise _storage_error(exc, self.bucket, full_key) from exc
            raise  # the stream's own error (e.g. the backup failed): the caller's to see as it is
        return StoredObject(key, reader.size, reader.hexdigest)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        full_key = self._key(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=full_key, Body=data, **self._encryption())
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
        return chunks_hashed(key, self.open_read(key))

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
        found: list[StoredObject] = []
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
            self._client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok", **self._encryption())
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
