"""Reading one table of the catalog file: the keys it may have, their TOML types, and the problems found.

Every problem is a string `"<path>: <message>"` appended to a list, so that one import reports all of them
at once; the functions here say what they found and never raise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

TEXT: tuple[type, ...] = (str,)
WHOLE: tuple[type, ...] = (int,)
NUMBER: tuple[type, ...] = (int, float)
FLAG: tuple[type, ...] = (bool,)
TABLE: tuple[type, ...] = (dict,)
ARRAY: tuple[type, ...] = (list,)
TYPE_WORDS = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


@dataclass(frozen=True)
class Key:
    """One key a table of the file may have: the TOML types it accepts, and whether it must be there.

    `sort`: stored as JSON and written with every table's keys sorted, so that the file does not depend on
    how the database orders them. `optional`: a JSON table the file may leave out (absent means empty, and an
    empty one is not written); it is checked storable as JSON on import, and written sorted.
    """

    types: tuple[type, ...]
    required: bool = False
    sort: bool = False
    optional: bool = False


def read_table(
    raw: Any, path: str, keys: Mapping[str, Key], problems: list[str], *, nested: str | None = None
) -> tuple[dict[str, Any], set[str]]:
    """The well-typed values of one table, and the keys that are missing or mistyped (reported as problems).

    `nested` is the key holding the table's own tables (a cluster's nodes), read as tables of their own."""
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: expected a table, got {describe(raw)}.")
        return {}, set(keys)
    values: dict[str, Any] = {}
    bad: set[str] = set()
    for key, value in raw.items():
        spec = keys.get(key)
        if spec is None:
            problems.append(f"{path}.{key}: unknown key; expected one of {', '.join(keys)}.")
        elif isinstance(value, bool) != (bool in spec.types) or not isinstance(value, spec.types):
            # bool is an int to Python, never to an operator: `port = true` is a mistake
            problems.append(f"{path}.{key}: expected {TYPE_WORDS[spec.types[-1]]}, got {describe(value)}.")
            bad.add(key)
        elif key != nested and _nul_in(value):
            problems.append(f"{path}.{key}: contains a NUL character (\\u0000), which cannot be stored.")
            bad.add(key)
        else:
            values[key] = value
    for key, spec in keys.items():
        if spec.required and key not in raw:
            problems.append(f"{path}.{key}: required, but missing.")
            bad.add(key)
    return values, bad


def _nul_in(value: Any) -> bool:
    """A NUL anywhere in a string of the value (nested tables and arrays included): PostgreSQL refuses it."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_nul_in(key) or _nul_in(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_nul_in(item) for item in value)
    return False


def choose(
    values: dict[str, Any], bad: set[str], key: str, choices: Sequence[Any], path: str, problems: list[str]
) -> None:
    """An enumerated value (kind, owner_role, tier) must be one of `choices`, named in the message."""
    if key in values and values[key] not in choices:
        problems.append(f"{path}.{key}: unknown {key} {values.pop(key)!r}; one of {', '.join(map(str, choices))}.")
        bad.add(key)


def unique(name: Any, path: str, seen: dict[str, str], problems: list[str], what: str = "name") -> bool:
    """False (and a problem) if `name` was already used by an earlier table of the same list."""
    if not isinstance(name, str):
        return True
    if name in seen:
        problems.append(f"{path}.{what}: {name!r} is already used by {seen[name]}.")
        return False
    seen[name] = path
    return True


def json_storable(value: Any, path: str, problems: list[str]) -> bool:
    """Tables stored as JSON (config, restart) cannot hold TOML dates or non-finite numbers."""
    if isinstance(value, Mapping):
        return all([json_storable(item, f"{path}.{key}", problems) for key, item in value.items()])
    if isinstance(value, list):
        return all([json_storable(item, f"{path}[{index}]", problems) for index, item in enumerate(value)])
    if isinstance(value, datetime | date | time) or (isinstance(value, float) and not math.isfinite(value)):
        problems.append(f"{path}: {value!r} cannot be stored; use a string or a finite number.")
        return False
    return True


def where(prefix: str, index: int, raw: Any) -> str:
    """The path of the `index`th table of a list, with its name when it has one: `services[2] (onboarding-app)`."""
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return f"{prefix}[{index}] ({name})" if isinstance(name, str) and name else f"{prefix}[{index}]"


def describe(value: Any) -> str:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{TYPE_WORDS.get(type(value), type(value).__name__)} {shown}"


def sorted_json(value: Any) -> Any:
    """JSON with every object's keys sorted, so the file does not depend on how the database orders them."""
    if isinstance(value, Mapping):
        return {key: sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_json(item) for item in value]
    return value
