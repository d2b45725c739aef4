"""Running pgBackRest's commands for a stanza, as the data directories' owner, and reading what they say.

Errors come back as PgBackRestError with pgBackRest's own code and message (`ERROR: [055]: unable to load info
file …`); TransientPgBackRestError for what a retry can cure (another backup holds the lock, the repository's
host did not answer).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hadr_portal.adapters.commands import CommandFailed, RunningCommand, as_postgres_user, run_command

from .config import Stanza, stanza_owner_chown
from .info import StanzaInfo, parse_info

BACKUP_TYPES = ("full", "diff", "incr")
TARGET_TYPES = ("time", "name", "xid", "immediate", "default")
_ERROR = re.compile(r"^(?:\S+ +P\d+ +)?ERROR: \[(\d+)\]: (.*)$", re.MULTILINE)
# pgBackRest error codes that a retry can cure: lock held (050), host/connection (039 file missing? no), protocol
# (101 TLS/HTTP, 104 service), timeouts (057 archive timeout, 082 archive timeout).
_TRANSIENT_CODES = {50, 57, 82, 101, 104}


class PgBackRestError(Exception):
    def __init__(self, message: str, code: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.output = output


class TransientPgBackRestError(PgBackRestError):
    """Another pgBackRest holds the lock, or the repository did not answer: worth retrying."""


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery stops: `type` time (an aware datetime), name (a restore point), xid, immediate (the end of
    the backup), or default (the end of the archive: "latest")."""

    type: str = "default"
    value: str = ""
    inclusive: bool = True

    def __post_init__(self) -> None:
        if self.type not in TARGET_TYPES:
            raise ValueError(f"recovery target type {self.type!r}: expected one of {', '.join(TARGET_TYPES)}")
        if self.type in ("time", "name", "xid") and not self.value:
            raise ValueError(f"a recovery target of type {self.type} needs a value")

    @classmethod
    def at_time(cls, moment: datetime, *, inclusive: bool = True) -> RecoveryTarget:
        if moment.tzinfo is None:
            raise ValueError("a recovery target time must carry its time zone")
        return cls("time", moment.isoformat(sep=" ", timespec="microseconds"), inclusive)

    def options(self, *, action: str) -> list[str]:
        if self.type == "default":
            return ["--type=default"]
        options = [f"--type={self.type}", f"--target-action={action}"]
        if self.value:
            options.append(f"--target={self.value}")
        if self.type in ("time", "xid") and not self.inclusive:
            options.append("--target-exclusive")
        return options


def failure(text: str, fallback: str) -> PgBackRestError:
    """The error pgBackRest reported in `text` (its first ERROR line and the lines that continue it)."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = _ERROR.match(line.strip())
        if match:
            code, message = int(match.group(1)), match.group(2)
            more = [following.strip() for following in lines[number + 1 : number + 4] if following.startswith(" ")]
            full = " ".join([message, *more]).strip()
            kind = TransientPgBackRestError if code in _TRANSIENT_CODES else PgBackRestError
            return kind(f"pgBackRest error {code}: {full}", code, text)
    tail = "\n".join(line for line in lines[-5:] if line.strip())
    return PgBackRestError(f"{fallback}: {tail}".strip(": "), None, text)


def run(stanza: Stanza, command: str, *options: str, timeout: float = 300) -> str:
    """Run `command` to its end; its standard output, or PgBackRestError."""
    argv = [*stanza.base_argv(), *options, command]
    try:
        result = run_command(_as_owner(stanza, argv), timeout=timeout, check=False, new_session=True)
    except CommandFailed as exc:
        raise PgBackRestError(f"pgbackrest {command}: {exc}") from exc
    if result.returncode != 0:
        raise failure(result.stderr + "\n" + result.stdout, f"pgbackrest {command} exited with {result.returncode}")
    return result.stdout


def start(stanza: Stanza, command: str, *options: str) -> RunningCommand:
    argv = [*stanza.base_argv(), *options, command]
    return RunningCommand(_as_owner(stanza, argv), shown=argv)


def _as_owner(stanza: Stanza, argv: Sequence[str]) -> list[str]:
    if stanza.run_as == "postgres":
        return as_postgres_user(argv)
    return ["runuser", "-u", stanza.run_as, "--", *argv]


# --- the commands -----------------------------------------------------------------------------------------


def info(stanza: Stanza, *, timeout: float = 60) -> StanzaInfo:
    found = parse_info(run(stanza, "info", "--output=json", timeout=timeout))
    if not found:
        raise PgBackRestError(f"pgbackrest info said nothing about stanza {stanza.name}")
    return found[0]


def stanza_create(stanza: Stanza, *, timeout: float = 120) -> None:
    """Create the stanza in every repository (nothing happens to one that exists and matches the cluster)."""
    run(stanza, "stanza-create", timeout=timeout)


def check(stanza: Stanza, *, archive_timeout: int = 60, timeout: float = 180) -> None:
    """pgBackRest's own check: configuration, and a WAL switch that must reach every repository in time."""
    run(stanza, "check", f"--archive-timeout={archive_timeout}", timeout=timeout)


def expire(stanza: Stanza, *, label: str, repo: int, timeout: float = 600) -> None:
    """Remove one backup set (and the sets that depend on it) from `repo`, and the WAL nothing needs any more.
    pgBackRest itself refuses to expire a repository's only full backup."""
    if label not in {item.label for item in info(stanza).sets(repo)}:
        raise PgBackRestError(f"repo{repo} has no backup set {label}: nothing was expired")
    run(stanza, "expire", f"--set={label}", f"--repo={repo}", timeout=timeout)


def verify(stanza: Stanza, *, repo: int, timeout: float = 1800) -> str:
    """pgBackRest's `verify` of a repository's backups and WAL (PgBackRestError on a problem); its report."""
    return run(stanza, "verify", f"--repo={repo}", "--log-level-console=info", timeout=timeout)


def backup(
    stanza: Stanza,
    *,
    type: str,
    repo: int,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    poll_seconds: float = 1.0,
    timeout: float = 12 * 3600,
    checkpoint: Callable[[], None] | None = None,
) -> StanzaInfo:
    """Run `pgbackrest backup --type=…` to its end and return `info` afterwards (the new set is the newest of
    `repo`). `on_start(session)` learns the process group to stop after a crash; `on_progress(done, total)`
    is fed from `info` while it runs; `checkpoint()` may raise to stop it (cancellation)."""
    if type not in BACKUP_TYPES:
        raise ValueError(f"backup type {type!r}: expected one of {', '.join(BACKUP_TYPES)}")
    with start(stanza, "backup", f"--type={type}", f"--repo={repo}") as running:
        if on_start:
            on_start(running.session)
        deadline = time.monotonic() + timeout
        while not running.exited_within(poll_seconds):  # its end is seen at once, not at the next poll
            if time.monotonic() > deadline:
                raise PgBackRestError(f"pgbackrest backup did not finish within {timeout:g} s")
            if checkpoint:
                checkpoint()
            if on_progress:
                try:
                    now = info(stanza, timeout=30)
                except PgBackRestError:
                    now = None
                if now and now.backup_done_bytes is not None and now.backup_total_bytes:
                    on_progress(now.backup_done_bytes, now.backup_total_bytes)
        result = running.wait(0)
    _raise_unless_ok(result.returncode, result.stdout, "backup")
    return info(stanza)


def _raise_unless_ok(returncode: int, output: str, command: str) -> None:
    """PgBackRestError for a failed run; "killed by signal N" when it was (runuser passes 128 + N on)."""
    if returncode == 0:
        return
    signal_number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signal_number and not _ERROR.search(output):
        raise PgBackRestError(f"pgbackrest {command} was killed by signal {signal_number}", None, output)
    raise failure(output, f"pgbackrest {command} exited with {returncode}")


def restore(
    stanza: Stanza,
    *,
    directory: Path,
    target: RecoveryTarget,
    repo: int | None = None,
    label: str | None = None,
    action: str = "pause",
    on_start: Callable[[int], None] | None = None,
    timeout: float = 12 * 3600,
) -> str:
    """Restore into a new (or empty) data directory `directory`, recovery set to stop at `target` and then
    `action` (pause: a DBA looks before deciding; promote: it takes writes at once). The restored server
    archives nothing (`--archive-mode=off`): it must never push WAL into the live stanza."""
    if directory.exists() and any(directory.iterdir()):
        raise PgBackRestError(f"{directory} is not empty: a restore goes into a new data directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stanza_owner_chown(stanza, directory)
    options = [f"--pg1-path={directory}", "--archive-mode=off", *target.options(action=action)]
    if repo is not None:
        options.append(f"--repo={repo}")
    if label:
        options.append(f"--set={label}")
    with start(stanza, "restore", *options) as running:
        if on_start:
            on_start(running.session)
        result = running.wait(timeout)
    _raise_unless_ok(result.returncode, result.stdout, "restore")
    return result.stdout
