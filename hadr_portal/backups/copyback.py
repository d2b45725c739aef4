"""Copy tables back: from a point-in-time restore's scratch instance into the live database (DBA).

The usual repair after "someone deleted rows": the scratch instance, paused at the chosen point, still has them.
`copy_back_request` checks what can be checked at once (the restore has a ready scratch instance, the table names,
the filters through the SQL guard, the live database's name typed to confirm) and queues a `copy_back` operation,
one at a time per live database. Its run (adapters.pg.copyback) reads the scratch side as the cluster's read role
in a READ ONLY transaction and writes the live side as its admin role, in one transaction, after a safety copy of
each table into the schema `hadr_restore_<restore id>`. The counts land on the restore (`copy_back`), whose outcome
becomes "copied back"; the scratch instance stays until it is discarded, so another table can follow. A worker lost
mid-copy leaves nothing to clean up: its transaction dies with its connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.utils import timezone

from hadr_portal.adapters.pg.connection import PgConninfo, with_database
from hadr_portal.adapters.pg.copyback import (
    LOCK_TIMEOUT,
    MODES,
    CopyBackRefused,
    CopyMode,
    copy_back_plan,
    tables_copy_back,
)
from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operation_kinds import OperationContext, OperationError, OperationKind
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action, require

from .backup import cluster_conninfo
from .models import Restore
from .preflight import restore_server
from .restore_verify import as_reader
from .verification import MAX_SQL_LENGTH

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

COPY_BACK_KIND = "copy_back"
STATEMENT_TIMEOUT = 3600.0  # a big table takes its time; the lock timeout keeps it from waiting on others


def live_database(restore: Restore) -> str:
    """The database the tables go back into (the same name on the scratch instance: it is a copy of the cluster)."""
    return restore.destination_database or restore.policy.dbname


def copy_back_target(restore: Restore) -> str:
    """The operation's target: one copy-back at a time per live database."""
    return f"database:{restore.policy.cluster.name}/{live_database(restore)}"


def safety_schema(restore: Restore) -> str:
    return f"hadr_restore_{restore.pk}"


def copy_back_request(
    *,
    restore: Restore,
    tables: Sequence[str],
    mode: str,
    where: Mapping[str, str] | None,
    actor: Actor | None,
    confirm: str,
    address: str | None = None,
    statement_timeout: float = STATEMENT_TIMEOUT,
) -> Operation:
    """Queue copying `tables` (names as `table` or `schema.table`) from the restore's scratch instance into the live
    database: `mode` "missing" inserts the rows gone from it (by primary key; `where` may narrow each table's rows,
    `{table: condition}`, read on the scratch side only), "replace" makes each table what the scratch one holds.
    The DBA types the live database's name in `confirm`. Refusals are audited and raise OperationError
    (PermissionDenied for a role that may not restore)."""
    database = live_database(restore)
    parameters: dict[str, Any] = {
        "restore": restore.pk,
        "database": f"{restore.policy.cluster.name}/{database}",
        "tables": list(tables),
        "mode": mode,
        "where": dict(where or {}),
    }
    audit = partial(
        audit_record,
        actor=actor,
        action=f"operation.{COPY_BACK_KIND}",
        target=copy_back_target(restore),
        parameters=parameters,
        address=address,
        outcome=AuditEntry.Outcome.REFUSED,
    )
    try:
        if actor is not None:
            require(actor, Action.RESTORE)
        parameters |= _checked(restore, tables, mode, where, confirm)
    except (PermissionDenied, OperationError) as exc:
        audit(detail=str(exc))
        raise
    return operation_request(
        kind=COPY_BACK_KIND,
        target=copy_back_target(restore),
        scope=restore.policy.cluster.target,
        actor=actor,
        address=address,
        parameters={**parameters, "statement_timeout": statement_timeout},
    )


def _checked(
    restore: Restore, tables: Sequence[str], mode: str, where: Mapping[str, str] | None, confirm: str
) -> dict[str, Any]:
    """The request's tables (as `schema.table`) and filters, or OperationError saying what is wrong."""
    if refusal := _scratch_refusal(restore):
        raise OperationError(refusal)
    if mode not in MODES:
        raise OperationError("Choose how to copy: missing rows only, or replace the whole tables.")
    names = [name for name in (str(table).strip() for table in tables) if name]
    if not names:
        raise OperationError("Choose at least one table to copy back.")
    for table, expression in (where or {}).items():
        if len(expression) > MAX_SQL_LENGTH:
            raise OperationError(f"The filter for {table} is longer than {MAX_SQL_LENGTH} characters.")
    try:
        plan = copy_back_plan(names, mode=mode, where=where)
    except CopyBackRefused as exc:
        raise OperationError(f"Refused: {exc}.") from None
    database = live_database(restore)
    if confirm.strip() != database:
        raise OperationError(f"Type the live database's name, {database}, to copy tables back into it.")
    return {"tables": list(plan), "where": {table: expression for table, expression in plan.items() if expression}}


def _scratch_refusal(restore: Restore) -> str:
    """Why the restore has no scratch instance to copy from now, or "" when it has."""
    if restore.destination != Restore.Destination.INSTANCE:
        return (
            f"Restore #{restore.pk} did not go into a scratch instance: tables are copied back from a point-in-time "
            "restore's scratch instance."
        )
    if restore.status != Restore.Status.READY:
        return (
            f"Restore #{restore.pk} is {restore.get_status_display().lower()}: tables can be copied back once its "
            "scratch instance is ready."
        )
    if restore.verified_at is None:
        return f"Restore #{restore.pk}'s scratch instance is still being verified: copy back once it passed."
    if not restore.has_scratch_instance:
        return (
            f"Restore #{restore.pk}'s scratch instance has been stopped and removed: restore to the point again to "
            "copy from it."
        )
    return ""


def scratch_reader(restore: Restore) -> PgConninfo:
    """The scratch instance's copy of the live database, as the cluster's read role (the filters are user-written)."""
    return as_reader(restore, with_database(restore_server(restore), live_database(restore)))


def copy_back_run(context: OperationContext) -> Mapping[str, Any]:
    restore = Restore.objects.select_related("policy__cluster", "backup").get(pk=context.parameters["restore"])
    if refusal := _scratch_refusal(restore):  # discarded, or expired, since the request
        raise OperationError(refusal)
    parameters = context.parameters
    tables, where = list(parameters["tables"]), dict(parameters.get("where") or {})
    mode: CopyMode = "replace" if parameters["mode"] == "replace" else "missing"
    source, live = scratch_reader(restore), cluster_conninfo(restore.policy.cluster, live_database(restore))
    schema = safety_schema(restore)
    point = timezone.localtime(restore.recovered_to).isoformat(timespec="seconds") if restore.recovered_to else ""
    context.progress(5, "Copying tables back")
    context.log(
        f"Copying {', '.join(tables)} from the scratch instance 127.0.0.1:{restore.port}"
        + (f" (as it was at {point})" if point else "")
        + f" into {parameters['database']} on {live.host}:{live.port}: "
        + ("the missing rows only, by primary key" if mode == "missing" else "replacing the tables' contents")
        + "".join(f"; {table} WHERE {expression}" for table, expression in where.items())
        + f". Safety copies go to the schema {schema}; all in one transaction. Locks are waited for at most "
        f"{LOCK_TIMEOUT:g} s, so the copy never hangs behind the application."
    )
    copies = tables_copy_back(
        source,
        live,
        tables=tables,
        mode=mode,
        where=where,
        safety_schema=schema,
        statement_timeout=float(parameters.get("statement_timeout") or STATEMENT_TIMEOUT),
        on_step=context.log,
    )
    for copy in copies:
        context.log(
            f"{copy.table}: {copy.rows_before} rows before, {copy.rows_copied} copied back "
            f"(of {copy.rows_read} read), {copy.rows_after} after; the rows before are kept in {copy.safety_table}."
        )
    record: dict[str, Any] = {
        "tables": tables,
        "mode": mode,
        "where": where,
        "safety_schema": schema,
        "counts": [copy.as_data() for copy in copies],
        "operation": context.operation.pk,
        "at": timezone.now().isoformat(),
    }
    previous = dict(restore.copy_back or {})
    if previous:  # an earlier copy-back from the same scratch instance stays on the record
        record["earlier"] = [*previous.pop("earlier", []), previous]
    Restore.objects.filter(pk=restore.pk).update(copy_back=record, outcome=Restore.Outcome.COPIED_BACK)
    context.log("Copied back and committed. The scratch instance keeps running until it is discarded.")
    return {key: value for key, value in record.items() if key != "earlier"}


COPY_BACK = OperationKind(
    name=COPY_BACK_KIND,
    label="Copy tables back",
    action=Action.RESTORE,
    run=copy_back_run,
    queue="ops",
)
