"""The runbooks in the top-level `runbooks/`: Markdown with a small front matter, rendered for a page.

The front matter is the block between the first two `---` lines: `key: value` pairs, where a value in
brackets is a list (`services: [a, b]`). The body is Markdown, rendered and then sanitised (nh3), since a
runbook is edited by people, not by the portal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import markdown
import nh3
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    meta: dict[str, str | list[str]] = field(default_factory=dict)
    html: SafeString = field(default_factory=lambda: mark_safe(""))

    @property
    def path(self) -> str:
        return f"runbooks/{self.name}.md"


def runbooks_directory() -> Path:
    return Path(settings.BASE_DIR) / "runbooks"


def runbook_load(name: str) -> Runbook | None:
    """The runbook `runbooks/<name>.md`, or None when there is none by that name."""
    if not NAME.match(name):
        return None
    path = runbooks_directory() / f"{name}.md"
    if not path.is_file():
        return None
    meta, body = front_matter(path.read_text(encoding="utf-8"))
    title = str(meta.get("title") or name)
    html = nh3.clean(markdown.markdown(body, extensions=["tables", "fenced_code"]))
    return Runbook(name=name, title=title, meta=meta, html=mark_safe(html))  # noqa: S308 - sanitised by nh3


def front_matter(text: str) -> tuple[dict[str, str | list[str]], str]:
    """(front matter, body) of a runbook; a file without front matter is all body."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in (line.strip() for line in lines[1:]):
        return {}, text
    end = next(index for index, line in enumerate(lines[1:], 1) if line.strip() == "---")
    meta: dict[str, str | list[str]] = {}
    for line in lines[1:end]:
        key, _, value = line.partition(":")
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            meta[key.strip()] = [item.strip() for item in value[1:-1].split(",") if item.strip()]
        else:
            meta[key.strip()] = value
    return meta, "\n".join(lines[end + 1 :])
