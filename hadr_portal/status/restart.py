"""Restarting a service: its controller (command, systemd, webhook, ECS), then its checks until green again.

- `restart_request()`  queue a restart (DevOps; at most one per service at a time: the operation's target)
- `restart_run()`      the operation: call the controller (bounded by its timeout, output in the log), then
                       run the service's probed checks every second until each has a fresh green result, or
                       fail at `wait_seconds` with the failing checks' messages
- `restart_plan()`     what a restart of this service would do, in words, for the pages
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from hadr_portal.adapters.controllers import (
    Controller,
    ControllerConfigError,
    ControllerFailed,
    controller_from_config,
    wait_seconds,
)
from hadr_portal.core.models import Operation, OperationLogLine
from hadr_portal.core.operation_kinds import OperationContext, OperationError, OperationKind
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action
from hadr_portal.core.redaction import redact
from hadr_portal.core.scheduling import schedule_due

from .engine import checks_run
from .models import Check, Service, State

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

ATTEMPT_INTERVAL = 1.0  # seconds between two rounds of checks while waiting for green
OUTPUT_LINES = 200  # the controller's last lines copied into the operation's log


class RestartNotHealthy(Exception):
    """The controller did its part, but the service's checks were not all green by the deadline."""


def restart_controller(service: Service) -> Controller:
    """The service's controller; OperationError when it has none or its table is invalid."""
    if not service.restart:
        raise OperationError(
            f"{service.display_name} has no restart controller: DevOps can add one to the service "
            "(the restart setting, or `restart` in the catalog file)."
        )
    try:
        return controller_from_config(
            service.restart, command_user=settings.COMMAND_USER, allow_private=settings.ALLOW_PRIVATE_TARGETS
        )
    except ControllerConfigError as exc:
        raise OperationError(f"{service.display_name}'s restart setting is invalid: {exc}") from None


def restart_request(
    *, service: Service, actor: Actor | None, address: str | None = None, drill: bool = False
) -> Operation:
    """Queue a restart of `service` (refused without a restart controller, or while one is in progress). A drill
    is the same real restart, queued by its schedule: its RTO (controller + until green) is the service's."""
    controller = restart_controller(service)
    parameters: dict[str, Any] = {"service": service.name, "controller": controller.kind}
    if drill:
        parameters["drill"] = True
    return operation_request(
        kind="restart_service", target=service.target, actor=actor, address=address, parameters=parameters
    )


def restart_drills_due(*, now: datetime | None = None) -> list[Operation]:
    """Queue the restart drills due by each service's `restart_drill_schedule` (called by beat)."""
    return schedule_due(
        Service.objects.exclude(restart_drill_schedule=""),
        field="next_restart_drill_at",
        schedule=lambda service: service.restart_drill_schedule,
        start=lambda service: restart_request(service=service, actor=None, drill=True),
        kind="restart_service",
        target=lambda service: service.target,
        now=now or timezone.now(),
    )


def restart_plan(service: Service, *, probed_checks: int) -> str:
    """One sentence for the pages: what pressing Restart does (or why there is no Restart)."""
    try:
        controller = restart_controller(service)
    except OperationError as exc:
        return str(exc)
    # every account reads this: a catalog command's arguments may carry a credential
    did = redact(f"The portal {controller.describe()} (stopped after {controller.timeout:g} s)")
    if probed_checks == 0:
        return f"{did}; the service has no health check to wait for, so the restart is not verified."
    checks = "its health check" if probed_checks == 1 else f"its {probed_checks} health checks"
    until = "it is" if probed_checks == 1 else "all are"
    return f"{did}, then runs {checks} every second until {until} green, for up to {wait_seconds(service.restart):g} s."


def restart_run(context: OperationContext) -> Mapping[str, Any]:
    service = Service.objects.get(name=context.parameters["service"])
    controller = restart_controller(service)
    context.log(f"Restarting {service.display_name}: {controller.describe()} (timeout {controller.timeout:g} s).")
    context.progress(5, f"{controller.kind}: restarting")
    started = time.monotonic()
    try:
        said = controller.restart(service=service.name, operation=context.operation.pk)
    except ControllerFailed as exc:
        _log_output(context, exc.output, level=OperationLogLine.Level.ERROR)
        raise
    controller_seconds = time.monotonic() - started
    _log_output(context, said.output)
    context.log(f"The {controller.kind} controller returned after {controller_seconds:.1f} s.")
    context.progress(40, "Waiting for the checks to be green")
    until_green, attempts = _wait_green(context, service, wait_seconds(service.restart))
    context.progress(100, "Restarted; every check green" if until_green is not None else "Restarted (not verified)")
    service.refresh_from_db()
    return {
        "controller": controller.kind,
        "controller_seconds": round(controller_seconds, 2),
        "seconds_until_green": None if until_green is None else round(until_green, 2),
        "check_rounds": attempts,
        "service_state": service.state,
        **said.details,
    }


def _log_output(context: OperationContext, output: str, *, level: str = OperationLogLine.Level.INFO) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) > OUTPUT_LINES:
        context.log(f"… {len(lines) - OUTPUT_LINES} earlier lines of output not shown", level=level)
    for line in lines[-OUTPUT_LINES:]:
        context.log(f"| {line[:1000]}", level=level)


def _probed_checks(service: Service) -> QuerySet[Check]:
    return service.checks.filter(enabled=True).exclude(kind__in=Check.UNPROBED_KINDS).order_by("name")


def _wait_green(context: OperationContext, service: Service, limit: float) -> tuple[float | None, int]:
    """Run the service's probed checks until each has a green result taken after the controller returned.

    A check's state would not do: with `failures_before_down` > 1 it stays up through the first failures
    (the process may be dead and the state still green), and it turns up again on the first success.
    Returns the seconds until green and the rounds it took (None, 0 when there is nothing to wait for)."""
    ids = list(_probed_checks(service).values_list("pk", flat=True))
    if not ids:
        context.log(
            "No enabled health check to wait for: the restart is not verified.", level=OperationLogLine.Level.WARNING
        )
        return None, 0
    began = time.monotonic()
    rounds = 0
    while True:
        rounds += 1
        since = timezone.now()
        checks_run(ids)
        checks = list(Check.objects.filter(pk__in=ids).order_by("name"))
        failing = [check for check in checks if not _green_since(check, since)]
        elapsed = time.monotonic() - began
        summary = "; ".join(
            f"{check.name}: {check.last_outcome or 'no result'} ({check.last_message})" for check in checks
        )
        if not failing:
            context.log(f"Checks, round {rounds} ({elapsed:.1f} s): all green — {summary}")
            return elapsed, rounds
        context.log(f"Checks, round {rounds} ({elapsed:.1f} s): {summary}", level=OperationLogLine.Level.WARNING)
        if elapsed >= limit:
            reasons = "; ".join(f"{check.name}: {check.last_message or 'no result'}" for check in failing)
            raise RestartNotHealthy(f"{service.display_name} is not healthy {limit:g} s after the restart: {reasons}")
        context.progress(40 + int(59 * elapsed / limit), f"Waiting for the checks to be green (round {rounds})")
        time.sleep(min(ATTEMPT_INTERVAL, max(0.0, limit - elapsed)))


def _green_since(check: Check, since: datetime) -> bool:
    return check.last_outcome == State.UP and check.last_result_at is not None and check.last_result_at >= since


RESTART_SERVICE = OperationKind(
    name="restart_service",
    label="Service restart",
    action=Action.RESTART_SERVICE,
    run=restart_run,
    queue="ops",
    # never retried: a second restart is a decision for a person, with the first one's output in front of them
)
