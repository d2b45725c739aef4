"""A backup program's output as a stream that ends only once the program has succeeded.

`output_stream(producer)` yields the read side of a producer's pipe: a program (`Program`: pg_dump,
pg_basebackup, in its own process group) or a thread writing a directory as tar (`TarWriter`). If the producer
fails, the read that would have returned EOF raises BackupFailed instead, so a consumer never stores a
truncated backup as complete. Leaving the `with` block early, by an exception or without reading to the end,
kills the producer (and its workers) and waits for it: no zombie, no hang.
"""

from __future__ import annotations

import fcntl
import io
import os
import select
import signal
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from .connection import BackupFailed, classify_failure

_PIPE_SIZE = 1024 * 1024  # fewer, larger reads than the 64 KiB default pipe
_STDERR_TAIL_BYTES = 8192
_EXIT_GRACE_SECONDS = 60  # after its output ended, a program gets this long to exit
_END_PROBE_SECONDS = 5  # on a clean exit without EOF seen: how long to look for the end


class Producer(Protocol):
    name: str
    pipe: io.FileIO  # read end of what it writes

    def finish(self, timeout: float | None = _EXIT_GRACE_SECONDS) -> None:
        """Wait for it to end; raise BackupFailed if it failed."""
        ...

    def abort(self) -> None:
        """Stop it now and wait until it has stopped. Safe to call after it ended."""
        ...

    def close(self) -> None: ...


class Program:
    """A backup program run in its own process group (pg_dump -j forks workers), stderr to a
    temporary file so that a chatty stderr can never fill a pipe and stall it."""

    def __init__(self, argv: list[str], env: dict[str, str], *, capture_stdout: bool) -> None:
        self.name = Path(argv[0]).name
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                stderr=self._stderr,
                env=env,
                cwd="/",
                bufsize=0,
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.close()
            raise BackupFailed(f"cannot start {self.name}: {exc.strerror or exc}") from exc
        if capture_stdout:
            assert self._process.stdout is not None
            self.pipe = cast(io.FileIO, self._process.stdout)
            _widen_pipe(self.pipe.fileno())

    def finish(self, timeout: float | None = _EXIT_GRACE_SECONDS) -> None:
        try:
            returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.abort()
            raise BackupFailed(f"{self.name} did not exit {timeout:.0f} s after its output ended") from None
        if returncode < 0:
            raise BackupFailed(f"{self.name} was killed by signal {-returncode}{self._tail(': ')}")
        if returncode != 0:
            raise classify_failure(f"{self.name} exited with status {returncode}{self._tail(': ')}")

    def abort(self) -> None:
        if self._process.poll() is None:  # not reaped yet, so its process group id cannot have been reused
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process.wait()

    def close(self) -> None:
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def _tail(self, prefix: str) -> str:
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
        lines = [line.strip() for line in self._stderr.read().decode("utf-8", "replace").splitlines()]
        tail = "\n".join([line for line in lines if line][-5:])
        return prefix + tail if tail else ""


class TarWriter:
    """Writes a tar of a directory's files into a pipe, from a thread (stdlib tarfile, stream mode)."""

    def __init__(self, directory: Path) -> None:
        self.name = "tar"
        read_fd, write_fd = os.pipe()
        _widen_pipe(read_fd)
        self.pipe = io.FileIO(read_fd, "r")
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(directory, write_fd), name="hadr-backup-tar", daemon=True
        )
        self._thread.start()

    def _run(self, directory: Path, write_fd: int) -> None:
        try:
            with (
                io.FileIO(write_fd, "w") as out,
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                for path in sorted(directory.iterdir()):
                    tar.add(path, arcname=path.name)
        except BaseException as exc:  # reported by finish(); a BrokenPipeError after abort() is expected
            self._error = exc

    def finish(self, timeout: float | None = _EXIT_GRACE_SECONDS) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.abort()
            raise BackupFailed("writing the dump directory as tar did not end")
        if self._error is not None:
            raise BackupFailed(f"could not write the dump directory as tar: {self._error}") from self._error

    def abort(self) -> None:
        self.pipe.close()  # the writer's next write fails with EPIPE and the thread ends
        self._thread.join()

    def close(self) -> None:
        self.pipe.close()


def _widen_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (OSError, AttributeError):  # not Linux, or over the system's pipe-max-size: keep the default
        pass


class _BackupStream(io.RawIOBase):
    """The read side of a producer's pipe, reporting EOF only after the producer succeeded."""

    def __init__(self, producer: Producer) -> None:
        super().__init__()
        self._producer = producer
        self._pipe = producer.pipe
        self.finished = False
        self.failure: BackupFailed | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self.failure is not None:
            raise self.failure
        if self.finished or size == 0:
            return b""
        data = self._pipe.read(min(size, _PIPE_SIZE)) or b""
        if not data:
            self._end()
        return data

    def readall(self) -> bytes:
        pieces = []
        while chunk := self.read(_PIPE_SIZE):
            pieces.append(chunk)
        return b"".join(pieces)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def at_end(self, wait: float) -> bool:
        """For a consumer that left without reading EOF: has the producer in fact finished,
        with nothing left unread? Looks for up to `wait` seconds."""
        if self.finished or self.failure is not None:
            return self.finished
        ready, _, _ = select.select([self._pipe.fileno()], [], [], wait)
        if not ready or self._pipe.read(1):
            return False
        self._end()
        return True

    def _end(self) -> None:
        try:
            self._producer.finish()
        except BackupFailed as exc:
            self.failure = exc
            raise
        self.finished = True


@contextmanager
def output_stream(producer: Producer) -> Iterator[BinaryIO]:
    stream = _BackupStream(producer)
    try:
        yield cast(BinaryIO, stream)
        if stream.failure is not None:  # the consumer caught it; the backup still failed
            raise stream.failure
        if not stream.at_end(_END_PROBE_SECONDS):
            producer.abort()
            raise BackupFailed(f"{producer.name}: the backup stream was not read to its end; the backup is incomplete")
    except BaseException:
        producer.abort()
        raise
    finally:
        stream.close()
        producer.close()
