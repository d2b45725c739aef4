"""`pgbackrest info --output=json`, read into plain dataclasses (Python's json keeps the 64-bit system ids exact)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str  # full | diff | incr
    repo: int
    started_at: datetime
    stopped_at: datetime  # the earliest moment this set can be recovered to (consistency at its stop LSN)
    lsn_start: str
    lsn_stop: str
    wal_start: str
    wal_stop: str
    prior: str | None
    references: tuple[str, ...]
    database_size: int
    delta_size: int
    repo_size: int  # stored bytes of this set (compressed)
    repo_delta: int
    error: bool  # pgBackRest found page checksum errors while copying
    annotation: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ArchiveRange:
    repo: int
    db_id: str  # e.g. "15-1": the PostgreSQL version and the stanza's history id
    min_wal: str
    max_wal: str


@dataclass(frozen=True)
class RepoStatus:
    repo: int
    code: int
    message: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status_message: str
    backup_running: bool
    backup_done_bytes: int | None  # of a running backup, when pgBackRest says
    backup_total_bytes: int | None
    repos: tuple[RepoStatus, ...]
    archives: tuple[ArchiveRange, ...]
    backups: tuple[BackupSet, ...]  # oldest first, as pgBackRest lists them
    system_id: int | None
    pg_version: str

    @property
    def exists(self) -> bool:
        """The stanza was created (status 1 is "missing stanza path", 2 "no valid backups" is fine)."""
        return self.status_code != 1

    def sets(self, repo: int | None = None) -> list[BackupSet]:
        return [backup for backup in self.backups if repo is None or backup.repo == repo]

    def newest_wal(self, repo: int | None = None) -> str:
        names = [archive.max_wal for archive in self.archives if repo is None or archive.repo == repo]
        return max(names, key=wal_order, default="")


def wal_order(name: str) -> tuple[int, int]:
    """Sort key of a WAL segment name: timeline, then position (the last 16 hex digits)."""
    try:
        return int(name[:8], 16), int(name[8:24], 16)
    except ValueError:
        return (0, 0)


WAL_SEGMENT_BYTES = 16 * 1024 * 1024
_SEGMENTS_PER_LOG = 0x100000000 // WAL_SEGMENT_BYTES


def wal_segments_between(first: str, last: str) -> int:
    """How many 16 MiB segments lie from `first` to `last` (file names, a `.backup` or `.partial` suffix allowed);
    0 when either is not a segment name or `last` comes first."""
    (_, start), (_, end) = wal_order(first), wal_order(last)
    if not start or not end:
        return 0
    return max(0, _segment_number(end) - _segment_number(start))


def _segment_number(position: int) -> int:
    """A segment name's last 16 hex digits (log id, segment) as one running number."""
    return (position >> 32) * _SEGMENTS_PER_LOG + (position & 0xFFFFFFFF)


def parse_info(text: str) -> list[StanzaInfo]:
    data = json.loads(text or "[]")
    return [_stanza(item) for item in data]


def _stanza(item: dict[str, Any]) -> StanzaInfo:
    status = item.get("status") or {}
    lock = (status.get("lock") or {}).get("backup") or {}
    dbs = item.get("db") or []
    return StanzaInfo(
        name=str(item.get("name", "")),
        status_code=int(status.get("code", 99)),
        status_message=str(status.get("message", "")),
        backup_running=bool(lock.get("held")),
        backup_done_bytes=_int_or_none(lock.get("size-cp")),
        backup_total_bytes=_int_or_none(lock.get("size")),
        repos=tuple(
            RepoStatus(int(repo["key"]), int((repo.get("status") or {}).get("code", 99)), _message(repo))
            for repo in item.get("repo") or []
        ),
        archives=tuple(
            ArchiveRange(
                int((archive.get("database") or {}).get("repo-key", 1)),
                str(archive.get("id", "")),
                str(archive.get("min") or ""),
                str(archive.get("max") or ""),
            )
            for archive in item.get("archive") or []
            if archive.get("max")
        ),
        backups=tuple(_set(backup) for backup in item.get("backup") or []),
        system_id=_int_or_none(dbs[-1].get("system-id")) if dbs else None,
        pg_version=str(dbs[-1].get("version", "")) if dbs else "",
    )


def _set(backup: dict[str, Any]) -> BackupSet:
    info = backup.get("info") or {}
    repository = info.get("repository") or {}
    archive = backup.get("archive") or {}
    lsn = backup.get("lsn") or {}
    timestamps = backup.get("timestamp") or {}
    return BackupSet(
        label=str(backup["label"]),
        type=str(backup.get("type", "")),
        repo=int((backup.get("database") or {}).get("repo-key", 1)),
        started_at=datetime.fromtimestamp(int(timestamps.get("start", 0)), UTC),
        stopped_at=datetime.fromtimestamp(int(timestamps.get("stop", 0)), UTC),
        lsn_start=str(lsn.get("start") or ""),
        lsn_stop=str(lsn.get("stop") or ""),
        wal_start=str(archive.get("start") or ""),
        wal_stop=str(archive.get("stop") or ""),
        prior=backup.get("prior"),
        references=tuple(backup.get("reference") or ()),
        database_size=int(info.get("size") or 0),
        delta_size=int(info.get("delta") or 0),
        repo_size=int(repository.get("size") or 0),
        repo_delta=int(repository.get("delta") or 0),
        error=bool(backup.get("error")),
        annotation={str(k): str(v) for k, v in (backup.get("annotation") or {}).items()},
    )


def _message(repo: dict[str, Any]) -> str:
    return str((repo.get("status") or {}).get("message", ""))


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
