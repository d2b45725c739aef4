"""Pre-checks' findings: what a check found before a risky action, and whether it stands in the way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

OK, WARNING, BLOCKER = "ok", "warning", "blocker"


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warning | blocker
    title: str
    detail: str = ""

    def as_data(self) -> dict[str, str]:
        return asdict(self)


def findings_from(data: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Findings as stored (JSON) back into Findings."""
    return [Finding(str(item["level"]), str(item["title"]), str(item.get("detail", ""))) for item in data]


def blockers(findings: Iterable[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.level == BLOCKER]
