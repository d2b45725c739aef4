"""The home page is the registered sections in their order, shared by every reader with the same buttons, and
never older than the last change a section shows."""

from __future__ import annotations

import pytest

from hadr_portal.core import registry
from hadr_portal.core.dashboard_version import dashboard_invalidate
from hadr_portal.core.permissions import Action, Role
from hadr_portal.core.registry import DashboardSection, Store
from hadr_portal.dashboard.cache import buttons_allowed, dashboard_html
from tests.conftest import make_user

RESTART = frozenset({Action.RESTART_SERVICE.value})


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two sections registered out of order, the first with buttons; returns the renderings done, in order."""
    done: list[str] = []

    def section(text: str):
        def render() -> str:
            done.append(text)
            return f"<p>{text}</p>"

        return render

    store: Store[DashboardSection] = Store("dashboard sections", key=lambda item: item.order)
    store.register(DashboardSection("below", 20, section("below")))
    store.register(
        DashboardSection(
            "tiles",
            10,
            section("tiles"),
            buttons_need=Action.RESTART_SERVICE,
            render_with_buttons=section("tiles with Restart"),
        )
    )
    monkeypatch.setattr(registry, "dashboard_sections", store)
    return done


def test_the_sections_come_in_their_order_with_buttons_only_for_those_who_may_use_them(rendered, settings):
    settings.DASHBOARD_CACHE_SECONDS = 0
    assert dashboard_html() == "<p>tiles</p><p>below</p>"
    assert dashboard_html(buttons=RESTART) == "<p>tiles with Restart</p><p>below</p>"


def test_one_rendering_serves_every_reader_with_the_same_buttons_until_a_change(rendered, settings):
    settings.DASHBOARD_CACHE_SECONDS = 300
    assert dashboard_html() == dashboard_html() == "<p>tiles</p><p>below</p>"
    assert dashboard_html(buttons=RESTART) == "<p>tiles with Restart</p><p>below</p>"
    assert dashboard_html(buttons=RESTART) == "<p>tiles with Restart</p><p>below</p>"
    assert rendered == ["tiles", "below", "tiles with Restart", "below"]
    dashboard_invalidate()  # a transition, a failover, a new incident...
    dashboard_html()
    assert rendered[4:] == ["tiles", "below"]


def test_the_buttons_a_reader_gets_are_those_their_roles_allow(db, rendered):
    assert buttons_allowed(make_user("ops", Role.DEVOPS)) == RESTART
    assert buttons_allowed(make_user("dba", Role.DBA)) == frozenset()
    assert buttons_allowed(make_user("admin", superuser=True)) == RESTART
