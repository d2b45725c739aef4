"""pgBackRest, the engine of physical backups, WAL archiving and point-in-time recovery.

- `config`  a stanza as the portal configures it (data directories, repositories, options) and its files
- `cli`     its commands (stanza-create, check, backup, expire, restore, verify, info), as the data's owner
- `info`    `info --output=json` as dataclasses

The portal never archives or restores WAL itself: PostgreSQL's archive_command is `pgbackrest archive-push`,
and recovery's restore_command `pgbackrest archive-get` (pgBackRest writes it into the restored directory).
"""

from .cli import (
    BACKUP_TYPES,
    TARGET_TYPES,
    PgBackRestError,
    RecoveryTarget,
    TransientPgBackRestError,
    backup,
    check,
    expire,
    info,
    restore,
    stanza_create,
    verify,
)
from .config import PGBACKREST, DataNode, Repository, Stanza
from .info import (
    WAL_SEGMENT_BYTES,
    ArchiveRange,
    BackupSet,
    RepoStatus,
    StanzaInfo,
    parse_info,
    wal_order,
    wal_segments_between,
)

__all__ = [
    "BACKUP_TYPES",
    "PGBACKREST",
    "TARGET_TYPES",
    "WAL_SEGMENT_BYTES",
    "ArchiveRange",
    "BackupSet",
    "DataNode",
    "PgBackRestError",
    "RecoveryTarget",
    "RepoStatus",
    "Repository",
    "Stanza",
    "StanzaInfo",
    "TransientPgBackRestError",
    "backup",
    "check",
    "expire",
    "info",
    "parse_info",
    "restore",
    "stanza_create",
    "verify",
    "wal_order",
    "wal_segments_between",
]
