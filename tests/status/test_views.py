"""Status pages and catalog forms: as plain and htmx requests, for the roles that may and may not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Role
from hadr_portal.status.models import Check, Service
from tests.status.factories import make_check, make_service


@pytest.fixture
def services(db):
    critical = make_service("shop", tier=1, display_name="Shop front")
    minor = make_service("reports", tier=3, display_name="Reports")
    check = make_check(critical, config={"url": "http://127.0.0.1:1/"}, last_result_at=timezone.now(), state="up")
    Service.objects.filter(pk=critical.pk).update(state="up")
    make_check(
        minor,
        kind="tcp",
        config={"host": "127.0.0.1", "port": 1},
        state="up",
        last_result_at=timezone.now() - timedelta(hours=1),
    )
    Service.objects.filter(pk=minor.pk).update(state="up")
    return critical, minor, check


def test_dashboard_groups_by_tier_and_never_shows_stale_as_green(client_as, services):
    viewer = client_as(Role.VIEWER)
    html = viewer.get(reverse("dashboard")).content.decode()
    assert (
        html.index("Tier 1 · critical")
        < html.index("Shop front")
        < html.index("Tier 3 · supporting")
        < html.index("Reports")
    )
    assert 'class="tile state-up" href="/services/shop/"' in html
    assert 'class="tile state-stale" href="/services/reports/"' in html
    fragment = viewer.get(reverse("dashboard"), headers={"HX-Request": "true"})
    assert b"<html" not in fragment.content and b'id="board"' in fragment.content
    assert "HX-Request" in fragment["Vary"]


@pytest.mark.redis  # the workers announce their queues there
def test_dashboard_banner_when_no_worker_consumes_a_queue(client_as, services):
    html = client_as(Role.VIEWER).get(reverse("dashboard")).content.decode()
    assert "No worker is consuming the" in html and "“ops”" in html


def test_service_detail_plain_and_htmx(client_as, services):
    _ = services
    viewer = client_as(Role.VIEWER)
    page = viewer.get(reverse("status:service", kwargs={"name": "shop"}))
    assert page.status_code == 200 and b"Recovery priority" in page.content
    fragment = viewer.get(reverse("status:service", kwargs={"name": "shop"}), headers={"HX-Request": "true"})
    assert b'id="live"' in fragment.content and b"Recovery priority" not in fragment.content
    assert viewer.get(reverse("status:service", kwargs={"name": "nope"})).status_code == 404


def test_devops_adds_a_check_with_validation_and_audit(client_as, services):
    devops = client_as(Role.DEVOPS)
    url = reverse("status:check-new", kwargs={"name": "shop"})
    base = {
        "name": "api",
        "kind": "http",
        "enabled": "on",
        "interval_seconds": "30",
        "timeout_seconds": "5",
        "failures_before_down": "2",
        "expected_status": "200",
    }
    bad = devops.post(url, base | {"url": "htp:/nope"})
    assert bad.status_code == 400
    assert "Enter a full http:// or https:// URL" in bad.content.decode()
    bad_timeout = devops.post(url, base | {"url": "http://127.0.0.1:9/", "timeout_seconds": "60"})
    assert "The timeout must be shorter than the interval (30 s)." in bad_timeout.content.decode()
    bad_port = devops.post(url, base | {"kind": "tcp", "host": "x", "port": "70000"})
    assert "70000 is out of range (1–65535)." in bad_port.content.decode()
    assert not Check.objects.filter(name="api").exists()

    ok = devops.post(url, base | {"url": "http://127.0.0.1:9/", "keyword": "ok"})
    assert ok.status_code == 302
    check = Check.objects.get(name="api")
    assert check.config == {"url": "http://127.0.0.1:9/", "expected_status": 200, "keyword": "ok", "verify_tls": False}
    entry = AuditEntry.objects.get(action="catalog.check.create")
    assert entry.target == "service:shop/api" and entry.actor_roles == ["DevOps"]


def test_product_manager_edits_priorities_only(client_as, services):
    pm = client_as(Role.PRODUCT_MANAGER)
    url = reverse("status:service-edit", kwargs={"name": "reports"})
    form = pm.get(url).content.decode()
    assert 'name="tier"' in form and 'name="display_name"' not in form
    response = pm.post(url, {"tier": "1", "rto_minutes": "15", "rpo_minutes": "5", "display_name": "Hacked"})
    assert response.status_code == 302
    service = Service.objects.get(name="reports")
    assert (service.tier, service.rto_minutes, service.rpo_minutes, service.display_name) == (1, 15, 5, "Reports")
    assert AuditEntry.objects.get(action="catalog.service.priorities").parameters == {
        "tier": "1",
        "rto_minutes": "15",
        "rpo_minutes": "5",
    }
    assert pm.get(reverse("status:service-new")).status_code == 403
    assert pm.get(reverse("status:check-new", kwargs={"name": "reports"})).status_code == 403


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER, Role.DBA])
def test_roles_without_catalog_rights_are_refused(client_as, services, role):
    client = client_as(role)
    _, _, check = services
    for url in (
        reverse("status:service-edit", kwargs={"name": "shop"}),
        reverse("status:check-edit", kwargs={"name": "shop", "check_id": check.pk}),
        reverse("status:maintenance", kwargs={"name": "shop"}),
    ):
        assert client.post(url, {"tier": "4", "hours": "1", "reason": "x"}).status_code == 403
    assert Service.objects.get(name="shop").tier == 1


def test_deleting_a_check_needs_its_name_typed(client_as, services):
    devops = client_as(Role.DEVOPS)
    _, _, check = services
    url = reverse("status:check-delete", kwargs={"name": "shop", "check_id": check.pk})
    devops.post(url, {"confirm": "wrong"})
    assert Check.objects.filter(pk=check.pk).exists()
    devops.post(url, {"confirm": check.name})
    assert not Check.objects.filter(pk=check.pk).exists()
    assert AuditEntry.objects.filter(action="catalog.check.delete").exists()


def test_maintenance_window_from_the_service_page(client_as, services):
    devops = client_as(Role.DEVOPS)
    url = reverse("status:maintenance", kwargs={"name": "shop"})
    devops.post(url, {"hours": "500", "reason": "too long"})
    assert not Service.objects.get(name="shop").maintenance_windows.exists()
    devops.post(url, {"hours": "2", "reason": "upgrade"})
    window = Service.objects.get(name="shop").maintenance_windows.get()
    assert timedelta(hours=1.9) < window.ends_at - window.starts_at <= timedelta(hours=2)
    assert Service.objects.get(name="shop").in_maintenance() == window


@pytest.mark.django_db(transaction=True)
def test_cached_tiles_are_replaced_at_once_by_a_transition(client_as, settings):
    from hadr_portal.status import engine
    from tests.status.factories import http_target

    settings.DASHBOARD_CACHE_SECONDS = 300
    viewer = client_as(Role.VIEWER)
    with http_target() as target:
        check = make_check(make_service("cached", tier=1), config={"url": target.url}, failures_before_down=1)
        engine.checks_run([check.pk])
        assert 'class="tile state-up" href="/services/cached/"' in viewer.get(reverse("dashboard")).content.decode()
        Service.objects.filter(name="cached").update(description="no signal, no invalidation")
        assert "no signal" not in viewer.get(reverse("dashboard")).content.decode(), "served from the cache"
        target.status = 500
        engine.checks_run([check.pk])
        html = viewer.get(reverse("dashboard")).content.decode()
        assert 'class="tile state-down" href="/services/cached/"' in html


def test_dashboard_still_renders_when_redis_is_down(client_as, services, settings):
    dead = "redis://127.0.0.1:1/0"
    settings.REDIS_URL = dead
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": dead,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    response = client_as(Role.VIEWER).get(reverse("dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "The task queue (Redis) is unreachable" in html
    assert "Shop front" in html
