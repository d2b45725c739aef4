"""The whole catalog as plain data in the file's shape: every registered section, in the file's order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hadr_portal.core import registry
from hadr_portal.core.redaction import redact

from .section import CatalogSection


def catalog_export(*, include_tokens: bool = False) -> dict[str, Any]:
    """Every section's rows, each list ordered by name, so two exports of the same catalog are identical.

    Tokens are included only with `include_tokens`, and only those somebody uses (a section's
    `token_exported`). Every other string goes through `redact`: a credential that was typed into a URL, a
    description or a query never reaches the file.
    """
    sections: list[CatalogSection] = list(registry.catalog_sections)
    catalog = {section.name: section.export(include_tokens=include_tokens) for section in sections}
    redacted: dict[str, Any] = _redacted(catalog)
    return redacted


def catalog_export_summary(data: Mapping[str, Any]) -> str:
    """What an export holds, in words: "2 clusters, 1 storage targets, ... 3 services (5 checks), ..."."""
    sections: list[CatalogSection] = list(registry.catalog_sections)
    said = (section.summary(data.get(section.name, [])) for section in sections)
    return ", ".join(words for words in said if words)


def _redacted(value: Any, key: str = "") -> Any:
    """The export with every string redacted, but for the tokens asked for (`token` keys)."""
    if key == "token":
        return value
    if isinstance(value, Mapping):
        return {name: _redacted(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return redact(value) if isinstance(value, str) else value
