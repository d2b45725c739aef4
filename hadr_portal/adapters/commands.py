"""Running external programs: argv lists only (never a shell), with a timeout and captured output."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Settings and secrets are referenced by the NAME of an environment variable, never stored. Defined here,
# where programs get their environment, because adapters import no Django (core/validators re-exports it).
ENV_NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# What a program given only named variables still receives: its search path, locale, home and user, and the
# user's systemd / D-Bus session (`systemctl --user`).
BASE_ENVIRONMENT = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
)


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
    inherit_environment: bool = True,
) -> CommandResult:
    """Run a program and wait for it. Raises CommandFailed with the tail of its error output.

    The program gets this process's environment plus `env`; with `inherit_environment=False`, only
    BASE_ENVIRONMENT and `env` (the portal's own secrets stay out of programs the catalog names)."""
    if inherit_environment:
        full_env = {**os.environ, **(env or {})}
    else:
        full_env = {name: os.environ[name] for name in BASE_ENVIRONMENT if name in os.environ} | dict(env or {})
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or "/", check=False
        )
    except FileNotFoundError:
        raise CommandFailed(argv, "program not found; is it installed?") from None
    except subprocess.TimeoutExpired as exc:
        # what the program wrote before it was killed comes back as bytes, even in text mode
        written = [_text(exc.stdout), _text(exc.stderr)]
        raise CommandFailed(argv, f"timed out after {timeout:g} s", "\n".join(filter(None, written))) from None
    result = CommandResult(list(argv), completed.returncode, completed.stdout, completed.stderr)
    if check and completed.returncode != 0:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-5:])
        raise CommandFailed(argv, f"exited with status {completed.returncode}: {tail}", completed.stderr)
    return result


def _text(output: str | bytes | None) -> str:
    return (output.decode(errors="replace") if isinstance(output, bytes) else output or "").strip()
