"""A scratch instance waiting for the DBA: look (a read-only query box, the tables' row counts beside the live ones),
then decide — copy tables back (copyback.py), replace the cluster, or discard. One left alone is stopped after
HADR_SCRATCH_TTL_HOURS, with a warning an hour before (`scratch_expire_due`); the Databases page lists every one
the portal started and has not removed (`scratch_instances`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.pg.connection import with_database
from hadr_portal.adapters.readonly import ReadOnlyQueryError, read_only_answer, read_only_query
from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.permissions import Action, require

from .backup import cluster_conninfo
from .models import Restore
from .pitr import pitr_cleanup
from .preflight import restore_server
from .restore_verify import as_reader

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

logger = logging.getLogger(__name__)

SCRATCH_WARNING = timedelta(hours=1)
QUERY_ROWS = 200
QUERY_TIMEOUT = 30.0
_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND left(n.nspname, 3) <> 'pg_'
ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 30
"""
# Every table's exact count in one statement, each through query_to_xml (an identifier quoted by format's %I);
# a table the side does not have counts NULL.
_COUNTS = """
SELECT t.s, t.n, CASE WHEN to_regclass(format('%%I.%%I', t.s, t.n)) IS NULL THEN NULL ELSE
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %%I.%%I', t.s, t.n), false, true, '')))[1]
  ::text::bigint END
FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(s, n)
"""
COUNT_TIMEOUT = 60.0


@dataclass(frozen=True)
class QueryAnswer:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def copying_back(restore: Restore) -> Operation | None:
    """A copy-back from this scratch instance that has not ended: the instance must stay until it does."""
    return (
        Operation.objects.filter(kind="copy_back", status__in=Operation.ACTIVE, parameters__restore=restore.pk)
        .order_by("-pk")
        .first()
    )


def queryable(restore: Restore) -> bool:
    """The instance answers at its point (from the moment recovery paused, while its verification runs)."""
    return restore.status == Restore.Status.READY and restore.has_scratch_instance


def waiting(restore: Restore) -> bool:
    """It waits for a decision: queryable and verified (copy back and replace act only on a proved copy)."""
    return queryable(restore) and restore.verified_at is not None


def scratch_query(*, restore: Restore, actor: Actor | None, sql: str) -> QueryAnswer:
    """One read-only query on the scratch instance, under verification's rules: the SQL guard (one SELECT, no
    system catalogs, allowlisted functions), the cluster's read role (never a superuser), a read-only transaction
    with a statement timeout. ReadOnlyQueryError (in words) when refused or failed."""
    if actor is not None:
        require(actor, Action.RESTORE)
    if not queryable(restore):
        raise ReadOnlyQueryError(f"restore #{restore.pk} has no scratch instance waiting")
    sql = sql.strip().rstrip(";")
    if not sql:
        raise ReadOnlyQueryError("write a SELECT, e.g. SELECT count(*) FROM app_users")
    conninfo = as_reader(restore, with_database(restore_server(restore), restore.policy.dbname)).conninfo()
    wrapped = f"SELECT * FROM ({sql}) AS answer LIMIT {QUERY_ROWS + 1}"
    columns, rows = read_only_answer(
        conninfo=conninfo, sql=wrapped, timeout=QUERY_TIMEOUT, where="the scratch instance", guard="query"
    )
    return QueryAnswer(columns, rows[:QUERY_ROWS], len(rows) > QUERY_ROWS)


def table_counts(restore: Restore) -> list[dict[str, Any]]:
    """The largest tables of the restored database with their exact row counts, beside the live database's."""
    restored = as_reader(restore, with_database(restore_server(restore), restore.policy.dbname)).conninfo()
    live = as_reader(restore, cluster_conninfo(restore.policy.cluster, restore.policy.dbname)).conninfo()
    try:
        tables = read_only_query(conninfo=restored, sql=_TABLES, timeout=10, where="the scratch instance")
    except ReadOnlyQueryError as exc:
        return [{"table": "", "error": str(exc)}]
    counts: dict[tuple[str, str], dict[str, Any]] = {(s, n): {"table": f"{s}.{n}"} for s, n in tables}
    params = {"schemas": [s for s, _ in tables], "tables": [n for _, n in tables]}
    for side, conninfo, replica_only in (("restored", restored, True), ("live", live, False)):
        try:  # one statement per side, not one connection per table
            rows = read_only_query(
                conninfo=conninfo, sql=_COUNTS, params=params, timeout=COUNT_TIMEOUT, replica_only=replica_only
            )
        except ReadOnlyQueryError as exc:
            for row in counts.values():
                row[side], row[f"{side}_error"] = None, str(exc)
            continue
        for schema, name, count in rows:
            counts[(schema, name)][side] = count
    return list(counts.values())


def scratch_discard(*, restore: Restore, actor: Actor | None, confirm: str, address: str | None = None) -> Restore:
    """Stop and remove a scratch instance (typed confirmation: the restore's number), audited."""
    if actor is not None:
        require(actor, Action.RESTORE)
    if confirm.strip().lstrip("#") != str(restore.pk):
        raise OperationError(f"Type the restore's number, {restore.pk}, to discard its scratch instance.")
    with transaction.atomic():
        locked = Restore.objects.select_for_update().get(pk=restore.pk)
        if not locked.has_scratch_instance or locked.status != Restore.Status.READY:
            raise OperationError(f"Restore #{restore.pk} has no scratch instance waiting: nothing to discard.")
        if locked.verified_at is None and locked.operation and locked.operation.status == "running":
            raise OperationError(f"Restore #{restore.pk} is still being verified: discard it once that ends.")
        if busy := copying_back(locked):
            raise OperationError(
                f"Operation #{busy.pk} is copying tables back from it (since {timezone.localtime(busy.created_at):%H:%M:%S})"
                ": discard it once that ends."
            )
        pitr_cleanup(locked)
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.DONE,
            outcome=locked.outcome or Restore.Outcome.DISCARDED,
            finished_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            action="restore.discard",
            target=restore.operation_target,
            outcome=AuditEntry.Outcome.SUCCESS,
            address=address,
            parameters={"restore": restore.pk, "data_directory": locked.data_directory, "port": locked.port},
        )
    restore.refresh_from_db()
    return restore


def scratch_expire_due(*, now: datetime | None = None) -> tuple[int, int]:
    """Warn about scratch instances an hour before their time to live runs out, stop and remove those past it.
    Returns (warned, removed)."""
    now = now or timezone.now()
    waiting = Restore.objects.filter(status=Restore.Status.READY, scratch_removed_at=None).exclude(
        scratch_expires_at=None
    )
    warned = removed = 0
    for restore in waiting.filter(scratch_expires_at__lte=now + SCRATCH_WARNING, scratch_warned_at=None):
        Restore.objects.filter(pk=restore.pk).update(scratch_warned_at=now)
        logger.warning(
            "scratch instance of restore #%s (127.0.0.1:%s) is removed at %s unless a DBA decides",
            restore.pk,
            restore.port,
            restore.scratch_expires_at,
        )
        audit_record(
            actor=None,
            action="restore.scratch_warning",
            target=restore.operation_target,
            outcome=AuditEntry.Outcome.SUCCESS,
            parameters={"restore": restore.pk, "expires_at": str(restore.scratch_expires_at)},
        )
        warned += 1
    for restore in waiting.filter(scratch_expires_at__lte=now):
        pitr_cleanup(restore)
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.DONE, outcome=restore.outcome or Restore.Outcome.EXPIRED, finished_at=now
        )
        audit_record(
            actor=None,
            action="restore.scratch_expired",
            target=restore.operation_target,
            outcome=AuditEntry.Outcome.SUCCESS,
            parameters={"restore": restore.pk, "ttl_hours": settings.SCRATCH_TTL_HOURS},
        )
        removed += 1
    return warned, removed


def scratch_instances() -> list[Restore]:
    """Every scratch instance the portal started and has not removed (the Databases page lists them)."""
    return list(
        Restore.objects.filter(scratch_removed_at=None, work_created=True)
        .exclude(data_directory="")
        .select_related("policy__cluster", "backup")
        .order_by("-created_at")
    )
