"""The registries: what each app adds to the portal, filled in its `AppConfig.ready()`.

Core and the dashboard iterate these and import no app (the NetBox `registry` idea). The stores:

- `operation_kinds`     kinds of operation (`core.operation_kinds.OperationKind`), by name
- `dashboard_sections`  parts of the home page (the service tiles first), in `order`
- `catalog_sections`    sections of the catalog file (`core.catalog.CatalogSection`), in file order
- `periodic_tasks`      what beat runs, and how often
- `runbook_actions`     what a runbook's action block becomes for a service (`RunbookAction`), by action
- `cluster_panels`      parts of a cluster's card on the Databases page that a higher app owns, in `order`
- `recovery_moments`    moments a point-in-time restore may stop just before (incidents)
- `banners`             warnings every signed-in page shows while they hold (maintenance mode)

An app registers each of its items once; registering a second item under a name already taken is a
programming error and raises at start-up, not at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
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
    shared by every reader, like the service tiles).

    A section with action buttons (the tiles' Restart) names the permission they need in `buttons_need` (a
    `core.permissions.Action` value) and renders them in `render_with_buttons()`: the readers who hold that
    permission share that rendering, everybody else shares the plain one. Still nothing user-specific."""

    name: str
    order: int
    render: Callable[[], str]
    buttons_need: str = ""
    render_with_buttons: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        if bool(self.buttons_need) != (self.render_with_buttons is not None):
            raise ValueError(f"Dashboard section {self.name!r}: buttons_need and render_with_buttons go together.")


@dataclass(frozen=True)
class Setting:
    """A number read from Django's settings when it is needed (the beat schedule is built after the settings a
    test or a deployment changed). Two of them for the same setting are equal, so registering the same periodic
    task again (apps made ready twice) is no conflict."""

    name: str

    def __call__(self) -> float:
        from django.conf import settings

        return float(getattr(settings, self.name))


@dataclass(frozen=True)
class PeriodicTask:
    """A task beat sends every `every` seconds (a number, or a `Setting`). `expires`: a run that waited longer
    than that many seconds is dropped, because the next one does the same work."""

    name: str
    task: str  # the Celery task's registered name
    every: float | Setting
    queue: str = "default"
    expires: float | Setting | None = None

    def seconds(self) -> float:
        return self.every() if isinstance(self.every, Setting) else float(self.every)

    def expiry(self) -> float | None:
        return self.expires() if isinstance(self.expires, Setting) else self.expires


@dataclass(frozen=True)
class ActionLink:
    """Where a runbook's action button for one service leads: `url` with `method` ("post" queues an operation,
    "get" opens a guided page); or no `url` and a `note` saying why the action cannot work for that service."""

    subject: str  # the service, as people know it (its display name)
    url: str = ""
    method: str = "post"
    note: str = ""


@dataclass(frozen=True)
class RunbookAction:
    """How a runbook's action block (`[[action: run_backup SERVICE]]`) becomes a button, registered by the app
    that runs the action. `name`: the permission the action needs (a `core.permissions.Action` value);
    `resolve(service_name)`: the link for that service, or None when the catalog has no service of that name."""

    name: str
    resolve: Callable[[str], ActionLink | None]


@dataclass(frozen=True)
class RecoveryMoments:
    """Moments a point-in-time restore may stop just before, offered in the restore wizard by the app that knows
    them (incidents: "just before incident 12 opened"). `moments(cluster_name)`: (label, moment) pairs, newest
    first."""

    name: str
    moments: Callable[[str], list[tuple[str, datetime]]]


@dataclass(frozen=True)
class ClusterPanel:
    """A part of a cluster's card on the Databases page from an app above databases (the backups app's WAL
    archiving): `render(cluster, request)` returns its HTML (a rendered template), or "" when it has nothing to
    show for that cluster."""

    name: str
    order: int
    render: Callable[[Any, Any], str]


@dataclass(frozen=True)
class Banner:
    """A warning every signed-in page shows while it holds (automatic failover paused on a cluster):
    `messages()` returns its sentences, none when all is well. Called once per page: keep it one small query."""

    name: str
    messages: Callable[[], list[str]]


operation_kinds: Store[Any] = Store("kinds of operation")
dashboard_sections: Store[DashboardSection] = Store("dashboard sections", key=lambda section: section.order)
catalog_sections: Store[Any] = Store("catalog sections", key=lambda section: section.order)
periodic_tasks: Store[PeriodicTask] = Store("periodic tasks")
runbook_actions: Store[RunbookAction] = Store("runbook actions")
cluster_panels: Store[ClusterPanel] = Store("cluster panels", key=lambda panel: panel.order)
recovery_moments: Store[RecoveryMoments] = Store("recovery moments")
banners: Store[Banner] = Store("banners")
