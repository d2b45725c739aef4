"""Restarting a service: one small controller per way of doing it, chosen by the service's `restart` table.

    command   runs a program from the catalog (argv, never a shell)     argv, env, cwd
              or one the web form chose from the command allowlist      argv
    systemd   `systemctl [--user] restart UNIT`                         unit, user
    webhook   POSTs {"service", "action", "operation"} as JSON          url or url_env, headers_env
    ecs       AWS ECS "force new deployment" through boto3              cluster, service, region, endpoint_url

Every controller also takes `timeout_seconds` (how long the call may take, default 60) and `wait_seconds`
(how long the caller then waits for the service's checks, default 120). Secrets (a webhook's URL or
headers) are named by environment variable and read when the restart runs, never stored.

Programs (command, systemd) run through `run_program`: a clean environment, the timeout, and the unprivileged
command user when the worker is root. `env` may not name the portal's own variables (`env_problems`).

- `controller_from_config(table)`  the controller, or ControllerConfigError naming every problem
- `controller.restart(...)`        ControllerResult (output, details), or ControllerFailed carrying the output
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import httpx

from . import netguard
from .commands import (
    DEFAULT_COMMAND_USER,
    ENV_NAME_PATTERN,
    CommandFailed,
    env_problems,
    env_reference_problem,
    run_program,
)

DEFAULT_TIMEOUT_SECONDS = 60
DEFAULT_WAIT_SECONDS = 120
MAX_SECONDS = 3600
OUTPUT_LIMIT = 20_000  # characters of a controller's output kept (the end, where the errors are)
# systemd's unit name characters; never a leading dash, which systemctl would read as an option
UNIT_PATTERN = re.compile(r"^[A-Za-z0-9_:@\\][A-Za-z0-9_:@.\\-]{0,254}$")
HEADER_PATTERN = re.compile(r"^[A-Za-z0-9-]+$")


class ControllerConfigError(ValueError):
    """A `restart` table that cannot work; `problems` holds one sentence per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


class ControllerFailed(Exception):
    """The restart did not happen as asked: the program failed, timed out or is missing, the webhook
    refused, ECS said no. `output` holds what the controller printed or answered."""

    def __init__(self, message: str, output: str = "") -> None:
        self.output = output.strip()[-OUTPUT_LIMIT:]
        super().__init__(message)


@dataclass(frozen=True)
class ControllerResult:
    """What a successful restart call said: its output, and details worth keeping (e.g. a deployment id)."""

    output: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Controller(Protocol):
    kind: ClassVar[str]

    # Read-only: the controllers are frozen dataclasses.
    @property
    def timeout(self) -> float: ...

    def describe(self) -> str: ...

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult: ...


# --- the controllers ------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class WebhookController:
    """POSTs JSON to a URL (given, or read from `url_env`), with headers read from environment variables.
    Any answer but 2xx is a failure; redirects are not followed. The connection goes through the SSRF guard
    (netguard): loopback and private addresses only with `allow_private`, link-local and metadata never."""

    kind: ClassVar[str] = "webhook"
    url: str = ""
    url_env: str = ""
    headers_env: tuple[tuple[str, str], ...] = ()  # (header, name of the variable holding its value)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    allow_private: bool = False

    def describe(self) -> str:
        return f"POSTs to {f'the URL in {self.url_env}' if self.url_env else _site(self.url)}"

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult:
        environ = os.environ if environ is None else environ
        url = self.url or _variable(environ, self.url_env, "the webhook's URL")
        headers = {header: _variable(environ, name, f"the {header} header") for header, name in self.headers_env}
        payload = {"service": service, "action": "restart", "operation": operation}
        site = _site(url)  # never the whole URL in a message: it may carry a token
        refusal = netguard.url_refusal(url, allow_private=self.allow_private)
        if refusal:
            raise ControllerFailed(f"{site}: {refusal}")
        try:
            with netguard.http_client(allow_private=self.allow_private, timeout=self.timeout) as client:
                response = client.post(url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise ControllerFailed(f"{site} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ControllerFailed(f"cannot reach {site}: {exc}") from None
        except httpx.InvalidURL:
            raise ControllerFailed("the webhook's URL is not a valid http(s) URL") from None
        body = response.text[-OUTPUT_LIMIT:]
        if not response.is_success:
            raise ControllerFailed(f"{site} answered HTTP {response.status_code}", body)
        return ControllerResult(body, {"http_status": response.status_code})


@dataclass(frozen=True)
class EcsController:
    """AWS ECS `UpdateService(forceNewDeployment)`: ECS replaces the service's tasks, keeping old ones until
    the new ones are healthy. Credentials come from boto3's usual chain (environment, files, instance role)."""

    kind: ClassVar[str] = "ecs"
    cluster: str
    service: str
    region: str | None = None
    endpoint_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def describe(self) -> str:
        where = f" ({self.region})" if self.region else ""
        return f"forces a new deployment of ECS service {self.service} in cluster {self.cluster}{where}"

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult:
        import boto3  # heavy: only when ECS is used
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        config = Config(
            connect_timeout=min(10.0, self.timeout),
            read_timeout=self.timeout,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        try:
            client = boto3.session.Session(region_name=self.region).client(
                "ecs", endpoint_url=self.endpoint_url, config=config
            )
            answer = client.update_service(cluster=self.cluster, service=self.service, forceNewDeployment=True)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ControllerFailed(f"ECS refused: {error.get('Code', 'error')}: {error.get('Message', '')}") from None
        except BotoCoreError as exc:
            raise ControllerFailed(f"ECS call failed: {exc}") from None
        described = answer.get("service", {})
        deployments = described.get("deployments", [])
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), deployments[0] if deployments else {})
        deployment = primary.get("id", "")
        output = (
            f"ECS service {self.service} in cluster {self.cluster}: new deployment {deployment or '(no id)'}, "
            f"{described.get('desiredCount', '?')} task(s) desired"
        )
        return ControllerResult(output, {"deployment_id": deployment})


def _site(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the webhook"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _variable(environ: Mapping[str, str], name: str, what: str) -> str:
    if problem := env_reference_problem(name):
        raise ControllerFailed(f"refused: {problem}")
    value = environ.get(name, "")
    if not value:
        raise ControllerFailed(f"environment variable {name} ({what}) is not set for the worker")
    return value


# --- reading the catalog's table ------------------------------------------------------------------


def controller_from_config(
    config: Any, *, command_user: str = DEFAULT_COMMAND_USER, allow_private: bool = False
) -> Controller:
    """The controller a service's `restart` table describes; its programs run as `command_user` when the worker is
    root, its webhook may reach loopback and private addresses only with `allow_private`. Raises
    ControllerConfigError naming every problem (unknown controller, missing or mistyped setting, unknown key, a
    variable `env` may not pass, a URL with credentials or to a refused address) in the operator's words."""
    if not isinstance(config, Mapping):
        raise ControllerConfigError(
            [f'Expected a table such as {{"controller": "systemd", "unit": "web.service"}}, got {_shown(config)}.']
        )
    kind = config.get("controller")
    if kind not in BUILDERS:
        said = "required" if kind is None else f"unknown controller {_shown(kind)}"
        raise ControllerConfigError([f"controller: {said}; one of {', '.join(BUILDERS)}."])
    read = TableReader(config, kind)
    timeout = read.seconds("timeout_seconds", DEFAULT_TIMEOUT_SECONDS, low=1)
    read.seconds("wait_seconds", DEFAULT_WAIT_SECONDS, low=0)
    controller = BUILDERS[kind](read, timeout)
    read.refuse_unknown()
    if isinstance(controller, WebhookController):
        if controller.url and (refusal := netguard.url_refusal(controller.url, allow_private=allow_private)):
            read.problems.append(f"url: {refusal}.")
        controller = replace(controller, allow_private=allow_private)
    if read.problems:
        raise ControllerConfigError(read.problems)
    if isinstance(controller, CommandController | SystemdController):
        controller = replace(controller, run_as=command_user)
    return controller


def wait_seconds(config: Mapping[str, Any]) -> float:
    """How long to wait for the service's checks once the controller returned (of a valid table)."""
    return float(config.get("wait_seconds", DEFAULT_WAIT_SECONDS))


class TableReader:
    """Takes settings out of one catalog table, collecting a problem for each missing or mistyped one
    (restart controllers here; node controllers and post-failover hooks in the databases app)."""

    def __init__(self, config: Mapping[str, Any], kind: str, what: str = "") -> None:
        self.config, self.kind = config, kind
        self.what = what or f"the {kind} controller"
        self.known = {"controller"}
        self.problems: list[str] = []

    def take(self, key: str, valid: Callable[[Any], bool], expected: str, *, required: bool = False) -> Any:
        self.known.add(key)
        if key not in self.config:
            if required:
                self.problems.append(f"{key}: required for {self.what} ({expected}).")
            return None
        value = self.config[key]
        if not valid(value):
            self.problems.append(f"{key}: expected {expected}, got {_shown(value)}.")
            return None
        return value

    def seconds(self, key: str, default: float, *, low: float) -> float:
        value = self.take(
            key, lambda v: _is_number(v) and low <= v <= MAX_SECONDS, f"a number of seconds from {low} to {MAX_SECONDS}"
        )
        return float(default if value is None else value)

    def refuse_unknown(self) -> None:
        for key in self.config:
            if key not in self.known:
                known = ", ".join(sorted(self.known))
                self.problems.append(f"{key}: not a setting of {self.what} ({known}).")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def is_argv(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_text(item) for item in value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(ENV_NAME_PATTERN.match(value))


def _is_reference(value: Any) -> bool:
    """A variable whose value the webhook sends away: never one of the portal's own secrets."""
    return isinstance(value, str) and env_reference_problem(value) is None


def is_env_list(value: Any) -> bool:
    return isinstance(value, list) and all(map(_is_name, value))


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. brackets that are not an IPv6 address
        return False


ARGV = 'a list of strings: the program and its arguments, e.g. ["/usr/local/bin/restart-web", "--graceful"]'
NAMES = 'a list of environment variable names, e.g. ["APP_ENV"]'
URL_ENV = "the name of the environment variable holding the URL, e.g. DEPLOY_HOOK_URL (never one of the portal's own)"
CREDENTIALS_IN_ENV = "put the URL in an environment variable and name it in url_env"
HEADERS = (
    'a table of header name = environment variable name, e.g. { Authorization = "DEPLOY_HOOK_AUTH" }'
    " (never one of the portal's own secrets)"
)


def _command(read: TableReader, timeout: float) -> CommandController:
    argv = read.take("argv", is_argv, ARGV, required=True)
    env = read.take("env", is_env_list, NAMES)
    read.problems += env_problems(env or ())
    cwd = read.take("cwd", lambda v: isinstance(v, str) and Path(v).is_absolute(), "an absolute directory path")
    return CommandController(tuple(argv or ("?",)), tuple(env or ()), cwd, timeout)


def _systemd(read: TableReader, timeout: float) -> SystemdController:
    unit = read.take(
        "unit",
        lambda v: isinstance(v, str) and bool(UNIT_PATTERN.match(v)),
        'a systemd unit name, e.g. "web.service" (letters, digits, ":_.@-", not starting with "-")',
        required=True,
    )
    user = read.take("user", lambda v: isinstance(v, bool), "true or false (a unit of the worker's own user)")
    return SystemdController(unit or "?", bool(user), timeout)


def _webhook(read: TableReader, timeout: float) -> WebhookController:
    url = read.take("url", _is_http_url, "an http(s) URL")
    url_env = read.take("url_env", _is_reference, URL_ENV)
    headers = read.take(
        "headers_env",
        lambda v: isinstance(v, Mapping) and all(HEADER_PATTERN.match(h) and _is_reference(n) for h, n in v.items()),
        HEADERS,
    )
    given_url = read.config.get("url")
    if isinstance(given_url, str) and (refusal := netguard.userinfo_refusal(given_url, instead=CREDENTIALS_IN_ENV)):
        read.problems.append(f"url: {refusal}")
    given = [key for key in ("url", "url_env") if key in read.config]
    if len(given) != 1:
        read.problems.append(
            "url, url_env: give the webhook's URL (url), or the environment variable holding it (url_env) "
            f"when it carries a secret — {'not both' if given else 'one of them'}."
        )
    return WebhookController(url or "", url_env or "", tuple(sorted((headers or {}).items())), timeout)


def _ecs(read: TableReader, timeout: float) -> EcsController:
    cluster = read.take("cluster", _is_text, "the ECS cluster's name or ARN", required=True)
    service = read.take("service", _is_text, "the ECS service's name or ARN", required=True)
    region = read.take("region", _is_text, 'an AWS region, e.g. "eu-west-1"')
    endpoint = read.take("endpoint_url", _is_http_url, "an http(s) URL (only for an ECS-compatible endpoint)")
    if endpoint and (refusal := netguard.userinfo_refusal(endpoint, instead="AWS credentials come from boto3's chain")):
        read.problems.append(f"endpoint_url: {refusal}")
    return EcsController(cluster or "?", service or "?", region, endpoint, timeout)


BUILDERS: dict[str, Callable[[TableReader, float], Controller]] = {
    "command": _command,
    "systemd": _systemd,
    "webhook": _webhook,
    "ecs": _ecs,
}
