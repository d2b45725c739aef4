"""What an import says: every problem at once (nothing changed), or what it did."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class CatalogError(Exception):
    """A catalog file that cannot be imported; nothing was changed.

    `problems` holds every problem found, each as `"<path>: <message>"` where the path leads an
    operator to the line, e.g. `services[2] (onboarding-app).checks[0] (health).config.url`.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do), as `"<kind> <name>"` lines in the order it did it."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
        )
