"""Verifying what a restore produced: the policy's read-only queries (as the cluster's read role) and amcheck on the
B-tree indexes, side by side. Shared by logical restores, point-in-time restores and drills."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from django.utils import timezone

from hadr_portal.adapters.pg.connection import PgConninfo
from hadr_portal.adapters.pg.restore import RestoreFailed
from hadr_portal.adapters.pg.verify import amcheck_run, queries_run
from hadr_portal.core.operation_kinds import OperationContext
from hadr_portal.databases.models import Purpose

from .models import Restore
from .preflight import restore_cluster
from .verification import VerificationResult, verification_evaluate


def verify_restored(context: OperationContext, restore: Restore, restored: PgConninfo) -> None:
    """The policy's queries and amcheck against the restored database; RestoreFailed unless all pass."""
    context.progress(82, "Verifying the restored database")
    queries = restore.policy.verify or []
    backup = restore.backup
    assert backup is not None
    # the queries and amcheck read different things: side by side, on two connections
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="restore-verify") as pool:
        checking = pool.submit(amcheck_run, restored)
        outcomes = queries_run(as_reader(restore, restored), [query["sql"] for query in queries]) if queries else []
        amcheck = checking.result()
    results = [
        verification_evaluate(
            query["name"], query.get("expect", ""), outcome.value, outcome.error, backup_started=backup.started_at
        )
        for query, outcome in zip(queries, outcomes, strict=True)
    ]
    if not queries:
        context.log(
            "The policy has no verification queries (catalog key `verify`): only amcheck runs.", level="warning"
        )
    if not amcheck.available:
        results.append(VerificationResult("amcheck", True, "not available on this server: indexes not checked"))
    elif amcheck.failures:
        results.append(VerificationResult("amcheck", False, "; ".join(amcheck.failures)[:2000]))
    else:
        results.append(VerificationResult("amcheck", True, f"{amcheck.checked} B-tree indexes checked: no corruption"))
    for result in results:
        mark = "✔" if result.ok else "✖"
        context.log(f"{mark} {result.name}: {result.detail}", level="info" if result.ok else "error")
    now = timezone.now()
    failed = [result for result in results if not result.ok]
    Restore.objects.filter(pk=restore.pk).update(
        verification=[result.as_data() for result in results], verified_at=None if failed else now
    )
    if failed:
        raise RestoreFailed("Verification failed: " + ", ".join(result.name for result in failed))
    context.progress(92, "Verified")


def as_reader(restore: Restore, restored: PgConninfo) -> PgConninfo:
    """The restored database as the read role of the cluster it was restored into: the verification queries are
    user-written and never run as the admin account (a physical restore is a copy of the policy's cluster,
    its roles and passwords included)."""
    user, password = restore_cluster(restore).login(Purpose.READ)
    return replace(restored, user=user, password=password)
