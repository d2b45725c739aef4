"""Where backups live: a local directory or an S3 bucket, behind one small interface.

- `base`   the `Storage` protocol every backend follows, its errors, and what the backends share
- `local`  `LocalStorage`: files under a directory, renamed into place once complete and synced
- `s3`     `S3Storage`: objects in a bucket, multipart uploads with bounded memory

Callers use the names below and `storage_from_config()`, which builds the storage a storage target's
settings describe.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hadr_portal.adapters.commands import env_reference_problem

from .base import Storage, StorageError, StoredObject, TransientStorageError
from .local import LocalStorage
from .s3 import S3Storage

__all__ = [
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "StoredObject",
    "TransientStorageError",
    "storage_from_config",
]


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
            access_key_id=credentials["access_key_id"],
            secret_access_key=credentials["secret_access_key"],
        )
    raise StorageError(f"unknown backup storage kind {kind!r} (expected 'local' or 's3')")
