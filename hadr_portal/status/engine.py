"""The check engine: pick due checks, probe them concurrently, record results, move states.

- `checks_claim_due()`   atomically takes the checks that are due (SKIP LOCKED: ticks never overlap)
- `checks_run()`         probes in a thread pool; results are recorded as each probe finishes,
                         so one hanging target delays nobody
- `check_record()`       result row, consecutive-failure count, check state, service state,
                         transition and alerts — one transaction, the service row locked
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DurationField, ExpressionWrapper, F
from django.utils import timezone

from hadr_portal.adapters.probes import ProbeResult
from hadr_portal.databases.models import Node
from hadr_portal.databases.topology import node_record

from .models import SEVERITY, Check, CheckResult, Service, State, Transition
from .probing import Probe, probe_for, unprobed_evaluate
from .signals import transition_committed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    checked: int
    seconds: float


def checks_claim_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Take due checks and push their next run one interval ahead, atomically."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Check.objects.select_for_update(skip_locked=True)
            .filter(enabled=True, next_run_at__lte=now)
            .order_by("next_run_at")
            .values_list("id", flat=True)[:limit]
        )
        Check.objects.filter(id__in=ids).update(
            next_run_at=now
            + ExpressionWrapper(F("interval_seconds") * timedelta(seconds=1), output_field=DurationField())
        )
    return ids


def checks_run(check_ids: list[int]) -> RunSummary:
    """Probe the given checks concurrently and record every result."""
    started = time.monotonic()
    checks = {
        c.pk: c for c in Check.objects.select_related("service", "node__cluster", "policy").filter(pk__in=check_ids)
    }
    pull: dict[int, Probe] = {}
    for check in checks.values():
        if not check.is_probed:
            result = unprobed_evaluate(check)
            if result is not None:
                check_record(check=check, result=result)
            continue
        try:
            pull[check.pk] = probe_for(check)
        except Exception as exc:  # a broken config (missing key, unknown node) is a failed check
            check_record(check=check, result=ProbeResult("down", f"check misconfigured: {exc!r}"))
    if pull:
        with ThreadPoolExecutor(
            max_workers=min(len(pull), settings.CHECK_CONCURRENCY), thread_name_prefix="probe"
        ) as pool:
            waiting = {pool.submit(probe): pk for pk, probe in pull.items()}
            while waiting:
                # Record what has finished in small batches, about every RECORD_EVERY seconds: results
                # appear quickly, and 500 fast checks cost a few transactions rather than 500.
                wait(waiting, timeout=RECORD_EVERY, return_when=FIRST_COMPLETED)
                time.sleep(RECORD_EVERY / 4)  # let near-simultaneous probes join this batch
                done = [f for f in waiting if f.done()]
                checks_record([(checks[waiting.pop(f)], _outcome(f)) for f in done])
    return RunSummary(checked=len(checks), seconds=time.monotonic() - started)


RECORD_EVERY = 0.2  # seconds between batches of recorded results


def _outcome(future: Future[ProbeResult]) -> ProbeResult:
    try:
        return future.result()
    except Exception as exc:  # probes should not raise; if one does, it is a failed check
        return ProbeResult("down", f"probe crashed: {exc!r}")


def check_record(*, check: Check, result: ProbeResult, at: datetime | None = None) -> CheckResult:
    """Store one result and apply it (see `checks_record`)."""
    return checks_record([(check, result)], at=at)[0]


def checks_record(results: list[tuple[Check, ProbeResult]], *, at: datetime | None = None) -> list[CheckResult]:
    """Store results and apply them, in one transaction: failures count towards `failures_before_down`;
    a check whose state changes moves its service's state (the service row locked only then)."""
    if not results:
        return []
    at = at or timezone.now()
    with transaction.atomic():
        locked = Check.objects.select_for_update().in_bulk([check.pk for check, _ in results])
        rows, changed = [], []
        for stale, result in results:
            check = locked[stale.pk]
            outcome = result.outcome if result.outcome in State.values else State.DOWN
            rows.append(
                CheckResult(
                    health_check=check,
                    at=at,
                    outcome=outcome,
                    latency_ms=result.latency_ms,
                    message=result.message[:500],
                    data=result.data,
                )
            )
            check.last_result_at, check.last_outcome, check.last_message = at, outcome, result.message[:500]
            check.last_latency_ms, check.last_data = result.latency_ms, result.data
            if outcome in (State.UP, State.UNKNOWN):
                check.consecutive_failures = 0
                new_state = outcome
            else:
                check.consecutive_failures += 1
                new_state = outcome if check.consecutive_failures >= check.failures_before_down else check.state
            if new_state != check.state:
                check.state, check.state_since = new_state, at
                changed.append(check)
            if check.kind == Check.Kind.POSTGRES and check.node_id is not None:
                _node_observe(check.node_id, result, at)
        CheckResult.objects.bulk_create(rows)
        _checks_update([locked[c.pk] for c, _ in results])
        for check in changed:  # the service can only change when one of its checks did
            service = Service.objects.select_for_update().get(pk=check.service_id)
            _service_apply(service, reason_check=check, at=at)
    return rows


CHECKS_UPDATE = """
UPDATE status_check AS c SET
    last_result_at = v.last_result_at, last_outcome = v.last_outcome, last_message = v.last_message,
    last_latency_ms = v.last_latency_ms, last_data = v.last_data::jsonb,
    consecutive_failures = v.consecutive_failures, state = v.state, state_since = v.state_since
FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::int[], %s::text[],
            %s::timestamptz[])
    AS v(id, last_result_at, last_outcome, last_message, last_latency_ms, last_data, consecutive_failures, state,
         state_since)
WHERE c.id = v.id
"""


def _checks_update(checks: list[Check]) -> None:
    """One statement for the whole batch (Django's bulk_update builds a CASE per field and row: far slower)."""
    columns = [
        [getattr(c, name) for c in checks]
        for name in (
            "pk",
            "last_result_at",
            "last_outcome",
            "last_message",
            "last_latency_ms",
            "last_data",
            "consecutive_failures",
            "state",
            "state_since",
        )
    ]
    columns[5] = [json.dumps(data) for data in columns[5]]
    with connection.cursor() as cursor:
        cursor.execute(CHECKS_UPDATE, columns)


def _node_observe(node_id: int, result: ProbeResult, at: datetime) -> None:
    """Keep the cluster's node view (Databases page) as fresh as its health check."""
    node = Node.objects.filter(pk=node_id).first()  # as it is now: a connectivity check may have just written it
    if node is not None:
        node_record(node, result, at=at)


def _service_apply(service: Service, *, reason_check: Check | None, at: datetime) -> Transition | None:
    """The service is as bad as its worst known check; a change is a Transition."""
    states = set(
        service.checks.filter(enabled=True).exclude(state=State.UNKNOWN).values_list("state", flat=True).distinct()
    )
    new_state = max(states, key=lambda s: SEVERITY[State(s)]) if states else State.UNKNOWN
    if new_state == service.state:
        return None
    culprit = reason_check
    if culprit is None or culprit.state != new_state:
        culprit = service.checks.filter(enabled=True, state=new_state).first() or culprit
    if new_state == State.UP:
        reason = "all checks up"
    elif culprit is None:
        reason = "no enabled check has a result"
    else:
        reason = f"{culprit.name}: {culprit.last_message}"
    transition = Transition.objects.create(
        service=service,
        health_check=culprit,
        at=at,
        from_state=service.state,
        to_state=new_state,
        reason=reason[:500],
        silenced=service.in_maintenance(at) is not None,
    )
    service.state, service.state_since, service.state_reason = new_state, at, reason[:300]
    service.save(update_fields=["state", "state_since", "state_reason"])
    logger.info("service %s: %s -> %s (%s)", service.name, transition.from_state, new_state, reason)
    transaction.on_commit(lambda: transition_committed.send(sender=Transition, transition=transition))
    return transition


def service_refresh(service: Service) -> Transition | None:
    """Recompute a service's state after its checks changed (disabled, deleted)."""
    with transaction.atomic():
        service = Service.objects.select_for_update().get(pk=service.pk)
        return _service_apply(service, reason_check=None, at=timezone.now())
