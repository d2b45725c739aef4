"""Running external programs: argv lists only (never a shell), with a timeout and captured output."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class CommandFailed(Exception):
    """A program exited non-zero, timed out, or could not be started. The message says which."""

    def __init__(self, argv: Sequence[str], message: str, output: str = "") -> None:
        self.argv = list(argv)
        self.output = output
        super().__init__(f"{Path(argv[0]).name}: {message}")


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def as_postgres_user(argv: Sequence[str]) -> list[str]:
    """PostgreSQL's server programs refuse to run as root: run them as `postgres` when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return list(argv)


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    check: bool = True,
) -> CommandResult:
    """Run a program and wait for it. Raises CommandFailed with the tail of its error output."""
    full_env = {**os.environ, **(env or {})}
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or "/", check=False
        )
    except FileNotFoundError:
        raise CommandFailed(argv, "program not found; is it installed?") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(argv, f"timed out after {timeout:.0f} s", str(exc.stderr or "")) from None
    result = CommandResult(list(argv), completed.returncode, completed.stdout, completed.stderr)
    if check and completed.returncode != 0:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-5:])
        raise CommandFailed(argv, f"exited with status {completed.returncode}: {tail}", completed.stderr)
    return result
