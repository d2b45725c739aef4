"""A pgBackRest stanza as the portal configures it: which data directories, which repositories, which options.

The portal writes one configuration per stanza under its own directory (`Stanza.home`):

    <home>/pgbackrest.conf          options and repositories, no secret (readable by the postgres user)
    <home>/conf.d/secrets.conf      S3 keys (mode 600, postgres's own): archive-push runs inside the
                                    postmaster, which knows none of the portal's variables
    <home>/spool  lock  log         archive-async's queue, pgBackRest's locks and logs

Every command is run as the data directories' owner (`run_as`, postgres) with both files, so a DBA can run the
very same command by hand: `Stanza.command_line("info")` prints it. Retention is the portal's (the calendar
decides, `expire --set`): `repo*-retention-full` is set so high that pgBackRest never expires on its own.
"""

from __future__ import annotations

import os
import pwd
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PGBACKREST = os.environ.get("HADR_PGBACKREST_BIN", "/usr/bin/pgbackrest")
# pgBackRest's own ceiling for repo-retention-full: never reached, so it expires nothing by itself.
RETENTION_NEVER = 9999999
COMPRESS_TYPES = ("lz4", "zst", "gz", "bz2", "none")


@dataclass(frozen=True)
class Repository:
    """Where backups and WAL go: `posix` (a local or mounted path) or `s3` (any S3-compatible store)."""

    index: int  # pgBackRest's repoN, 1..4
    kind: Literal["posix", "s3"]
    path: str  # posix: a directory; s3: the prefix inside the bucket, starting with "/"
    bucket: str = ""
    endpoint: str = ""  # host name only, e.g. s3.eu-west-1.amazonaws.com or 127.0.0.1
    port: int | None = None
    region: str = ""
    uri_style: Literal["host", "path"] = "host"
    verify_tls: bool = True
    ca_file: str = ""
    key: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    description: str = ""

    def options(self) -> list[tuple[str, str]]:
        prefix = f"repo{self.index}"
        options = [(f"{prefix}-path", self.path), (f"{prefix}-retention-full", str(RETENTION_NEVER))]
        if self.kind == "s3":
            options += [
                (f"{prefix}-type", "s3"),
                (f"{prefix}-s3-bucket", self.bucket),
                (f"{prefix}-s3-endpoint", self.endpoint),
                (f"{prefix}-s3-region", self.region or "us-east-1"),
                (f"{prefix}-s3-uri-style", self.uri_style),
            ]
            if self.port:
                options.append((f"{prefix}-storage-port", str(self.port)))
            if not self.verify_tls:
                options.append((f"{prefix}-storage-verify-tls", "n"))
            if self.ca_file:
                options.append((f"{prefix}-storage-ca-file", self.ca_file))
        return options

    def secrets(self) -> list[tuple[str, str]]:
        if self.kind != "s3" or not self.key:
            return []
        return [(f"repo{self.index}-s3-key", self.key), (f"repo{self.index}-s3-key-secret", self.secret)]

    @property
    def label(self) -> str:
        return self.description or (f"s3://{self.bucket}{self.path}" if self.kind == "s3" else self.path)


@dataclass(frozen=True)
class DataNode:
    """One PostgreSQL data directory of the stanza on this machine (pgBackRest's pgN)."""

    index: int
    path: str  # the data directory
    port: int
    socket_path: str  # pgBackRest talks to PostgreSQL over its Unix socket, as the postgres user
    name: str = ""


@dataclass(frozen=True)
class Stanza:
    name: str
    home: Path
    nodes: tuple[DataNode, ...]
    repos: tuple[Repository, ...]
    compress_type: str = "lz4"
    process_max: int = 2
    archive_async: bool = True
    archive_push_queue_max: str = ""  # e.g. "1GiB": past it pgBackRest drops WAL to save the primary's disk
    run_as: str = "postgres"

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError(f"stanza {self.name}: no data directory on this machine to back up")
        if not self.repos:
            raise ValueError(f"stanza {self.name}: no repository")
        if self.compress_type not in COMPRESS_TYPES:
            raise ValueError(f"compress-type {self.compress_type!r}: expected one of {', '.join(COMPRESS_TYPES)}")

    @property
    def config_path(self) -> Path:
        return self.home / "pgbackrest.conf"

    @property
    def include_path(self) -> Path:
        return self.home / "conf.d"

    def repo(self, index: int) -> Repository:
        for repo in self.repos:
            if repo.index == index:
                return repo
        raise ValueError(f"stanza {self.name} has no repository {index}")

    def node_for(self, data_directory: str) -> DataNode:
        for node in self.nodes:
            if node.path == data_directory:
                return node
        raise ValueError(f"{data_directory} is not a data directory of stanza {self.name}")

    def render(self) -> str:
        lines = [
            "# Written by HADR Portal from its catalog; edits are overwritten. Keys are in conf.d/secrets.conf.",
            "[global]",
            f"spool-path={self.home / 'spool'}",
            f"lock-path={self.home / 'lock'}",
            f"log-path={self.home / 'log'}",
            "log-level-console=warn",
            "log-level-stderr=error",
            "log-level-file=info",
            f"compress-type={self.compress_type}",
            f"process-max={self.process_max}",
            f"archive-async={'y' if self.archive_async else 'n'}",
            "start-fast=y",
            "delta=y",
        ]
        if self.archive_push_queue_max:
            lines.append(f"archive-push-queue-max={self.archive_push_queue_max}")
        for repo in self.repos:
            lines += [f"{key}={value}" for key, value in repo.options()]
        lines += ["", f"[{self.name}]"]
        for node in self.nodes:
            lines += [
                f"pg{node.index}-path={node.path}",
                f"pg{node.index}-port={node.port}",
                f"pg{node.index}-socket-path={node.socket_path}",
            ]
        return "\n".join(lines) + "\n"

    def render_secrets(self) -> str:
        pairs = [pair for repo in self.repos for pair in repo.secrets()]
        body = "".join(f"{key}={value}\n" for key, value in pairs)
        return "# Written by HADR Portal from the variables the catalog names.\n[global]\n" + body

    def write(self) -> None:
        """Write both files and create the directories, owned by `run_as` (when we are root)."""
        owner = _owner(self.run_as)
        for directory in (self.home, self.include_path, self.home / "spool", self.home / "lock", self.home / "log"):
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            _chown(directory, owner)
        _write(self.config_path, self.render(), 0o640, owner)
        _write(self.include_path / "secrets.conf", self.render_secrets(), 0o600, owner)
        for repo in self.repos:
            if repo.kind == "posix":
                path = Path(repo.path)
                path.mkdir(mode=0o750, parents=True, exist_ok=True)
                _chown(path, owner)

    def base_argv(self) -> list[str]:
        return [
            PGBACKREST,
            f"--config={self.config_path}",
            f"--config-include-path={self.include_path}",
            f"--stanza={self.name}",
        ]

    def command_line(self, command: str, *options: str) -> str:
        """The command as a DBA would type it (as the postgres user), for runbooks and logs."""
        return shlex.join([*self.base_argv(), *options, command])

    def archive_command(self, node: DataNode) -> str:
        """PostgreSQL's archive_command for `node`: literal paths (Patroni and pg_rewind run it without a shell)."""
        return f"{shlex.join([*self.base_argv(), f'--pg1-path={node.path}', 'archive-push'])} %p"

    def restore_command(self) -> str:
        return f'{shlex.join([*self.base_argv(), "archive-get"])} %f "%p"'


def stanza_owner_chown(stanza: Stanza, path: Path) -> None:
    """Give `path` to the user pgBackRest runs as (when we are root)."""
    _chown(path, _owner(stanza.run_as))


def _owner(user: str) -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _chown(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(path, *owner)


def _write(path: Path, text: str, mode: int, owner: tuple[int, int] | None) -> None:
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    _chown(temporary, owner)
    os.replace(temporary, path)
