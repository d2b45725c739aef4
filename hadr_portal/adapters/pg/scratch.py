"""A scratch server: a data directory restored by pgBackRest (or a dump unpacked beside it), started on a free
port on 127.0.0.1 only, then stopped and removed."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from pathlib import Path

from hadr_portal.adapters.commands import CommandFailed, as_postgres_user, run_command

from .restore import RestoreFailed
from .server import PG_BIN, chown_to_postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def tar_extract(path: Path, directory: Path, *, postgres_owner: bool = True, timeout: float = 6 * 3600) -> None:
    """Unpack a tar (a directory-format dump, or an old base backup by hand) into a new, empty `directory` (mode
    700), owned by the postgres user with `postgres_owner`."""
    if directory.exists() and any(directory.iterdir()):
        raise RestoreFailed(f"{directory} is not empty; nothing was extracted")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        run_command(["tar", "-xf", str(path), "-C", str(directory)], timeout=timeout)
        if postgres_owner and os.geteuid() == 0:
            run_command(["chown", "-R", "postgres:postgres", str(directory)], timeout=timeout)
        directory.chmod(0o700)
    except CommandFailed as exc:
        raise RestoreFailed(f"could not unpack the base backup: {exc}") from exc


def server_start(directory: Path, port: int, *, timeout: int = 600) -> Path:
    """Start a server on an extracted base backup (it replays the WAL in the backup, then takes writes), on
    127.0.0.1:`port` only. Returns its log file."""
    log_file = directory.parent / f"{directory.name}.log"
    log_file.touch(exist_ok=True)
    chown_to_postgres(log_file)
    chown_to_postgres(directory.parent)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    argv = [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", str(timeout), "-D", str(directory), "-l", str(log_file)]
    try:
        run_command(as_postgres_user([*argv, "-o", options]), timeout=timeout + 30)
    except CommandFailed as exc:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-5:]) if log_file.exists() else ""
        raise RestoreFailed(f"the restored server did not start: {exc}\n{tail}".strip()) from exc
    return log_file


def server_stop(directory: Path) -> None:
    """Stop a server started by `server_start` (immediately: it is about to be removed, or it never finished)."""
    if not (directory / "postmaster.pid").exists():
        return
    run_command(
        as_postgres_user([str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "immediate", "-D", str(directory)]),
        timeout=90,
        check=False,
    )


def data_directory_move(source: Path, destination: Path, *, timeout: float = 6 * 3600) -> None:
    """Move a (stopped) data directory into place: a rename on one filesystem, else a copy that keeps its owner and
    modes (`cp -a`) and then the source removed. `destination` must not exist."""
    if destination.exists():
        raise RestoreFailed(f"{destination} exists: a data directory is never moved over another one")
    try:
        os.rename(source, destination)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise RestoreFailed(f"cannot move {source} to {destination}: {exc.strerror}") from exc
    try:
        run_command(["cp", "-a", str(source), str(destination)], timeout=timeout)
    except CommandFailed as exc:
        shutil.rmtree(destination, ignore_errors=True)
        raise RestoreFailed(f"cannot copy {source} to {destination}: {exc}") from exc
    shutil.rmtree(source)


def server_remove(directory: Path) -> None:
    server_stop(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.joinpath(f"{directory.name}.log").unlink(missing_ok=True)
