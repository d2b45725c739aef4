"""The catalog file's `[[contacts]]` (emergency contacts) and `[[escalation]]` (who is called, in order, for
each severity)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hadr_portal.core.catalog import (
    ARRAY,
    TEXT,
    CatalogSection,
    ImportContext,
    Key,
    Row,
    choose,
    read_table,
    unique,
)
from hadr_portal.core.permissions import Role

from .models import Contact, EscalationStep, Severity
from .selectors import escalation_list

ROLES = [role.value for role in Role]


class ContactSection(CatalogSection):
    name = "contacts"
    kind = "contact"
    model = Contact
    order = 70
    import_order = 70
    prune_order = 80  # after the escalation lists naming them
    keys = {
        "name": Key(TEXT, required=True),
        "roles": Key(ARRAY),
        "phone": Key(TEXT),
        "email": Key(TEXT),
        "webhook": Key(TEXT),
        "hours": Key(TEXT),
    }

    def values_check(self, values: dict[str, Any], bad: set[str], path: str, context: ImportContext) -> None:
        for role in values.get("roles", []):
            if role not in ROLES:
                context.problems.append(f"{path}.roles: unknown role {role!r}; expected {', '.join(Role)}.")
                bad.add("roles")


class EscalationSection(CatalogSection):
    """One list per severity, the contacts in the order they are called; a list in the file is the whole list.
    Not rows of a model of its own: each list is its severity's `EscalationStep`s."""

    name = "escalation"
    kind = "escalation"
    model = EscalationStep
    order = 80
    import_order = 80
    prune_order = 70
    keys = {"severity": Key(TEXT, required=True), "contacts": Key(ARRAY, required=True)}  # in order

    def export(self, *, include_tokens: bool) -> list[dict[str, Any]]:
        lists = {severity: [contact.name for contact in escalation_list(severity)] for severity in Severity.values}
        return [{"severity": severity, "contacts": names} for severity, names in lists.items() if names]

    def read(self, tables: Sequence[tuple[str, Any]], context: ImportContext) -> list[Row]:
        """Each list's contacts; every name must be a contact of this file or (already) of the database."""
        problems = context.problems
        known = set(context.sound_names("contacts")) | set(Contact.objects.values_list("name", flat=True))
        rows: list[Row] = []
        seen: dict[str, str] = {}
        for path, raw in tables:
            values, bad = read_table(raw, path, self.keys, problems)
            choose(values, bad, "severity", Severity.values, path, problems)
            if bad or not unique(values["severity"], path, seen, problems, what="severity"):
                continue
            for name in values["contacts"]:
                if name not in known:
                    problems.append(f"{path}.contacts: {name!r} is not a contact; add it to [[contacts]].")
            rows.append(Row(self.kind, values["severity"], None, path, extra={"contacts": values["contacts"]}))
        return rows

    def save(self, rows: list[Row], context: ImportContext) -> None:
        for row in rows:
            names = row.extra["contacts"]
            before = [contact.name for contact in escalation_list(row.name)]
            outcome = "unchanged" if before == names else "updated" if before else "created"
            getattr(context.report, outcome).append(row.label)
            if outcome != "unchanged":
                EscalationStep.objects.filter(severity=row.name).delete()
                contacts = {contact.name: contact for contact in Contact.objects.filter(name__in=names)}
                for position, name in enumerate(names, 1):
                    EscalationStep.objects.create(severity=row.name, position=position, contact=contacts[name])

    def prune(self, rows: list[Row], context: ImportContext) -> None:
        stale = EscalationStep.objects.exclude(severity__in=[row.name for row in rows])
        for severity in stale.order_by("severity").values_list("severity", flat=True).distinct():
            EscalationStep.objects.filter(severity=severity).delete()
            context.report.deleted.append(f"{self.kind} {severity}")


CATALOG_SECTIONS = (ContactSection(), EscalationSection())
