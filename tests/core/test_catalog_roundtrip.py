"""The catalog file round-trips byte for byte: two golden files, written by `manage.py catalog export`.

- data/demo_catalog.toml  the demo catalog `seed_demo` imports (two demo nodes with their data directories, the
                          Patroni cluster demo-ha,
                          backups in /var/backups/hadr: logical, and pgBackRest's repository beside them)
- data/full_catalog.toml  every section and every optional key: node controllers of both kinds, a post-failover
                          hook, local and S3 storage, policies with drills and verification queries (a
                          pgBackRest one with its copy on S3), restart
                          tables, checks of every kind with push tokens, channels, funnels of every source,
                          contacts and escalation lists; exported with `--with-tokens`

Importing a file into an empty catalog and exporting it again gives the same text; importing it a second time
changes nothing. A change to these files is a change to the file format operators keep in git.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hadr_portal.core.catalog import catalog_dump_toml, catalog_export, catalog_import, catalog_load_toml
from hadr_portal.demo.catalog import demo_catalog

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
DEMO = DATA / "demo_catalog.toml"
FULL = DATA / "full_catalog.toml"
DEMO_ENV = {
    "HADR_DEMO_NODES": "primary=127.0.0.1:5441@/var/lib/hadr/pg/demo-primary,replica=127.0.0.1:5442@/var/lib/hadr/pg/demo-replica",
    "HADR_BACKUP_DIR": "/var/backups/hadr",
    "HADR_DEMO_HA_NODES": "ha1=127.0.0.1:5443,ha2=127.0.0.1:5444",
    "HADR_DEMO_HA_PATRONI_URLS": "http://127.0.0.1:8008,http://127.0.0.1:8009",
}


def exported(*, include_tokens: bool = False) -> str:
    return catalog_dump_toml(catalog_export(include_tokens=include_tokens))


@pytest.mark.parametrize(("golden", "include_tokens"), [(DEMO, False), (FULL, True)], ids=["demo", "full"])
def test_a_file_imported_into_an_empty_catalog_exports_byte_identical(golden: Path, include_tokens: bool) -> None:
    text = golden.read_text(encoding="utf-8")

    report = catalog_import(catalog_load_toml(text))

    assert report.updated == report.unchanged == report.deleted == []
    assert exported(include_tokens=include_tokens) == text


@pytest.mark.parametrize("golden", [DEMO, FULL], ids=["demo", "full"])
def test_importing_a_file_twice_changes_nothing_the_second_time(golden: Path) -> None:
    data = catalog_load_toml(golden.read_text(encoding="utf-8"))
    first = catalog_import(data)

    again = catalog_import(data, prune=True)

    assert again.created == again.updated == again.deleted == []
    assert again.unchanged == first.created


def test_the_demo_file_is_what_seed_demo_imports() -> None:
    catalog_import(demo_catalog(DEMO_ENV))
    assert exported() == DEMO.read_text(encoding="utf-8")


def test_without_tokens_the_full_file_loses_only_its_tokens() -> None:
    text = FULL.read_text(encoding="utf-8")
    catalog_import(catalog_load_toml(text))
    kept = [
        line for line in text.splitlines(keepends=True) if not line.startswith(("token = ", "# This file contains"))
    ]
    assert exported() == "".join(kept)
