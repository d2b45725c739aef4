"""Running external programs: argv lists only (never a shell), with a timeout and captured output.

- `run_command()`  the portal's own tools (pg_dump, pg_ctl, pgbackrest...), with its environment by default
- `run_program()`  a program the catalog or the command allowlist names (restart commands, node controllers,
                   post-failover hooks): a clean environment, its whole session stopped at the timeout, and —
                   when the worker is root — the unprivileged command user (HADR_COMMAND_USER) instead of root
- `env_problems()` why variables may not be passed to such a program (the portal's own settings and secrets)
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
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
# Of those, what describes the worker's own account and session: replaced by the command user's when switching.
ACCOUNT_ENVIRONMENT = ("HOME", "USER", "LOGNAME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")
DEFAULT_COMMAND_USER = "hadr-exec"

# Variables a catalog program may not be handed from the worker's environment (its `env` list): the portal's own
# settings and secrets, and the credentials of the libraries and tools the portal uses. By prefix, then by name.
FORBIDDEN_ENV_PREFIXES: tuple[tuple[str, str], ...] = (
    ("HADR_", "HADR_* variables are the portal's own settings and secrets (its database URL, its secret key)"),
    ("DJANGO_", "DJANGO_* variables configure the portal itself"),
    ("CELERY_", "CELERY_* variables configure the portal's task queue"),
    ("REDIS_", "REDIS_* variables hold the portal's broker address and password"),
    ("PG", "PG* variables are PostgreSQL client settings, passwords included (libpq, pgBackRest)"),
    ("AWS_", "AWS_* variables are AWS credentials and settings (the portal's S3 and ECS access)"),
)
FORBIDDEN_ENV_NAMES: dict[str, str] = {
    "DATABASE_URL": "it is a database URL, password included",
    "SECRET_KEY": "it is a secret key",
    "SSH_AUTH_SOCK": "it hands over the worker's SSH agent and every key in it",
}


def env_name_problem(name: str) -> str | None:
    """Why a program may not be given the variable `name` from the worker's environment; None when it may."""
    if name in FORBIDDEN_ENV_NAMES:
        return f"{name} may not be passed to a program: {FORBIDDEN_ENV_NAMES[name]}."
    for prefix, why in FORBIDDEN_ENV_PREFIXES:
        if name.startswith(prefix):
            return f"{name} may not be passed to a program: {why}."
    return None


# The portal's own secrets. A catalog entry names the variables whose values it sends somewhere (a cluster's
# password, a webhook's URL or headers, S3 keys, a check's URL): none of these may be one of them, or anyone who
# may edit that entry could point it at a server of their own and receive the portal's keys.
PORTAL_SECRET_VARIABLES = frozenset(
    {"HADR_SECRET_KEY", "HADR_DATABASE_URL", "HADR_REDIS_URL", "HADR_METRICS_TOKEN", "HADR_EMAIL_PASSWORD"}
)


def env_reference_problem(name: str, *, allowed: Iterable[str] = ()) -> str | None:
    """Why a catalog entry may not name the variable `name` (not a variable name, or one of the portal's own
    secrets, `*_FILE` forms and DJANGO_* included); None when it may. `allowed` lifts the rule for names a
    purpose legitimately reads (a Redis check of the portal's own broker reads HADR_REDIS_URL)."""
    if not ENV_NAME_PATTERN.match(name):
        # never echoed: what was typed instead of a name may be the secret itself
        return "The name of an environment variable (capitals, digits and _), never the secret itself."
    if name in set(allowed):
        return None
    if name.removesuffix("_FILE") in PORTAL_SECRET_VARIABLES or name.startswith("DJANGO_"):
        return f"{name} is one of the portal's own secrets: name a variable that holds this entry's own value."
    return None


def env_reference(name: str, environ: Mapping[str, str] | None = None, *, allowed: Iterable[str] = ()) -> str:
    """The value of the variable a catalog entry names, or "" when it is unset or is one the entry may not name
    (so that a row saved before the rule, or written to the database directly, still never sends a portal secret)."""
    if not name or env_reference_problem(name, allowed=allowed):
        return ""
    return (os.environ if environ is None else environ).get(name, "")


def env_problems(names: Iterable[str], *, key: str = "env") -> list[str]:
    """One problem per variable of `names` that a program may not be given (restart commands, node controllers and
    post-failover hooks all check their `env` list here), each naming the variable and why."""
    return [f"{key}: {problem}" for name in names if (problem := env_name_problem(name))]


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
    new_session: bool = False,
) -> CommandResult:
    """Run a program and wait for it. Raises CommandFailed with the tail of its error output.

    The program gets this process's environment plus `env`; with `inherit_environment=False`, only
    BASE_ENVIRONMENT and `env` (the portal's own secrets stay out of programs the catalog names).
    With `new_session`, it runs in a session of its own, without input, and at the timeout everything in that
    session is killed, not only the program (what it started, and the program behind runuser)."""
    if inherit_environment:
        full_env = {**os.environ, **(env or {})}
    else:
        full_env = {name: os.environ[name] for name in BASE_ENVIRONMENT if name in os.environ} | dict(env or {})
    return _run(argv, env=full_env, timeout=timeout, cwd=cwd, check=check, new_session=new_session)


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | Path | None,
    check: bool,
    new_session: bool,
    shown: Sequence[str] | None = None,
) -> CommandResult:
    """`shown`: the argv messages name (the program itself, not the runuser in front of it)."""
    shown = list(shown or argv)
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL if new_session else None,
            text=True,
            env=dict(env),
            cwd=cwd or "/",
            start_new_session=new_session,
        )
    except FileNotFoundError:
        raise CommandFailed(shown, "program not found; is it installed?") from None
    except PermissionError:
        raise CommandFailed(shown, "permission denied: the program is not executable by this account") from None
    with process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill(process, whole_session=new_session)
            # what the program wrote before it was killed comes back as bytes, even in text mode
            written = [_text(exc.stdout), _text(exc.stderr)]
            raise CommandFailed(shown, f"timed out after {timeout:g} s", "\n".join(filter(None, written))) from None
        except BaseException:
            _kill(process, whole_session=new_session)
            raise
    result = CommandResult(shown, process.returncode, stdout, stderr)
    return _checked(result) if check else result


def _checked(result: CommandResult) -> CommandResult:
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise CommandFailed(result.argv, f"exited with status {result.returncode}: {tail}", result.stderr)
    return result


def _kill(process: subprocess.Popen[str], *, whole_session: bool) -> None:
    try:
        if whole_session:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except ProcessLookupError:
        pass
    process.wait()


class RunningCommand:
    """A long program started in a session of its own, watched by its caller (progress, cancellation), its
    output in a temporary file so that a chatty program can never fill a pipe and stall.

    `session` is the process group id: a reaper on this machine can stop everything it started
    (`stop_session`) after the worker that watched it died."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, shown: Sequence[str] = ()) -> None:
        self.argv = list(shown or argv)
        self._output = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            self._output.close()
            raise CommandFailed(self.argv, f"cannot start it: {exc.strerror or exc}") from exc
        self.session = self._process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def exited_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for it to exit (no sleep past its end); whether it did."""
        try:
            self._process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def wait(self, timeout: float | None = None) -> CommandResult:
        """Wait for it to exit (CommandFailed after `timeout`, its session killed) and return what it said."""
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise CommandFailed(self.argv, f"timed out after {timeout:g} s", self.output()) from None
        return CommandResult(self.argv, self._process.returncode, self.output(), "")

    def kill(self) -> None:
        if self._process.poll() is None:  # not reaped yet, so its process group id cannot have been reused
            stop_session(self.session)
        self._process.wait()

    def output(self) -> str:
        self._output.seek(0)
        return self._output.read().decode("utf-8", "replace")

    def close(self) -> None:
        self._output.close()

    def __enter__(self) -> RunningCommand:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
        self.close()


def stop_session(session: int) -> bool:
    """SIGKILL every process of a session started by RunningCommand; False when there was none left."""
    try:
        os.killpg(session, signal.SIGKILL)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


# --- programs the catalog names, as the command user -------------------------------------------------


def command_account(user: str, argv: Sequence[str]) -> pwd.struct_passwd:
    """The unprivileged account programs run as when the worker is root. CommandFailed when it does not exist
    or is root itself, saying how to fix it."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise CommandFailed(
            argv,
            f"the command user {user!r} (HADR_COMMAND_USER) does not exist on this machine: `make install` creates "
            "it, or set HADR_COMMAND_USER to another unprivileged account",
        ) from None
    if account.pw_uid == 0:
        raise CommandFailed(
            argv, f"HADR_COMMAND_USER={user!r} is root: programs from the catalog must run as an unprivileged account"
        )
    return account


def run_program(
    argv: Sequence[str],
    *,
    user: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: str | Path | None = None,
    check: bool = True,
) -> CommandResult:
    """Run a program the catalog or the command allowlist names (restart commands, node controllers, hooks).

    Guarantees: an argv list, never a shell; only BASE_ENVIRONMENT and `env` in its environment; no input; it
    and everything it started in its session killed at `timeout`; and when this process is root, it runs as the
    unprivileged `user` (runuser), with that user's HOME, USER and LOGNAME, never as root. Raises CommandFailed
    (program missing, not executable by that user, failed, timed out; the user missing or root)."""
    if os.geteuid() != 0:
        return run_command(
            argv, timeout=timeout, env=env, cwd=cwd, check=check, inherit_environment=False, new_session=True
        )
    account = command_account(user, argv)
    if Path(argv[0]).is_absolute() and not Path(argv[0]).exists():
        raise CommandFailed(argv, "program not found; is it installed?")
    runuser = shutil.which("runuser", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if runuser is None:
        raise CommandFailed(argv, "runuser (util-linux) is missing, so the command user cannot be switched to")
    environment = {name: os.environ[name] for name in BASE_ENVIRONMENT if name in os.environ}
    for name in ACCOUNT_ENVIRONMENT:
        environment.pop(name, None)
    environment |= {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name}
    # the worker's search path, without the directories in its own home (out of the command user's reach)
    worker_home = Path(os.path.expanduser("~"))
    environment["PATH"] = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry and (worker_home == Path("/") or not Path(entry).is_relative_to(worker_home))
    )
    if Path(f"/run/user/{account.pw_uid}").is_dir():  # its own systemd user session, if it has one
        environment["XDG_RUNTIME_DIR"] = f"/run/user/{account.pw_uid}"
    environment |= dict(env or {})
    result = _run(
        [runuser, "-u", account.pw_name, "--", *argv],
        env=environment,
        timeout=timeout,
        cwd=cwd,
        check=False,
        new_session=True,
        shown=argv,
    )
    said = result.stderr.strip()
    if result.returncode == 1 and said.startswith("runuser: failed to execute"):
        if said.endswith("No such file or directory"):
            raise CommandFailed(argv, "program not found; is it installed?")
        raise CommandFailed(
            argv,
            f"the command user {account.pw_name} may not run it ({said.rpartition(': ')[2]}): the program and every "
            "directory above it must be readable and executable by that user",
        )
    return _checked(result) if check else result


def _text(output: str | bytes | None) -> str:
    return (output.decode(errors="replace") if isinstance(output, bytes) else output or "").strip()
