"""Restarting by running a program: one from the catalog or the command allowlist, or `systemctl restart UNIT`.

Programs run through `run_program`: a clean environment, the timeout, and the unprivileged command user when the
worker is root. `env` may not name the portal's own variables (`env_problems`).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hadr_portal.adapters.commands import DEFAULT_COMMAND_USER, CommandFailed, env_problems, run_program

from .base import DEFAULT_TIMEOUT_SECONDS, ControllerFailed, ControllerResult
from .table import ARGV, NAMES, TableReader, is_argv, is_env_list

# systemd's unit name characters; never a leading dash, which systemctl would read as an option
UNIT_PATTERN = re.compile(r"^[A-Za-z0-9_:@\\][A-Za-z0-9_:@.\\-]{0,254}$")


@dataclass(frozen=True)
class CommandController:
    """Runs a program with only the basic environment and the variables named in `env` passed to it, as
    `run_as` (the command user) when the worker is root."""

    kind: ClassVar[str] = "command"
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    run_as: str = DEFAULT_COMMAND_USER

    def describe(self) -> str:
        return f"runs {shlex.join(self.argv)}"

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult:
        environ = os.environ if environ is None else environ
        passed = {name: environ[name] for name in self.env if name in environ}
        try:
            result = run_program(
                self.argv, user=self.run_as, timeout=self.timeout, env=passed, cwd=self.cwd, check=False
            )
        except CommandFailed as exc:  # not found, not executable, timed out, no command user
            raise ControllerFailed(str(exc), exc.output) from None
        output = "\n".join(filter(None, (result.stdout.strip(), result.stderr.strip())))
        if result.returncode != 0:
            last = output.splitlines()[-1] if output else "no output"
            raise ControllerFailed(f"{Path(self.argv[0]).name}: exited with status {result.returncode}: {last}", output)
        return ControllerResult(output, {"exit_status": 0})


@dataclass(frozen=True)
class SystemdController:
    """`systemctl restart UNIT`, which returns once systemd has restarted the unit (or failed to).

    It runs as the command user when the worker is root, so that account needs the right to do so: a polkit
    rule for the unit (README: Security), or `user = true` for a unit of its own user manager."""

    kind: ClassVar[str] = "systemd"
    unit: str
    user: bool = False
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    run_as: str = DEFAULT_COMMAND_USER

    @property
    def argv(self) -> tuple[str, ...]:
        return ("systemctl", *(("--user",) if self.user else ()), "restart", self.unit)

    def describe(self) -> str:
        return self._command().describe()

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult:
        return self._command().restart(service=service, environ=environ)

    def _command(self) -> CommandController:
        return CommandController(self.argv, timeout=self.timeout, run_as=self.run_as)


def command_from_table(read: TableReader, timeout: float) -> CommandController:
    argv = read.take("argv", is_argv, ARGV, required=True)
    env = read.take("env", is_env_list, NAMES)
    read.problems += env_problems(env or ())
    cwd = read.take("cwd", lambda v: isinstance(v, str) and Path(v).is_absolute(), "an absolute directory path")
    return CommandController(tuple(argv or ("?",)), tuple(env or ()), cwd, timeout)


def systemd_from_table(read: TableReader, timeout: float) -> SystemdController:
    unit = read.take(
        "unit",
        lambda v: isinstance(v, str) and bool(UNIT_PATTERN.match(v)),
        'a systemd unit name, e.g. "web.service" (letters, digits, ":_.@-", not starting with "-")',
        required=True,
    )
    user = read.take("user", lambda v: isinstance(v, bool), "true or false (a unit of the worker's own user)")
    return SystemdController(unit or "?", bool(user), timeout)
