"""Backups as files in a local directory, written so that the final name only ever holds a complete file."""

from __future__ import annotations

import builtins
import errno
import io
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .base import (
    CHUNK_SIZE,
    PARTIAL_SUFFIX,
    READ_CHUNK_SIZE,
    HashingReader,
    ProgressCallback,
    StorageError,
    StoredObject,
    chunks_hashed,
    key_checked,
)


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
        return self.root.joinpath(*key_checked(key).split("/"))

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
        return chunks_hashed(key, self.open_read(key))

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

    # `list` is a method from here on: the builtin is spelled `builtins.list`.
    def partials(self, older_than_seconds: float = 0) -> builtins.list[str]:
        """Names (relative to root) of `.partial` files not modified for `older_than_seconds`:
        leftovers of writers that were killed. A write in progress keeps its file's mtime fresh."""
        cutoff = time.time() - older_than_seconds
        return [key for key, _, mtime in self._walk("") if key.endswith(PARTIAL_SUFFIX) and mtime <= cutoff]

    def cleanup_partials(self, older_than_seconds: float = 3600) -> builtins.list[str]:
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
