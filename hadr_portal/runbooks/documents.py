"""The runbooks in the top-level `runbooks/`: Markdown with a small front matter, rendered for a page.

The front matter is the block between the first two `---` lines: `key: value` pairs, where a value in
brackets is a list (`services: [a, b]`). Required: title, scenario, role (a portal role), services,
actions (permission names, or kinds of operation). The body is Markdown (tables, fenced code with
highlighting, a table of contents), rendered and then sanitised (nh3), since a runbook is edited by
people, not by the portal. Two additions, read before Markdown sees the text:

- an **action block**, a line of its own: `[[action: restart_service]]` or `[[action: run_backup demo-db-primary]]`
  (one of BLOCK_ACTIONS, optionally the service it acts on; without one, the incident's service, or on the
  runbook's own page each service of the front matter) — rendered as a button by runbooks/actions.py;
- a **checklist step**, a list item starting with `[ ]`: ticked on an incident's page, kept on the incident.

A runbook that cannot be read is still returned, with `problems` saying why: the index shows it as broken.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from pathlib import Path

import markdown
import nh3
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

from hadr_portal.core import registry
from hadr_portal.core.permissions import Action, Role

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
BLOCK_ACTIONS = {
    Action.RESTART_SERVICE.value: "Restart",
    Action.RUN_BACKUP.value: "Back up now",
    Action.RESTORE.value: "Open the restore wizard",
    Action.FAILOVER.value: "Fail over",
}
BLOCK = re.compile(r"^[ \t]*\[\[action:[ \t]*([a-z_]+)(?:[ \t]+([a-z0-9][a-z0-9-]*))?[ \t]*\]\][ \t]*$")
PLACEHOLDER = "HADRACTIONBLOCK{}"
SEGMENT = re.compile(r"<p>HADRACTIONBLOCK(\d+)</p>|(<li>(?:\s*<p>)?)\[( |x|X)\][ \t]*")
STEP_END = re.compile(r"</li>|<ul>|<ol>")
TAG = re.compile(r"<[^>]+>")
REQUIRED = ("title", "scenario", "role", "services", "actions")
LISTS = ("services", "actions")
# Beyond nh3's defaults: highlighting classes and heading anchors (the table of contents links to them).
ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    **{tag: {"class"} for tag in ("span", "div", "code", "pre")},
    **{f"h{level}": {"id"} for level in range(1, 7)},
}


@dataclass(frozen=True)
class ActionBlock:
    """`[[action: ACTION [SERVICE]]]`: a button; `service` empty means "this incident's service"."""

    action: str
    service: str
    line: int

    @property
    def label(self) -> str:
        return BLOCK_ACTIONS.get(self.action, self.action)


@dataclass(frozen=True)
class ChecklistStep:
    """A `[ ]` list item; `number` (from 1, in document order) is how an incident keeps its tick."""

    number: int
    done_in_text: bool
    text: str = ""


Segment = SafeString | ActionBlock | ChecklistStep


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    meta: dict[str, str | list[str]] = field(default_factory=dict)
    html: SafeString = field(default_factory=lambda: mark_safe(""))
    segments: tuple[Segment, ...] = ()
    toc: SafeString = field(default_factory=lambda: mark_safe(""))
    problems: tuple[str, ...] = ()
    text: str = ""

    @property
    def path(self) -> str:
        return f"runbooks/{self.name}.md"

    @property
    def broken(self) -> bool:
        return bool(self.problems)

    @property
    def scenario(self) -> str:
        return str(self.meta.get("scenario") or "")

    @property
    def role(self) -> str:
        return str(self.meta.get("role") or "")

    @property
    def services(self) -> list[str]:
        value = self.meta.get("services")
        return list(value) if isinstance(value, list) else []

    @property
    def actions(self) -> list[str]:
        value = self.meta.get("actions")
        return list(value) if isinstance(value, list) else []

    @property
    def blocks(self) -> list[ActionBlock]:
        return [segment for segment in self.segments if isinstance(segment, ActionBlock)]

    @property
    def steps(self) -> list[ChecklistStep]:
        return [segment for segment in self.segments if isinstance(segment, ChecklistStep)]


def runbooks_directory() -> Path:
    return Path(settings.BASE_DIR) / "runbooks"


def runbook_load(name: str) -> Runbook | None:
    """The runbook `runbooks/<name>.md`, or None when there is none by that name."""
    if not NAME.match(name):
        return None
    path = runbooks_directory() / f"{name}.md"
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Runbook(name=name, title=name, problems=(f"cannot be read (not UTF-8?): {exc}",))
    return runbook_parse(name, text)


def runbooks_all() -> list[Runbook]:
    """Every runbook, broken ones included, by title."""
    names = sorted(path.stem for path in runbooks_directory().glob("*.md") if NAME.match(path.stem))
    loaded = [runbook_load(name) for name in names]
    return sorted((runbook for runbook in loaded if runbook), key=lambda runbook: runbook.title.lower())


def runbook_parse(name: str, text: str) -> Runbook:
    """Front matter checked, body rendered and sanitised, action blocks and checklist steps found."""
    meta, body, problems = front_matter(text)
    body, blocks = _blocks_extract(
        body, first_line=len(text.splitlines()) - len(body.splitlines()) + 1, problems=problems
    )
    converter = _converter()
    clean = nh3.clean(converter.convert(body), attributes=ATTRIBUTES)
    toc = nh3.clean(getattr(converter, "toc", ""), attributes=ATTRIBUTES)
    segments = _segments(clean, blocks)
    return Runbook(
        name=name,
        title=str(meta.get("title") or name),
        meta=meta,
        html=_plain_html(segments),
        segments=tuple(segments),
        toc=mark_safe(toc),  # noqa: S308 - sanitised by nh3
        problems=tuple(problems),
        text=text,
    )


def _converter() -> markdown.Markdown:
    return markdown.Markdown(
        extensions=["tables", "fenced_code", "codehilite", "toc"],
        extension_configs={"codehilite": {"guess_lang": False}, "toc": {"baselevel": 2}},  # the page has the h1
    )


def markdown_html(text: str) -> SafeString:
    """Any Markdown people wrote (a postmortem), rendered like a runbook and sanitised."""
    return mark_safe(nh3.clean(_converter().convert(text), attributes=ATTRIBUTES))  # noqa: S308 - sanitised by nh3


def front_matter(text: str) -> tuple[dict[str, str | list[str]], str, list[str]]:
    """(front matter, body, problems) of a runbook; a file without front matter is all body (and broken)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in (line.strip() for line in lines[1:]):
        return {}, text, ["no front matter: the file must start with a `---` block (title, scenario, role, …)"]
    end = next(index for index, line in enumerate(lines[1:], 1) if line.strip() == "---")
    meta: dict[str, str | list[str]] = {}
    problems: list[str] = []
    for number, line in enumerate(lines[1:end], 2):
        key, colon, value = line.partition(":")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not colon or not key.strip():
            problems.append(f"front matter line {number}: {line.strip()!r} is not `key: value`")
            continue
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            meta[key.strip()] = [item.strip() for item in value[1:-1].split(",") if item.strip()]
        else:
            meta[key.strip()] = value
    problems += _meta_problems(meta)
    return meta, "\n".join(lines[end + 1 :]), problems


def _meta_problems(meta: dict[str, str | list[str]]) -> list[str]:
    problems = [f"front matter: `{key}` is missing" for key in REQUIRED if key not in meta]
    problems += [
        f"front matter: `{key}` must be a list, like [a, b]" for key in LISTS if isinstance(meta.get(key), str)
    ]
    role = meta.get("role")
    if isinstance(role, str) and role and not all(part.strip() in {r.value for r in Role} for part in role.split("+")):
        problems.append(f"front matter: unknown role {role!r} (roles: {', '.join(Role)})")
    known = {action.value for action in Action} | set(registry.operation_kinds.names())
    actions = meta.get("actions")
    for action in actions if isinstance(actions, list) else []:
        if action not in known:
            problems.append(f"front matter: unknown action {action!r}")
    return problems


def _blocks_extract(body: str, *, first_line: int, problems: list[str]) -> tuple[str, list[ActionBlock]]:
    """Replace each action block by a placeholder paragraph; a malformed or unknown one is a problem."""
    lines = body.split("\n")
    blocks: list[ActionBlock] = []
    fenced = False
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if fenced or "[[action" not in line:
            continue
        number = first_line + index
        match = BLOCK.match(line)
        if not match:
            problems.append(f"line {number}: action block {line.strip()!r} is not `[[action: ACTION [SERVICE]]]`")
            continue
        if match[1] not in BLOCK_ACTIONS:
            problems.append(f"line {number}: unknown action {match[1]!r} (known: {', '.join(BLOCK_ACTIONS)})")
            continue
        lines[index] = "\n" + PLACEHOLDER.format(len(blocks)) + "\n"
        blocks.append(ActionBlock(action=match[1], service=match[2] or "", line=number))
    return "\n".join(lines), blocks


def _segments(clean: str, blocks: list[ActionBlock]) -> list[Segment]:
    segments: list[Segment] = []
    position, step = 0, 0
    for match in SEGMENT.finditer(clean):
        segments.append(mark_safe(clean[position : match.start()]))  # noqa: S308 - sanitised by nh3
        if match[1] is not None:
            segments.append(blocks[int(match[1])])
        else:
            step += 1
            segments.append(mark_safe(match[2]))  # noqa: S308 - the `<li>` matched above
            words = STEP_END.split(clean[match.end() :], maxsplit=1)[0]
            text = html_lib.unescape(" ".join(TAG.sub("", words).split()))
            segments.append(ChecklistStep(number=step, done_in_text=match[3] != " ", text=text[:200]))
        position = match.end()
    segments.append(mark_safe(clean[position:]))  # noqa: S308
    return [segment for segment in segments if segment != ""]


def _plain_html(segments: list[Segment]) -> SafeString:
    """The whole runbook without buttons (the restore wizard shows it beside its steps)."""
    parts = []
    for segment in segments:
        if isinstance(segment, ActionBlock):
            where = f" ({html_lib.escape(segment.service)})" if segment.service else ""
            parts.append(f'<p class="action-note">→ {html_lib.escape(segment.label)}{where}</p>')
        elif isinstance(segment, ChecklistStep):
            parts.append("☑ " if segment.done_in_text else "☐ ")
        else:
            parts.append(str(segment))
    return mark_safe("".join(parts))  # noqa: S308 - sanitised segments and escaped labels
