"""What an import carries from reading the file to saving it: one `Row` per table, and the `ImportContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .report import ImportReport


@dataclass
class Row:
    """One table of the file matched to its row (existing or new), already updated in memory, not saved."""

    kind: str
    name: str
    instance: Any
    path: str
    valid: bool = True
    changed: set[str] = field(default_factory=set)  # the fields the file changes
    children: list[Row] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # the rows it names (references), resolved once saved
    extra: dict[str, Any] = field(default_factory=dict)  # what a section's hooks carry to later steps
    saved: str | None = None  # once saved: created, updated or unchanged
    pruned: list[str] = field(default_factory=list)  # its children the import deleted

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def outcome(self) -> str:
        if self.instance.pk is None:
            return "created"
        return "updated" if self.changed else "unchanged"

    @property
    def sound(self) -> bool:
        """Valid with all its children: only then is it saved, and may another table name it."""
        return self.valid and all(child.sound for child in self.children)

    def take(self, name: str, value: Any) -> None:
        """Set one field from the file, remembering it if it differs from the database."""
        if getattr(self.instance, name) != value:
            setattr(self.instance, name, value)
            self.changed.add(name)


@dataclass
class ImportContext:
    """One import: its options, the problems found so far, the report, and every section's rows once read."""

    prune: bool
    now: datetime  # "run soon" for what the file changed
    report: ImportReport
    problems: list[str] = field(default_factory=list)
    rows: dict[str, list[Row]] = field(default_factory=dict)  # by section name, in import order
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)  # by section: token -> the path using it
    after_import: list[Callable[[], object]] = field(default_factory=list)  # once it is saved (never for a dry run)

    def sound_names(self, section: str) -> dict[str, bool]:
        """The names a section's tables give, each with whether that table will be saved."""
        return {row.name: row.sound for row in self.rows.get(section, [])}
