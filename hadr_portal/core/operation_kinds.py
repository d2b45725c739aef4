"""What an app writes to add a kind of operation: the `OperationKind` it registers, the `OperationContext` its
runner is handed, and the errors a request or a runner may meet.

The app registers its kind in `registry.operation_kinds` from its ready(): which permission it needs, which queue
runs it, whether it is exclusive per target, which errors are transient (retried with exponential backoff), and
how to clean up after a failure. The services in `core.operations` request, run, cancel and reap every kind the
same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from .models import Operation, OperationLogLine
from .permissions import Action
from .redaction import redact

# A runner's log lines go to the same logger as the services' that run it: one logger for every operation.
logger = logging.getLogger("hadr_portal.core.operations")


class OperationError(Exception):
    """A request about an operation that cannot be honoured; the message is for the operator."""


class OperationConflict(OperationError):
    """Another operation on the same target is already queued or running."""

    def __init__(self, existing: Operation | None, target: str) -> None:
        self.existing = existing
        which = f" (#{existing.pk}, {existing.get_status_display().lower()})" if existing else ""
        super().__init__(f"Another operation on {target} is already in progress{which}. Wait for it to finish.")


class ScopeConflict(OperationConflict):
    """A destructive operation holds the scope (a cluster), or one runs there and this one needs it alone."""

    def __init__(self, existing: Operation, scope: str) -> None:
        self.existing = existing
        since = existing.started_at or existing.created_at
        OperationError.__init__(
            self,
            f"{existing.kind_label} #{existing.pk} on {existing.target} has been "
            f"{existing.get_status_display().lower()} since {since:%Y-%m-%d %H:%M:%S %Z}: one destructive operation "
            f"per cluster at a time ({scope}). Wait for it to finish.",
        )


class OperationCancelled(Exception):
    """Raised inside a runner at a checkpoint once cancellation was requested."""


@dataclass(frozen=True)
class OperationKind:
    """How one kind of operation is run. Registered by the app that owns it (`registry.operation_kinds`)."""

    name: str
    label: str
    action: Action
    run: Callable[[OperationContext], Mapping[str, Any] | None]
    queue: str = "ops"
    exclusive: bool = True
    cancellable_while_running: bool = False
    transient_errors: tuple[type[BaseException], ...] = ()
    max_attempts: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    cleanup: Callable[[Operation], None] | None = None


@dataclass
class OperationContext:
    """What a runner may do with its operation: log, report progress, honour cancellation."""

    operation: Operation
    attempt: int = 1
    pending_progress: tuple[int, str] | None = field(default=None, repr=False)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.operation.parameters)

    def log(self, message: str, *, level: str = OperationLogLine.Level.INFO) -> None:
        message = redact(message)
        OperationLogLine.objects.create(operation_id=self.operation.pk, level=level, message=message)
        logger.log(logging.WARNING if level != "info" else logging.INFO, message)

    def progress(self, percent: int, message: str = "") -> None:
        """Record progress. From another thread (a streaming callback), it is only noted here and
        written by the heartbeat thread: Django connections opened in passing threads are never closed."""
        percent = max(0, min(100, int(percent)))
        if threading.current_thread() is not threading.main_thread():
            self.pending_progress = (percent, message[:300])
            return
        self._write_progress(percent, message[:300])

    def _write_progress(self, percent: int, message: str) -> None:
        Operation.objects.filter(pk=self.operation.pk, status=Operation.Status.RUNNING).update(
            progress=percent, progress_message=redact(message), heartbeat_at=timezone.now()
        )

    def flush_pending_progress(self) -> None:
        pending, self.pending_progress = self.pending_progress, None
        if pending is not None:
            self._write_progress(*pending)

    def checkpoint(self) -> None:
        """Stop here if someone asked to cancel (only for kinds cancellable while running)."""
        if Operation.objects.filter(pk=self.operation.pk, cancel_requested=True).exists():
            raise OperationCancelled
