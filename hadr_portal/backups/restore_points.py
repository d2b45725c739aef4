"""Restore points: a name in a cluster's WAL (`pg_create_restore_point` on its primary), made before a risky
change — a deploy, a migration, a hand-written UPDATE — so that a point-in-time restore can stop exactly there.

One service for every entry point (the Backups page, `manage.py restore_point`, `POST /api/restore-points`):
permission, a name PostgreSQL and the restore wizard can both use, a cluster whose WAL is archived (a restore
point that was never archived can never be recovered to), and its primary reached as the backup role. The name is
reserved in the portal's database before the primary is asked, so two requests for the same name make one
restore point and one clear refusal. Each attempt is audited.
"""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from hadr_portal.adapters.pg.archive import restore_point_create as primary_restore_point_create
from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.operations import client_address
from hadr_portal.core.permissions import Action, require
from hadr_portal.databases.models import Cluster, Node, Purpose
from hadr_portal.databases.topology import cluster_primary

from .models import BackupPolicy, RestorePoint
from .stanza import pgbackrest_policy

if TYPE_CHECKING:
    from datetime import datetime

    from django.http import HttpRequest

    from hadr_portal.core.permissions import Actor

NAME_MAX_LENGTH = RestorePoint._meta.get_field("name").max_length or 63
NOTE_MAX_LENGTH = RestorePoint._meta.get_field("note").max_length or 200
NAME_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{NAME_MAX_LENGTH}}}")
NAME_RULE = f"1 to {NAME_MAX_LENGTH} letters, digits, '.', '_', '-' or ':'"
# Restore points shown per cluster on the Backups page.
RECENT = 20


class RestorePointRefused(OperationError):
    """No restore point was made; the message says why and what to do."""


class RestorePointNameInvalid(RestorePointRefused):
    """The name (or the note) is not one the portal accepts."""


class RestorePointNameTaken(RestorePointRefused):
    """The cluster already has a restore point of that name: recovery to it would be ambiguous."""


class RestorePointNotRecoverable(RestorePointRefused):
    """The cluster's WAL is not archived by pgBackRest: nothing could ever recover to the point."""


class RestorePointPrimaryUnavailable(RestorePointRefused):
    """The cluster has no primary the portal can reach right now."""


class RestorePointFailed(RestorePointRefused):
    """The primary was reached and refused (a missing grant, an error of its own)."""


def restore_point_name_default(now: datetime | None = None) -> str:
    """What the Backups page proposes: `before-change-YYYYMMDD-HHMM`, in the portal's time zone."""
    return f"before-change-{timezone.localtime(now or timezone.now()):%Y%m%d-%H%M}"


def restore_point_create(
    *,
    cluster: Cluster,
    name: str,
    actor: Actor | None,
    source: str,
    note: str = "",
    request: HttpRequest | None = None,
) -> RestorePoint:
    """Create a restore point named `name` on the cluster's primary and record it. `actor=None` is the portal
    itself, or a deploy pipeline's token when `source` is "api" (audited as the actor "api").

    Raises PermissionDenied, or a RestorePointRefused subclass saying why nothing was made. On success the
    point's WAL has been switched, so pgBackRest archives it within seconds rather than at archive_timeout."""
    if source not in RestorePoint.Source.values:
        raise ValueError(f"unknown source {source!r}: one of {', '.join(RestorePoint.Source.values)}")
    name, note = name.strip(), note.strip()
    audit = partial(
        audit_record,
        actor=actor,
        action="restore_point.create",
        target=cluster.target,
        parameters={"name": name, "source": source, "note": note},
        address=client_address(request),
        system_actor="api" if source == RestorePoint.Source.API else "system",
    )
    try:
        if actor is not None:
            require(actor, Action.CREATE_RESTORE_POINT)
        _acceptable(cluster, name, note)
        node = _primary(cluster)
    except (PermissionDenied, RestorePointRefused) as exc:
        audit(outcome=AuditEntry.Outcome.REFUSED, detail=str(exc))
        raise
    address = node.address(Purpose.BACKUP)
    try:
        with transaction.atomic():
            # The row first: a concurrent request for the same name waits on the unique index, then is refused,
            # instead of making a second restore point of that name on the primary.
            point = RestorePoint.objects.create(
                cluster=cluster,
                name=name,
                source=source,
                note=note,
                requested_by=actor if actor is not None and actor.is_authenticated else None,
            )
            lsn = primary_restore_point_create(address.conninfo(), name)
            point.lsn, point.created_at = lsn, timezone.now()
            point.save(update_fields=["lsn", "created_at"])
            audit(outcome=AuditEntry.Outcome.SUCCESS, detail=f"restore point {name} at {lsn} on {node.name}")
    except IntegrityError as exc:
        if "restore_point_name_unique" not in str(exc):
            raise
        refusal = _taken(cluster, name)
        audit(outcome=AuditEntry.Outcome.REFUSED, detail=str(refusal))
        raise refusal from None
    except psycopg.Error as exc:
        failure = _failure(exc, cluster=cluster, node=node, user=address.user)
        audit(outcome=AuditEntry.Outcome.FAILED, detail=str(failure))
        raise failure from None
    return point


def _acceptable(cluster: Cluster, name: str, note: str) -> None:
    """Everything that can be refused without asking the primary."""
    if not NAME_PATTERN.fullmatch(name):
        shown = f"{name[:NAME_MAX_LENGTH]}…" if len(name) > NAME_MAX_LENGTH else name
        raise RestorePointNameInvalid(f"{shown!r} is not a restore point name: use {NAME_RULE}.")
    if len(note) > NOTE_MAX_LENGTH:
        raise RestorePointNameInvalid(f"The note is {len(note)} characters long; at most {NOTE_MAX_LENGTH} are kept.")
    if "\x00" in note:
        raise RestorePointNameInvalid("The note contains a NUL character, which cannot be stored.")
    if RestorePoint.objects.filter(cluster=cluster, name=name).exists():
        raise _taken(cluster, name)
    if pgbackrest_policy(cluster.pk) is None:
        raise RestorePointNotRecoverable(
            f"Cluster {cluster.name} has no WAL archive: a restore point there could never be recovered to. "
            "Give it a backup policy with engine pgbackrest, then run manage.py pitr_setup POLICY."
        )


def _taken(cluster: Cluster, name: str) -> RestorePointNameTaken:
    existing = RestorePoint.objects.filter(cluster=cluster, name=name).first()
    when = (
        f" (made {timezone.localtime(existing.created_at):%Y-%m-%d %H:%M:%S %Z} at {existing.lsn})" if existing else ""
    )
    return RestorePointNameTaken(
        f"Cluster {cluster.name} already has a restore point named {name!r}{when}: choose another name, so that "
        "recovering to it can only mean one point."
    )


def _primary(cluster: Cluster) -> Node:
    node = cluster_primary(cluster)
    if node is None:
        raise RestorePointPrimaryUnavailable(
            f"Cluster {cluster.name} has no known primary (no node reported being primary at the last check): "
            "see the Databases page, then try again."
        )
    if node.role in ("down", "unreachable"):
        raise RestorePointPrimaryUnavailable(
            f"The primary of cluster {cluster.name}, {node.name}, was {node.role} at the last check: a restore point "
            "needs it up."
        )
    return node


def _failure(exc: psycopg.Error, *, cluster: Cluster, node: Node, user: str) -> RestorePointRefused:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return RestorePointFailed(
            f"The backup role {user} may not create restore points on {node.name}: as a superuser, in database "
            f"{cluster.dbname}, GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO {user}."
        )
    if isinstance(exc, psycopg.errors.ObjectNotInPrerequisiteState):  # "recovery is in progress"
        return RestorePointPrimaryUnavailable(
            f"{node.name} is in recovery (a replica now?): a restore point can only be made on the primary of "
            f"cluster {cluster.name}. {reason}"
        )
    if isinstance(exc, psycopg.OperationalError):
        return RestorePointPrimaryUnavailable(
            f"Could not reach the primary of cluster {cluster.name}, {node.name} ({node.host}:{node.port}), as "
            f"{user}: {reason}"
        )
    return RestorePointFailed(f"{node.name} refused the restore point: {reason}")


def restore_point_sections(now: datetime | None = None) -> list[dict[str, Any]]:
    """For the Backups page: every cluster with a pgBackRest policy, its newest restore points and the name the
    form proposes."""
    default_name = restore_point_name_default(now)
    clusters = (
        Cluster.objects.filter(backup_policies__engine=BackupPolicy.Engine.PGBACKREST).distinct().order_by("name")
    )
    return [restore_point_section(cluster, default_name=default_name) for cluster in clusters]


def restore_point_section(cluster: Cluster, *, default_name: str | None = None, **extra: Any) -> dict[str, Any]:
    """One cluster's part of the page (`extra`: what the form just did: `error`, `created`, the typed values)."""
    points = list(cluster.restore_points.select_related("requested_by")[:RECENT])
    return {
        "cluster": cluster,
        "points": points,
        "name": default_name or restore_point_name_default(),
        "note": "",
        "name_rule": NAME_RULE,
        "name_max_length": NAME_MAX_LENGTH,
        "note_max_length": NOTE_MAX_LENGTH,
        **extra,
    }
