"""A PostgreSQL server run by `pg_ctl` on this machine: its data directory, start, stop, status, and `initdb`.

Run as root, every server program runs as the `postgres` user, on directories that user owns
(`chown_to_postgres`). Node controllers (adapters.pg.node) stop and start managed nodes through it, physical
restores start scratch servers with the same programs (adapters.pg.scratch), and the local environment and the
test suite create their clusters with it (`PG_BIN`: where the programs are, `HADR_PG_BIN`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hadr_portal.adapters.commands import as_postgres_user, run_command

PG_BIN = Path(os.environ.get("HADR_PG_BIN", "/usr/lib/postgresql/15/bin"))

SERVER_SETTINGS = """\
# Managed by HADR Portal's local environment. Port and addresses per node.
listen_addresses = '127.0.0.1'
port = {port}
# pgBackRest talks to the server over its Unix socket, as the postgres user (peer authentication)
unix_socket_directories = '{socket_directory}'
wal_level = replica
# archive_command is set by the portal (ALTER SYSTEM) once the cluster has a pgBackRest stanza
archive_mode = {archive_mode}
max_wal_senders = 10
max_replication_slots = 10
wal_log_hints = on
hot_standby = on
wal_keep_size = '256MB'
max_connections = 100
shared_buffers = '64MB'
fsync = {fsync}
log_line_prefix = '%m [%p] %q%u@%d '
"""


def chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class LocalInstance:
    """One PostgreSQL server process with its data directory."""

    data_dir: Path
    port: int
    superuser_password: str = field(repr=False, default="")
    fsync: bool = True
    # off for a server no stanza archives (the portal's own database): on, without an archive_command, it would
    # keep every WAL segment waiting for one
    archive_mode: bool = True

    @property
    def socket_directory(self) -> Path:
        return self.data_dir.parent

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def exists(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def is_running(self) -> bool:
        result = run_command(
            as_postgres_user([str(PG_BIN / "pg_ctl"), "status", "-D", str(self.data_dir)]), check=False
        )
        return result.returncode == 0

    def initdb(self) -> None:
        """Create the cluster (superuser `postgres`, password auth on TCP)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        chown_to_postgres(self.data_dir.parent)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made directory from an interrupted run
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, delete=False) as pwfile:
            pwfile.write(self.superuser_password + "\n")
        pwpath = Path(pwfile.name)
        chown_to_postgres(pwpath)
        try:
            run_command(
                as_postgres_user(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        "postgres",
                        f"--pwfile={pwpath}",
                        "--auth-host=scram-sha-256",
                        "--auth-local=peer",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                        "--data-checksums",
                    ]
                ),
                timeout=120,
            )
        finally:
            pwpath.unlink(missing_ok=True)
        self.write_settings()
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'hadr.conf'\n")

    def write_settings(self) -> None:
        settings_file = self.data_dir / "hadr.conf"
        settings_file.write_text(
            SERVER_SETTINGS.format(
                port=self.port,
                fsync="on" if self.fsync else "off",
                socket_directory=self.socket_directory,
                archive_mode="on" if self.archive_mode else "off",
            )
        )
        chown_to_postgres(settings_file)

    def start(self, *, timeout: int = 60) -> None:
        run_command(
            as_postgres_user(
                [
                    str(PG_BIN / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(timeout),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                ]
            ),
            timeout=timeout + 10,
        )

    def ensure_log_file(self) -> None:
        """The server's log, the postgres user's own and readable by nobody else (it names roles and queries)."""
        self.log_file.touch(mode=0o600, exist_ok=True)
        self.log_file.chmod(0o600)
        chown_to_postgres(self.log_file)

    def stop(self, *, mode: str = "fast", timeout: int = 60) -> None:
        if not self.exists() or not self.is_running():
            return
        run_command(
            as_postgres_user(
                [str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", str(timeout), "-m", mode, "-D", str(self.data_dir)]
            ),
            timeout=timeout + 10,
        )

    def conninfo(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        pw = self.superuser_password if password is None else password
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} password={pw} connect_timeout=5"

    def psql(self, sql: str, *, dbname: str = "postgres") -> str:
        """Run SQL as the superuser through psql; returns its unaligned, tuples-only output."""
        result = run_command(
            [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", self.conninfo(dbname), "-c", sql],
            timeout=60,
        )
        return result.stdout.strip()
