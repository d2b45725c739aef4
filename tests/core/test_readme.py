"""The README is the front door: its permission matrix and settings table must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from hadr_portal.core.permissions import Role, permission_matrix

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_permission_matrix_is_the_enforced_one():
    rows = {}
    for line in README.splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if match and match.group(1) in {action for action, _ in permission_matrix()}:
            rows[match.group(1)] = [cell.strip() == "✔" for cell in match.group(2).split("|")]
    assert len(rows) == len(permission_matrix())
    assert rows == dict(permission_matrix()), "README's roles table differs from hadr_portal/core/permissions.py"
    header = next(line for line in README.splitlines() if line.startswith("| Action |"))
    assert [cell.strip() for cell in header.strip("|").split("|")][1:] == [role.value for role in Role]


def test_every_setting_read_by_settings_py_is_documented():
    source = (Path(__file__).resolve().parents[2] / "hadr_portal" / "settings.py").read_text()
    names = set(re.findall(r'env(?:_required|_bool|_int|_list)?\("(HADR_[A-Z_]+)"', source))
    assert len(names) > 20, names  # the pattern really reads settings.py
    undocumented = sorted(name for name in names if f"`{name}`" not in README)
    assert not undocumented, f"settings missing from the README's table: {undocumented}"
