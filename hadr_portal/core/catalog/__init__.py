"""The catalog as code: every app's part of the setup (clusters, backups, services and their checks, alert
channels, funnels, contacts) as one TOML file, kept in git, that re-creates the whole setup after the
environment is lost.

- `catalog_export()` / `catalog_dump_toml()`  the catalog as data / as TOML, ordered by name, so two
                                              exports of the same catalog are byte-identical
- `catalog_load_toml()`                       TOML text to data; syntax errors name the line and column
- `catalog_import()`                          validate everything, then upsert by name in one transaction

Core knows no section: each app declares its own (`CatalogSection`, in its `catalog.py`) and registers them
in `core.registry.catalog_sections`; these functions iterate the registry.

Secrets never appear in the file: sections name environment variables instead. Tokens (push-check URL
keys, pushed funnels' API tokens) are written only on request, and an import without them keeps the
existing ones.
"""

from __future__ import annotations

from .export import catalog_export, catalog_export_summary
from .importing import catalog_import
from .report import CatalogError, ImportReport
from .rows import ImportContext, Row
from .section import CatalogSection, Keep, Reference
from .tables import (
    ARRAY,
    FLAG,
    NUMBER,
    TABLE,
    TEXT,
    WHOLE,
    Key,
    choose,
    json_storable,
    read_table,
    unique,
)
from .tomlfile import catalog_dump_toml, catalog_load_toml

__all__ = [
    "ARRAY",
    "FLAG",
    "NUMBER",
    "TABLE",
    "TEXT",
    "WHOLE",
    "CatalogError",
    "CatalogSection",
    "ImportContext",
    "ImportReport",
    "Keep",
    "Key",
    "Reference",
    "Row",
    "catalog_dump_toml",
    "catalog_export",
    "catalog_export_summary",
    "catalog_import",
    "catalog_load_toml",
    "choose",
    "json_storable",
    "read_table",
    "unique",
]
