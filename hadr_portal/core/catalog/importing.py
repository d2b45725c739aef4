"""Make the catalog match a file: every registered section, validated first, saved in one transaction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from hadr_portal.core import registry
from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Action, require

from .report import CatalogError, ImportReport
from .rows import ImportContext
from .section import CatalogSection
from .tables import describe, where

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor


def catalog_import(
    data: Mapping[str, Any],
    *,
    actor: Actor | None = None,
    address: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Make the catalog match `data` (the file's shape), upserting by name.

    Guarantees: every problem in the file is reported at once as a CatalogError and then nothing
    has changed; otherwise all changes commit in one transaction with one audit entry (none for a
    dry run, which rolls everything back). Importing the same data again changes nothing and
    reports everything unchanged. Rows absent from the file are deleted only with `prune`.
    `actor=None` is the portal itself (command line without --user, seeding).

    The steps, each over the sections in import order: read every table (nothing saved); save the early
    sections (`saved_early`: what the others are checked against, e.g. a postgres check names a node) and
    prune them (`prune_order`: a backup policy before the cluster it names); the checks that need those
    rows (`rows_check`); stop if there is any problem (everything rolls back); save and prune the others.
    """
    if actor is not None:
        _require_editor(actor, address, dry_run)
    sections: list[CatalogSection] = sorted(registry.catalog_sections, key=lambda section: section.import_order)
    report = ImportReport(dry_run=dry_run)
    context = ImportContext(prune=prune, now=timezone.now(), report=report)
    with transaction.atomic():
        tables = _tables(data, context.problems)
        for section in sections:
            context.rows[section.name] = section.read(tables[section.name], context)
        early = [section for section in sections if section.saved_early]
        _save(early, context)
        for section in sections:
            section.rows_check(context.rows[section.name], context)
        _stop_if_any(context.problems)
        _save([section for section in sections if not section.saved_early], context)
        _stop_if_any(context.problems)
        if dry_run:
            transaction.set_rollback(True)
        else:
            audit_record(
                actor=actor,
                action="catalog.import",
                target="catalog",
                outcome=AuditEntry.Outcome.SUCCESS,
                address=address,
                parameters={
                    "created": len(report.created),
                    "updated": len(report.updated),
                    "deleted": len(report.deleted),
                    "prune": prune,
                },
            )
    if not dry_run:
        for step in context.after_import:
            step()
    return report


def _save(sections: list[CatalogSection], context: ImportContext) -> None:
    for section in sections:
        section.save(context.rows[section.name], context)
    if context.prune:
        for section in sorted(sections, key=lambda section: section.prune_order):
            section.prune(context.rows[section.name], context)


def _tables(data: Any, problems: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """Each section's tables with their paths; unknown sections and non-arrays are problems."""
    names = registry.catalog_sections.names()
    found: dict[str, list[tuple[str, Any]]] = {name: [] for name in names}
    if not isinstance(data, Mapping):
        problems.append(f"catalog: expected a table of {', '.join(names)}, got {describe(data)}.")
        return found
    for key in data:
        if key not in names:
            problems.append(f"{key}: unknown section; expected {', '.join(names)}.")
    for name in names:
        tables = data.get(name, [])
        if not isinstance(tables, list):
            problems.append(f"{name}: expected an array of tables ([[{name}]]), got {describe(tables)}.")
            continue
        found[name] = [(where(name, index, raw), raw) for index, raw in enumerate(tables)]
    return found


def _stop_if_any(problems: list[str]) -> None:
    if problems:
        raise CatalogError(_in_file_order(problems))


def _in_file_order(problems: list[str]) -> list[str]:
    """Problems ordered as the tables they concern appear in an exported file (a table's own before its children's)."""
    names = registry.catalog_sections.names()

    def position(problem: str) -> tuple[int, list[int]]:
        section = re.match(r"[a-z_]*", problem)
        rank = names.index(section.group()) if section and section.group() in names else -1
        return rank, [int(index) for index in re.findall(r"\[(\d+)\]", problem.split(": ", 1)[0])]

    return sorted(problems, key=position)  # stable: within a table, the order they were found in


def _require_editor(actor: Actor, address: str | None, dry_run: bool) -> None:
    """Only catalog editors import; a refused real import is audited, like a refused operation."""
    try:
        require(actor, Action.EDIT_CATALOG)
    except PermissionDenied as exc:
        if not dry_run:
            audit_record(
                actor=actor,
                action="catalog.import",
                target="catalog",
                outcome=AuditEntry.Outcome.REFUSED,
                address=address,
                detail=str(exc),
            )
        raise
