"""The Restart part of the service form: a choice of controller, and the fields of the chosen one.

Commands are code. A command or systemd controller is written only in the catalog file (`manage.py catalog
import`, run by someone with shell access on the portal's machine). In the web form a DevOps may:

- keep such a controller as it is (shown read-only, with what it runs),
- choose none, a webhook or ECS,
- or pick one program of the command allowlist (HADR_COMMAND_ALLOWLIST) and give its arguments: plain values,
  passed as they are — no shell, no environment variables, no working directory.

Anything else — a raw `restart` table in the POST (the old JSON field), a program that is not in the allowlist, a
command or systemd controller — is refused with a form error, and `RestartSetting.clean` reports it so that the
view audits the refusal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from hadr_portal.adapters.controllers import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_WAIT_SECONDS,
    MAX_SECONDS,
    ControllerConfigError,
    controller_from_config,
    is_argv,
)
from hadr_portal.core.redaction import redact

from .models import restart_validate

KEEP, NONE, PROGRAM, WEBHOOK, ECS = "keep", "none", "program", "webhook", "ecs"
WRITTEN_ONLY_IN_CATALOG = ("command", "systemd")
CHOICE_LABELS = {
    KEEP: "Keep the command defined in the catalog file",
    NONE: "None: no Restart button",
    PROGRAM: "Run an allowlisted program",
    WEBHOOK: "Call a webhook (HTTP POST)",
    ECS: "AWS ECS: force a new deployment",
}
# The settings of each choice, in the order the form shows them; TIMING belongs to all three.
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (PROGRAM, "Program", ("restart_program", "restart_arguments")),
    (WEBHOOK, "Webhook", ("restart_url", "restart_url_env", "restart_headers_env")),
    (ECS, "AWS ECS", ("restart_ecs_cluster", "restart_ecs_service", "restart_ecs_region", "restart_ecs_endpoint_url")),
    (f"{PROGRAM} {WEBHOOK} {ECS}", "Timing", ("restart_timeout_seconds", "restart_wait_seconds")),
)
# Where a problem the controllers report about a key of the table is shown on the form.
KEY_FIELDS = {
    "argv": "restart_arguments",
    "url": "restart_url",
    "url_env": "restart_url_env",
    "headers_env": "restart_headers_env",
    "cluster": "restart_ecs_cluster",
    "service": "restart_ecs_service",
    "region": "restart_ecs_region",
    "endpoint_url": "restart_ecs_endpoint_url",
    "timeout_seconds": "restart_timeout_seconds",
    "wait_seconds": "restart_wait_seconds",
}
PROGRAM_KEYS = {"controller", "argv", "timeout_seconds", "wait_seconds"}
MAX_ARGUMENTS = 32
MAX_ARGUMENT_LENGTH = 1000
IN_THE_CATALOG = (
    "Commands and systemd units are defined only in the catalog file (manage.py catalog export, edit, "
    "manage.py catalog import), by someone with shell access to the portal's machine."
)


def restart_choice(table: Mapping[str, Any], allowlist: Sequence[str]) -> str:
    """How the form shows a stored `restart` table: a command is a PROGRAM when the form could have written it
    (an allowlisted program, arguments only), else KEEP (a catalog command, a systemd unit)."""
    if not table:
        return NONE
    kind = table.get("controller")
    if kind in (WEBHOOK, ECS):
        return str(kind)
    argv = table.get("argv", [])
    if kind == "command" and is_argv(argv) and argv[0] in allowlist and set(table) <= PROGRAM_KEYS:
        return PROGRAM
    return KEEP


@dataclass
class RestartSetting:
    """The Restart fields of one service form: `stored` is the service's table as it was, `allowlist` the
    programs the form may run (settings.COMMAND_ALLOWLIST)."""

    stored: dict[str, Any]
    allowlist: list[str]
    refusals: list[str] = field(default_factory=list)

    @property
    def choice(self) -> str:
        return restart_choice(self.stored, self.allowlist)

    def kept(self) -> str:
        """What the catalog's command or systemd controller does, for the read-only view ('' when there is none)."""
        if self.choice != KEEP:
            return ""
        try:
            controller = controller_from_config(self.stored)
        except ControllerConfigError as exc:
            return f"An invalid {self.stored.get('controller', 'restart')} controller: {exc}"
        passed = self.stored.get("env") or []
        details = [
            f"with the variables {', '.join(passed)}" if passed else "",
            f"in {self.stored['cwd']}" if self.stored.get("cwd") else "",
            f"stopped after {controller.timeout:g} s",
        ]
        return redact(f"It {controller.describe()}, {', '.join(filter(None, details))}.")

    def fields(self) -> dict[str, forms.Field]:
        choices = [(KEEP, CHOICE_LABELS[KEEP])] if self.choice == KEEP else []
        choices += [(NONE, CHOICE_LABELS[NONE])]
        choices += [(PROGRAM, CHOICE_LABELS[PROGRAM])] if self.allowlist else []
        choices += [(WEBHOOK, CHOICE_LABELS[WEBHOOK]), (ECS, CHOICE_LABELS[ECS])]
        seconds: dict[str, Any] = {"required": False, "min_value": 0, "max_value": MAX_SECONDS}
        return {
            "restart_controller": forms.ChoiceField(label="Restart", choices=choices, widget=forms.RadioSelect),
            # checked against the allowlist in clean(), where a program from elsewhere is refused and audited
            "restart_program": forms.CharField(
                label="Program",
                required=False,
                widget=forms.Select(choices=[("", "—"), *((path, path) for path in self.allowlist)]),
                help_text="The programs an administrator allowed in HADR_COMMAND_ALLOWLIST.",
            ),
            "restart_arguments": forms.CharField(
                label="Arguments, one per line",
                required=False,
                widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                help_text="Each line is one argument, passed as it is: no shell, no quoting, no $VARIABLES.",
            ),
            "restart_url": forms.CharField(label="URL", required=False, max_length=500),
            "restart_url_env": forms.CharField(
                label="…or the environment variable holding the URL (when it carries a token)",
                required=False,
                max_length=100,
            ),
            "restart_headers_env": forms.CharField(
                label="Headers from environment variables, one per line",
                required=False,
                widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
                help_text="HEADER = VARIABLE, e.g. Authorization = DEPLOY_HOOK_AUTH (the value is read when it runs).",
            ),
            "restart_ecs_cluster": forms.CharField(label="ECS cluster", required=False, max_length=255),
            "restart_ecs_service": forms.CharField(label="ECS service", required=False, max_length=255),
            "restart_ecs_region": forms.CharField(label="AWS region", required=False, max_length=64),
            "restart_ecs_endpoint_url": forms.CharField(
                label="Endpoint URL (only for an ECS-compatible endpoint)", required=False, max_length=500
            ),
            "restart_timeout_seconds": forms.IntegerField(
                label="Stop the restart call after (seconds)", initial=DEFAULT_TIMEOUT_SECONDS, **seconds
            ),
            "restart_wait_seconds": forms.IntegerField(
                label="Then wait this long for the checks to be green (seconds)",
                initial=DEFAULT_WAIT_SECONDS,
                **seconds,
            ),
        }

    def initial(self) -> dict[str, Any]:
        table, choice = self.stored, self.choice
        values: dict[str, Any] = {"restart_controller": choice}
        if choice in (PROGRAM, WEBHOOK, ECS):
            values["restart_timeout_seconds"] = table.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
            values["restart_wait_seconds"] = table.get("wait_seconds", DEFAULT_WAIT_SECONDS)
        if choice == PROGRAM:
            values["restart_program"] = table["argv"][0]
            values["restart_arguments"] = "\n".join(table["argv"][1:])
        elif choice == WEBHOOK:
            values["restart_url"] = table.get("url", "")
            values["restart_url_env"] = table.get("url_env", "")
            headers = table.get("headers_env") or {}
            values["restart_headers_env"] = "\n".join(f"{header} = {name}" for header, name in headers.items())
        elif choice == ECS:
            for key in ("cluster", "service", "region", "endpoint_url"):
                values[f"restart_ecs_{key}"] = table.get(key, "")
        return values

    def clean(self, form: forms.BaseForm, cleaned: Mapping[str, Any]) -> dict[str, Any] | None:
        """The table the form's values describe, or None when they do not make a valid one (the form then has
        the errors). Attempts to write a command are also noted in `refusals`, one sentence each."""
        if "restart" in form.data:
            self._refuse(form, "restart_controller", _raw_table_refusal(form.data.get("restart")))
            return None
        raw_choice = form.data.get(form.add_prefix("restart_controller"))
        if raw_choice in WRITTEN_ONLY_IN_CATALOG:
            self._refuse(
                form, "restart_controller", f"A {raw_choice} controller cannot be written here. {IN_THE_CATALOG}"
            )
            return None
        choice = cleaned.get("restart_controller")
        if choice is None:
            return None  # an unknown choice: the field has said so
        if choice == KEEP:
            return self.stored
        if choice == NONE:
            return {}
        table: dict[str, Any] = {"controller": "command" if choice == PROGRAM else choice}
        if choice == PROGRAM and not self._program(form, cleaned, table):
            return None
        if choice == WEBHOOK and not _webhook(form, cleaned, table):
            return None
        if choice == ECS:
            table |= {
                key: cleaned[f"restart_ecs_{key}"].strip() for key in ("cluster", "service", "region", "endpoint_url")
            }
            table = {key: value for key, value in table.items() if value}
        for key, default in (("timeout_seconds", DEFAULT_TIMEOUT_SECONDS), ("wait_seconds", DEFAULT_WAIT_SECONDS)):
            value = cleaned.get(f"restart_{key}")
            if value is not None and value != default:
                table[key] = value
        try:
            restart_validate(table)  # what the catalog import accepts, the same way
        except ValidationError as exc:
            for problem in exc.messages:
                key = problem.split(":", 1)[0].split(",")[0].strip()
                form.add_error(KEY_FIELDS.get(key, "restart_controller"), problem)
            return None
        return table

    def _program(self, form: forms.BaseForm, cleaned: Mapping[str, Any], table: dict[str, Any]) -> bool:
        program = cleaned.get("restart_program") or ""
        if program not in self.allowlist:
            allowed = ", ".join(self.allowlist)
            self._refuse(
                form,
                "restart_program",
                f"{program or 'No program'} is not in the command allowlist (HADR_COMMAND_ALLOWLIST: {allowed}). "
                + IN_THE_CATALOG,
            )
            return False
        arguments = [line for line in (cleaned.get("restart_arguments") or "").splitlines() if line.strip()]
        if len(arguments) > MAX_ARGUMENTS or any(len(argument) > MAX_ARGUMENT_LENGTH for argument in arguments):
            form.add_error(
                "restart_arguments",
                f"At most {MAX_ARGUMENTS} arguments of at most {MAX_ARGUMENT_LENGTH} characters each.",
            )
            return False
        table["argv"] = [program, *arguments]
        return True

    def _refuse(self, form: forms.BaseForm, field_name: str, reason: str) -> None:
        self.refusals.append(reason)
        form.add_error(field_name, reason)


def _raw_table_refusal(raw: Any) -> str:
    try:
        kind = json.loads(raw).get("controller") if raw else None
    except (ValueError, AttributeError):
        kind = None
    said = f"a {kind} controller" if isinstance(kind, str) and kind else "a restart table"
    return (
        f"This form no longer takes the restart setting as JSON ({said} was sent): choose a controller and fill in "
        f"its fields. {IN_THE_CATALOG}"
    )


def _webhook(form: forms.BaseForm, cleaned: Mapping[str, Any], table: dict[str, Any]) -> bool:
    for key in ("url", "url_env"):
        if value := cleaned.get(f"restart_{key}", "").strip():
            table[key] = value
    headers: dict[str, str] = {}
    for number, line in enumerate((cleaned.get("restart_headers_env") or "").splitlines(), start=1):
        if not line.strip():
            continue
        header, equals, name = line.partition("=")
        if not equals or not header.strip() or not name.strip():
            form.add_error("restart_headers_env", f"Line {number}: write HEADER = VARIABLE, got {line.strip()!r}.")
            return False
        headers[header.strip()] = name.strip()
    if headers:
        table["headers_env"] = headers
    return True
