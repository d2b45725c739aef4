"""The registries: what each app adds to the portal, filled in its `AppConfig.ready()`.

Core and the dashboard iterate these and import no app (the NetBox `registry` idea). Four stores:

- `operation_kinds`     kinds of operation (`core.operations.OperationKind`), by name
- `dashboard_sections`  parts of the dashboard below the service tiles, in `order`
- `catalog_sections`    sections of the catalog file (`core.catalog.CatalogSection`), in file order
- `periodic_tasks`      what beat runs, and how often

An app registers each of its items once; registering a second item under a name already taken is a
programming error and raises at start-up, not at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Store(Generic[T]):
    """Items by unique name, iterated in the order `key` gives (registration order by default)."""

    def __init__(self, what: str, key: Callable[[T], Any] | None = None) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._key = key

    def register(self, item: T) -> T:
        existing = self._items.get(item.name)
        if existing is not None and existing != item:
            raise ValueError(f"Two {self.what} named {item.name!r}.")
        self._items[item.name] = item
        return item

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        items = list(self._items.values())
        return iter(sorted(items, key=self._key) if self._key else items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return [item.name for item in self]


@dataclass(frozen=True)
class DashboardSection:
    """A part of the dashboard: `render()` returns HTML with nothing user-specific in it (it is cached and
    shared by every reader, like the service tiles)."""

    name: str
    order: int
    render: Callable[[], str]


@dataclass(frozen=True)
class PeriodicTask:
    """A task beat sends every `every` seconds (a number, or a function reading the setting when the
    schedule is built). `expires`: a run that waited longer than that is dropped (the next one does the
    same work)."""

    name: str
    task: str  # the Celery task's registered name
    every: float | Callable[[], float]
    queue: str = "default"
    expires: float | None = None

    def seconds(self) -> float:
        return float(self.every() if callable(self.every) else self.every)


operation_kinds: Store[Any] = Store("kinds of operation")
dashboard_sections: Store[DashboardSection] = Store("dashboard sections", key=lambda section: section.order)
catalog_sections: Store[Any] = Store("catalog sections", key=lambda section: section.order)
periodic_tasks: Store[PeriodicTask] = Store("periodic tasks")
