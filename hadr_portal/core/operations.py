"""Operations: the one shape for every long action.

A kind of operation (backup, failover, connectivity check, ...) is an `OperationKind` that the app
owning it registers in `registry.operation_kinds` from its ready() (`core.operation_kinds`: the kind,
the context its runner is handed, the errors). The services here do the rest, the same way for every
kind:

- `operation_request()`  permission check, Operation + audit entry in one transaction, enqueue on commit
- `operation_execute()`  atomic claim (a second delivery does nothing), heartbeat, retries, outcome
- `operation_cancel()`   cancel a queued one at once; ask a running, cancellable one to stop
- `operations_reap()`    fail running operations whose worker stopped heartbeating, and clean up
- `output_visible()`     whether an account may read an operation's log, error and result

Log lines, errors, progress messages and results are passed through `redaction.redact` as they are written, so
the stored output of a program holds no credential it printed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import tenacity
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from . import registry
from .audit import audit_record
from .dispatch import task_send_on_commit
from .logging import current_operation_id
from .models import EXECUTE_TASK, AuditEntry, Operation, OperationLogLine, OperationScope
from .operation_kinds import (
    OperationCancelled,
    OperationConflict,
    OperationContext,
    OperationError,
    OperationKind,
    ScopeConflict,
)
from .permissions import PERMISSIONS, Action, Role, require, user_can
from .redaction import redact, redact_mapping

if TYPE_CHECKING:
    from .permissions import Actor

logger = logging.getLogger(__name__)
Status = Operation.Status


def get_kind(name: str) -> OperationKind:
    """The registered kind (`registry.operation_kinds`, filled by the apps in their ready())."""
    kind: OperationKind | None = registry.operation_kinds.get(name)
    if kind is None:
        raise OperationError(f"Unknown kind of operation: {name!r}")
    return kind


def output_visible(user: Actor, operation: Operation) -> bool:
    """Whether `user` may read an operation's log lines, error and result: those who may run its kind (they
    would see the same output running it themselves). Everyone else sees its status and progress only."""
    kind = registry.operation_kinds.get(operation.kind)
    return user_can(user, kind.action) if kind else bool(getattr(user, "is_superuser", False))


def output_roles(operation: Operation) -> str:
    """The roles that may read an operation's output, in words: "DevOps", "DevOps and DBA", "administrators"."""
    kind = registry.operation_kinds.get(operation.kind)
    allowed = [role.value for role in Role if kind and role in PERMISSIONS[kind.action]]
    return " and ".join(", ".join(allowed).rsplit(", ", 1)) if allowed else "administrators"


def _log_line(operation_id: int, message: str, level: str = OperationLogLine.Level.INFO) -> None:
    OperationLogLine.objects.create(operation_id=operation_id, level=level, message=redact(message))


def client_address(request: Any) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def operation_request(
    *,
    kind: str,
    target: str,
    actor: Actor | None,
    parameters: Mapping[str, Any] | None = None,
    address: str | None = None,
    scope: str = "",
    scope_exclusive: bool = False,
) -> Operation:
    """Create a queued operation and its audit entry atomically; enqueue it once committed.

    Raises PermissionDenied (audited as refused) or OperationConflict when the target already
    has an active exclusive operation — decided by the database's partial unique index, so two
    simultaneous requests yield exactly one operation.

    `scope` (a cluster's target) nests targets: an operation with `scope_exclusive` (failover, rebuild, replace, a
    physical backup) needs no other active one in the scope, whatever its kind; one without it (a logical backup, a
    restore into a database, a drill) needs no exclusive one there. ScopeConflict says what runs and since when.
    The scope's row is locked for the look and the insert, so two requests cannot both pass.
    """
    spec = get_kind(kind)
    params = dict(parameters or {})
    audit = partial(
        audit_record, actor=actor, action=f"operation.{kind}", target=target, parameters=params, address=address
    )
    if actor is not None:
        try:
            require(actor, spec.action)
        except PermissionDenied as exc:
            audit(outcome=AuditEntry.Outcome.REFUSED, detail=str(exc))
            raise
    try:
        with transaction.atomic():
            if scope:
                _scope_claim(scope, exclusive=scope_exclusive)
            operation = Operation.objects.create(
                kind=kind,
                target=target,
                exclusive=spec.exclusive,
                scope=scope,
                scope_exclusive=scope_exclusive,
                parameters=params,
                requested_by=actor if actor is not None and actor.is_authenticated else None,
                requested_from=address,
            )
            audit(outcome=AuditEntry.Outcome.ACCEPTED, operation=operation, detail=f"{spec.label} queued")
            task_send_on_commit(EXECUTE_TASK, args=[operation.pk], queue=spec.queue)
    except ScopeConflict as held:
        audit(outcome=AuditEntry.Outcome.REFUSED, detail=str(held))
        raise
    except IntegrityError as exc:
        if "one_active_operation_per_target" not in str(exc):
            raise
        existing = Operation.objects.filter(target=target, exclusive=True, status__in=Operation.ACTIVE).first()
        conflict = OperationConflict(existing, target)
        audit(outcome=AuditEntry.Outcome.REFUSED, detail=str(conflict))
        raise conflict from None
    return operation


def _scope_claim(scope: str, *, exclusive: bool) -> None:
    """Inside the requester's transaction: lock the scope's row, then refuse if what runs there is in the way."""
    OperationScope.objects.get_or_create(name=scope)  # a unique name: a racing creator's row is the same row
    OperationScope.objects.select_for_update().get(name=scope)
    active = Operation.objects.filter(scope=scope, status__in=Operation.ACTIVE)
    blocking = active if exclusive else active.filter(scope_exclusive=True)
    if existing := blocking.order_by("created_at").first():
        raise ScopeConflict(existing, scope)


def operation_unqueued(operation: Operation) -> str:
    """Why a queued operation has not reached a worker: the broker did not take it yet ("" when it did)."""
    message = operation.waiting_for_queue
    if message is None:
        return ""
    return (
        "Queued, but the task queue (Redis) is unreachable: it will start when the queue is back "
        f"({message.last_error or 'no answer'})."
    )


def _finish(
    operation_id: int,
    status: str,
    *,
    error: str = "",
    result: Mapping[str, Any] | None = None,
    from_status: str = Status.RUNNING,
    only_if: Q | None = None,
) -> bool:
    """Move an operation to its final state (log line, audit entry), unless someone already did.

    `only_if` narrows the claim further (the reaper: only while the heartbeat is still stale)."""
    error = redact(error)
    values: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "error": error[:10000]}
    if result is not None:
        values["result"] = redact_mapping(dict(result))
    if status == Status.SUCCEEDED:
        values["progress"] = 100
    claim = Operation.objects.filter(pk=operation_id, status=from_status)
    changed = (claim.filter(only_if) if only_if is not None else claim).update(**values)
    if changed:
        _log_line(
            operation_id,
            f"Operation {status}" + (f": {error}" if error else "."),
            OperationLogLine.Level.INFO if status == Status.SUCCEEDED else OperationLogLine.Level.ERROR,
        )
        operation = Operation.objects.get(pk=operation_id)
        audit_record(
            actor=None,
            action=f"operation.{operation.kind}.finished",
            target=operation.target,
            outcome=AuditEntry.Outcome.SUCCESS if status == Status.SUCCEEDED else AuditEntry.Outcome.FAILED,
            detail=error or status,
            operation=operation,
        )
    return bool(changed)


class _Heartbeat(threading.Thread):
    """Touches `heartbeat_at` while the runner works, even inside a long blocking call, and writes
    the progress that other threads noted (at most a second late)."""

    def __init__(self, context: OperationContext) -> None:
        super().__init__(name=f"heartbeat-{context.operation.pk}", daemon=True)
        self.context = context
        self.operation_id = context.operation.pk
        self.stopped = threading.Event()

    def run(self) -> None:
        last_beat = 0.0
        try:
            while not self.stopped.wait(min(1.0, settings.OPERATION_HEARTBEAT_INTERVAL)):
                self.context.flush_pending_progress()
                if time.monotonic() - last_beat >= settings.OPERATION_HEARTBEAT_INTERVAL:
                    Operation.objects.filter(pk=self.operation_id, status=Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                    last_beat = time.monotonic()
        except Exception:
            logger.exception("heartbeat failed", extra={"operation_id": self.operation_id})
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def operation_execute(*, operation_id: int) -> Operation | None:
    """Run a queued operation in this worker. Returns None when it was not ours to run."""
    now = timezone.now()
    claimed = Operation.objects.filter(pk=operation_id, status=Status.QUEUED).update(
        status=Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    if not claimed:
        logger.info("operation already claimed, cancelled or finished", extra={"operation_id": operation_id})
        return None
    operation = Operation.objects.get(pk=operation_id)
    spec = get_kind(operation.kind)
    token = current_operation_id.set(operation.pk)
    context = OperationContext(operation=operation)
    heartbeat = _Heartbeat(context)
    heartbeat.start()
    context.log(f"{spec.label} started on {operation.worker}.")
    try:
        result = _run_with_retries(spec, context)
    except OperationCancelled:
        context.log("Cancelled at a safe point.", level=OperationLogLine.Level.WARNING)
        _finish(operation.pk, Status.CANCELLED, error="Cancelled by request")
        _cleanup(spec, operation)
    except Exception as exc:
        logger.exception("operation failed")
        _finish(operation.pk, Status.FAILED, error=_describe(exc))
        _cleanup(spec, operation)
    else:
        if not _finish(operation.pk, Status.SUCCEEDED, result=result or {}):
            logger.warning("operation finished after it had been ended by someone else (reaper?)")
    finally:
        heartbeat.stop()
        current_operation_id.reset(token)
    operation.refresh_from_db()
    return operation


def _run_with_retries(spec: OperationKind, context: OperationContext) -> Mapping[str, Any] | None:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        context.log(
            f"Attempt {state.attempt_number} of {spec.max_attempts} failed: {_describe(exc)}. Retrying in {wait:.1f} s.",
            level=OperationLogLine.Level.WARNING,
        )
        Operation.objects.filter(pk=context.operation.pk).update(attempts=F("attempts") + 1)
        context.attempt = state.attempt_number + 1

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(spec.transient_errors)
        if spec.transient_errors
        else tenacity.retry_never,
        stop=tenacity.stop_after_attempt(spec.max_attempts),
        wait=tenacity.wait_exponential(multiplier=spec.backoff_initial, max=spec.backoff_max),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(spec.run, context)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0] if len(text) > 500 else text


def _cleanup(spec: OperationKind, operation: Operation) -> None:
    """Run the kind's clean-up once the operation has its final state and error (it may record them)."""
    if spec.cleanup is None:
        return
    operation.refresh_from_db()
    try:
        spec.cleanup(operation)
        OperationLogLine.objects.create(operation=operation, message="Clean-up done.")
    except Exception as exc:
        logger.exception("clean-up failed")
        _log_line(operation.pk, f"Clean-up failed: {_describe(exc)}", OperationLogLine.Level.ERROR)


def operation_cancel(*, operation_id: int, actor: Actor, address: str | None = None) -> Operation:
    """Cancel a queued operation now, or ask a running cancellable one to stop at its next checkpoint."""
    operation = Operation.objects.get(pk=operation_id)
    audit = partial(
        audit_record,
        actor=actor,
        action="operation.cancel",
        target=operation.target,
        address=address,
        operation=operation,
    )
    own = operation.requested_by_id is not None and operation.requested_by_id == actor.pk
    if not (own or user_can(actor, Action.CANCEL_OPERATION)):
        audit(outcome=AuditEntry.Outcome.REFUSED, detail="not allowed")
        require(actor, Action.CANCEL_OPERATION)
    if _finish(operation.pk, Status.CANCELLED, error="Cancelled before it started", from_status=Status.QUEUED):
        audit(outcome=AuditEntry.Outcome.SUCCESS, detail="cancelled while queued")
    elif operation.status == Status.RUNNING and get_kind(operation.kind).cancellable_while_running:
        Operation.objects.filter(pk=operation.pk, status=Status.RUNNING).update(cancel_requested=True)
        OperationLogLine.objects.create(
            operation=operation, level="warning", message=f"Cancellation requested by {actor.get_username()}."
        )
        audit(outcome=AuditEntry.Outcome.ACCEPTED, detail="cancellation requested while running")
    else:
        operation.refresh_from_db()
        reason = (
            "it is already running and cannot be stopped safely at this point"
            if operation.status == Status.RUNNING
            else f"it has already {operation.status}"
        )
        audit(outcome=AuditEntry.Outcome.REFUSED, detail=reason)
        raise OperationError(f"Operation #{operation.pk} cannot be cancelled: {reason}.")
    operation.refresh_from_db()
    return operation


def operations_reap(*, now: Any = None) -> list[int]:
    """Fail running operations whose heartbeat is stale ("worker lost") and clean up after them."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OPERATION_HEARTBEAT_TIMEOUT)
    reaped: list[int] = []
    for operation in Operation.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff):
        last = timezone.localtime(operation.heartbeat_at).strftime("%H:%M:%S") if operation.heartbeat_at else "never"
        error = f"Worker lost: no heartbeat since {last} (worker {operation.worker or 'unknown'})"
        if not _finish(operation.pk, Status.FAILED, error=error, only_if=Q(heartbeat_at__lt=cutoff)):
            continue
        reaped.append(operation.pk)
        try:
            spec = get_kind(operation.kind)
        except OperationError:
            continue
        _cleanup(spec, operation)
    return reaped
