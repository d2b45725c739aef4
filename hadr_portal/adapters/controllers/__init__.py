"""Restarting a service: one small controller per way of doing it, chosen by the service's `restart` table.

    command   runs a program from the catalog (argv, never a shell)     argv, env, cwd
              or one the web form chose from the command allowlist      argv
    systemd   `systemctl [--user] restart UNIT`                         unit, user
    webhook   POSTs {"service", "action", "operation"} as JSON          url or url_env, headers_env
    ecs       AWS ECS "force new deployment" through boto3              cluster, service, region, endpoint_url

Every controller also takes `timeout_seconds` (how long the call may take, default 60) and `wait_seconds`
(how long the caller then waits for the service's checks, default 120). Secrets (a webhook's URL or
headers) are named by environment variable and read when the restart runs, never stored.

- `base`     the `Controller` protocol, its result and errors, the limits
- `table`    `TableReader`: settings out of a catalog table, a problem for each wrong one
- `command`  `CommandController` and `SystemdController` (programs run through `run_program`)
- `webhook`  `WebhookController`;  `ecs`  `EcsController`

Callers use the names below:

- `controller_from_config(table)`  the controller, or ControllerConfigError naming every problem
- `controller.restart(...)`        ControllerResult (output, details), or ControllerFailed carrying the output
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from hadr_portal.adapters import netguard
from hadr_portal.adapters.commands import DEFAULT_COMMAND_USER

from .base import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_WAIT_SECONDS,
    MAX_SECONDS,
    Controller,
    ControllerConfigError,
    ControllerFailed,
    ControllerResult,
)
from .command import CommandController, SystemdController, command_from_table, systemd_from_table
from .ecs import EcsController, ecs_from_table
from .table import ARGV, NAMES, TableReader, is_argv, is_env_list, shown
from .webhook import WebhookController, webhook_from_table

__all__ = [
    "ARGV",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_WAIT_SECONDS",
    "MAX_SECONDS",
    "NAMES",
    "CommandController",
    "Controller",
    "ControllerConfigError",
    "ControllerFailed",
    "ControllerResult",
    "EcsController",
    "SystemdController",
    "TableReader",
    "WebhookController",
    "controller_from_config",
    "is_argv",
    "is_env_list",
    "wait_seconds",
]

BUILDERS: dict[str, Callable[[TableReader, float], Controller]] = {
    "command": command_from_table,
    "systemd": systemd_from_table,
    "webhook": webhook_from_table,
    "ecs": ecs_from_table,
}


def controller_from_config(
    config: Any, *, command_user: str = DEFAULT_COMMAND_USER, allow_private: bool = False
) -> Controller:
    """The controller a service's `restart` table describes; its programs run as `command_user` when the worker is
    root, its webhook may reach loopback and private addresses only with `allow_private`. Raises
    ControllerConfigError naming every problem (unknown controller, missing or mistyped setting, unknown key, a
    variable `env` may not pass, a URL with credentials or to a refused address) in the operator's words."""
    if not isinstance(config, Mapping):
        raise ControllerConfigError(
            [f'Expected a table such as {{"controller": "systemd", "unit": "web.service"}}, got {shown(config)}.']
        )
    kind = config.get("controller")
    if kind not in BUILDERS:
        said = "required" if kind is None else f"unknown controller {shown(kind)}"
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
