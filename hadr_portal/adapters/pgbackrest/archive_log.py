"""pgBackRest's archive-push logs, read for what no machine interface says: the error of a failing push (PostgreSQL
only counts failures) and the WAL pgBackRest dropped because archive-push-queue-max was exceeded.

Lines look like `2026-11-29 17:41:03.120 P00  ERROR: [103]: unable to find a valid repository:`, continued by
indented lines. Each stanza name writes its own `<name>-archive-push-async.log` (`-archive-push.log` without
archive-async) into the log path; only the tail of each is read (pgBackRest appends to them for ever).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

LOG_TAIL_BYTES = 512 * 1024
_ENTRY = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) P\d+ +([A-Z]+): (.*)$")
_DROPPED = re.compile(r"dropped WAL file '([0-9A-F]{24})' because archive queue exceeded")


@dataclass
class LogEntry:
    """One entry: its time, level (INFO, WARN, ERROR) and lines (the first, then those that continue it)."""

    at: datetime
    level: str
    lines: list[str]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def summary(self, lines: int = 2) -> str:
        """The message and its first detail: `[103]: unable to find a valid repository: repo1: [FileMissingError] …`"""
        return " ".join(self.lines[:lines]) + (" …" if len(self.lines) > lines else "")


@dataclass
class ArchiveLog:
    """What the archive-push logs say: when WAL reached the repository, the errors, and the WAL dropped."""

    pushed: list[datetime] = field(default_factory=list)
    failures: list[LogEntry] = field(default_factory=list)
    drops: list[tuple[datetime, str]] = field(default_factory=list)
    problem: str = ""


def archive_log_entries(text: str) -> list[LogEntry]:
    """pgBackRest's log lines (`2026-11-29 17:41:03.120 P00  ERROR: [103]: …`), each with the indented lines that
    continue it, HINTs left out. pgBackRest writes local time; it runs where the data directory is, on this
    machine, so its times are read in this machine's time zone."""
    entries: list[LogEntry] = []
    for line in text.splitlines():
        if match := _ENTRY.match(line):
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f").astimezone()
            entries.append(LogEntry(at, match[2], [match[3].strip()]))
        elif entries and line[:1].isspace() and line.strip() and not line.strip().startswith("HINT:"):
            entries[-1].lines.append(line.strip())
    return entries


def archive_log_parse(text: str, into: ArchiveLog | None = None) -> ArchiveLog:
    """Sort one log's entries: a run of archive-push that pushed WAL and ended well, a failure, a drop."""
    log = into or ArchiveLog()
    pushed = troubled = False
    for entry in archive_log_entries(text):
        if " command begin " in entry.text:
            pushed = troubled = False
        elif entry.level == "ERROR" or "could not push WAL file" in entry.text:
            log.failures.append(entry)
            troubled = True
        elif match := _DROPPED.search(entry.text):
            log.drops.append((entry.at, match[1]))
            troubled = True
        elif entry.text.startswith("pushed WAL file"):  # archive-async off: one line per segment
            log.pushed.append(entry.at)
        elif entry.text.startswith("push "):
            pushed = True
        elif "command end: completed successfully" in entry.text and pushed and not troubled:
            log.pushed.append(entry.at)
    return log


def archive_log_read(directory: Path) -> ArchiveLog:
    """The tails of every archive-push log in the stanza's log directory: an archive_command with a mistyped
    --stanza still writes there, under the name it was given."""
    log = ArchiveLog()
    try:
        paths = sorted(directory.glob("*-archive-push*.log"))
        for path in paths:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - LOG_TAIL_BYTES))
                text = handle.read().decode("utf-8", "replace")
            cut = size > LOG_TAIL_BYTES  # then the first line read is the end of one
            archive_log_parse(text.split("\n", 1)[-1] if cut else text, log)
    except OSError as exc:
        log.problem = (
            f"pgBackRest's log in {directory} cannot be read ({exc.strerror or exc}): "
            "the error of a failing push and dropped WAL are not known"
        )
    log.failures.sort(key=lambda entry: entry.at)
    return log
