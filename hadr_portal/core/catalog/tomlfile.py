"""The catalog as TOML text and back: one `[[section]]` table per row, a section's children as
`[[section.child]]` right after their parent, nested tables (config, restart) inline on one line."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

import tomli_w

from hadr_portal.core import registry

from .report import CatalogError
from .section import CatalogSection

# The file's opening lines, the same for every catalog (two exports of one catalog are byte-identical).
HEADER = (
    "# HADR Portal catalog: clusters with their nodes, backup storage targets and policies,\n"
    "# services with their checks, alert channels, conversion funnels, emergency contacts and escalation lists.\n"
    "# Re-create them with `manage.py catalog import FILE`. Secrets are never written here:\n"
    "# password_env, access_key_env, secret_key_env and target_env name environment variables.\n"
)
PRIVATE_NOTE = "# This file contains push tokens (push-check URL keys, funnel API tokens): keep it private.\n"
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def catalog_load_toml(text: str) -> dict[str, Any]:
    """Parse a catalog file; a syntax error becomes a CatalogError naming the line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError([f"TOML syntax: {exc}"]) from None


def catalog_dump_toml(data: Mapping[str, Any]) -> str:
    """Catalog data as TOML, the sections in the file's order. Keeps the data's order within a section
    (`catalog_export()` sorts), so the same data always gives the same text."""
    sections: list[CatalogSection] = list(registry.catalog_sections)
    unknown = set(data) - {section.name for section in sections}
    if unknown:
        raise ValueError(f"Not catalog sections: {', '.join(sorted(unknown))}.")
    blocks = [HEADER + (PRIVATE_NOTE if _has_tokens(data, sections) else "")]
    for section in sections:
        child = section.children.name if section.children else None
        for entry in data.get(section.name, []):
            blocks.append(_toml_block(f"[[{section.name}]]", {k: v for k, v in entry.items() if k != child}))
            if child:
                blocks.extend(_toml_block(f"[[{section.name}.{child}]]", item) for item in entry.get(child) or [])
    return "\n".join(blocks)


def _has_tokens(data: Mapping[str, Any], sections: list[CatalogSection]) -> bool:
    """Whether any table or nested table holds a token (then the file is a secret and says so)."""
    for section in sections:
        for entry in data.get(section.name, []):
            nested = entry.get(section.children.name) or [] if section.children else []
            if "token" in entry or any("token" in item for item in nested):
                return True
    return False


def _toml_block(header: str, table: Mapping[str, Any]) -> str:
    lines = [header] + [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items() if value is not None]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    """One value on one line; tomli_w formats the scalars (escaping is its job, not ours)."""
    if isinstance(value, Mapping):
        # TOML has no null: a JSON null in a stored table means the same as the key being absent.
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if value is None:
        raise ValueError("TOML cannot represent null inside an array.")
    return tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")
