"""What every storage is: the `Storage` protocol, its errors and objects, and what its backends share (the key
rule, hashing while reading).

Every `put_*` either stores the whole object under its key or raises; a put that fails leaves the
key as it was (absent for a new key). Data is streamed in bounded chunks, so memory use does not
grow with the size of a backup. Failures are StorageError with a message for an operator;
TransientStorageError marks the ones worth retrying (S3 5xx, throttling, timeouts, lost
connections). Invalid keys (absolute, `..`, empty) are programming errors: ValueError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

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


def key_checked(key: str) -> str:
    """Keys are relative POSIX paths without `.` or `..` parts: they must stay inside the storage."""
    path = PurePosixPath(key)
    if not key or key.startswith("/") or "\\" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}: use a relative path like 'cluster/2024-01-01/base.tar'")
    if path.name.endswith(PARTIAL_SUFFIX):
        raise ValueError(f"invalid storage key {key!r}: names ending in {PARTIAL_SUFFIX} are reserved")
    return key


def chunks_hashed(key: str, chunks: Iterator[bytes]) -> StoredObject:
    """Size and SHA-256 of what `chunks` yields, as the object stored under `key`."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return StoredObject(key, size, digest.hexdigest())
