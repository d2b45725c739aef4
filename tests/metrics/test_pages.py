"""The Metrics and Errors pages, the dashboard's conversion tiles, and the logged errors behind the Errors page."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction
from django.urls import reverse

from hadr_portal.core.models import Operation
from hadr_portal.core.permissions import Role
from hadr_portal.metrics.errorlog import DatabaseErrorHandler
from hadr_portal.metrics.models import LoggedError
from hadr_portal.metrics.retention import metrics_prune

pytestmark = pytest.mark.django_db


def test_the_metrics_page_shows_rates_funnel_trend_resources_and_sizes(client_as, portal_data):
    response = client_as(Role.VIEWER).get(reverse("metrics:page"))
    assert response.status_code == 200
    assert "hx-request" in response["Vary"].lower()
    html = response.content.decode()
    assert 'id="funnel-onboarding"' in html
    assert "21.0 %" in html  # overall: 21 of 100
    assert "70.0 %" in html  # signed_up → email_verified
    assert "= 0.0 pts" in html  # the same rates as the period before
    assert '<rect class="funnel-bar" width="42.0" height="1"/>' in html
    assert html.count('class="chart metrics-chart"') >= 1 + 3 + 1  # trend; CPU, memory, disk /; size
    assert "Failover cluster:demo (succeeded)" in html  # a marker, linked to the operation
    assert "Backup backup:demo-onboarding (failed)" in html
    assert "warning 70 %" in html  # the host check's own threshold
    assert "demo/onboarding</strong> · 9.1 MiB · +1.4 MiB in 30d" in html
    assert "Data stale" not in html


def test_the_metrics_page_htmx_fragment_and_ranges(client_as, portal_data):
    viewer = client_as(Role.VIEWER)
    fragment = viewer.get(reverse("metrics:page") + "?range=48h", headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="metrics-funnels"')
    assert "<h1" not in fragment
    for name in ("2y", "nonsense"):
        assert viewer.get(reverse("metrics:page") + f"?range={name}").status_code == 200


def test_the_metrics_page_without_anything_says_what_to_do(client_as):
    html = client_as(Role.VIEWER).get(reverse("metrics:page")).content.decode()
    assert "No funnels yet" in html and "No host checks" in html and "No samples yet" in html


def test_the_dashboard_has_a_conversion_tile(client_as, portal_data):
    html = client_as(Role.VIEWER).get(reverse("dashboard")).content.decode()
    tile = html.split('id="conversion-onboarding"', 1)[1].split("</a>", 1)[0]
    assert "Onboarding conversion" in tile and "21.0 %" in tile and "stale" not in tile


def test_an_error_logged_in_a_transaction_that_rolls_back_is_still_on_the_errors_page(client_as, demo_cluster):
    failed = Operation.objects.create(kind="backup", target="policy:demo", status="failed", error="disk full")
    with pytest.raises(RuntimeError), transaction.atomic():
        logging.getLogger("hadr_portal.test").error(
            "could not write %s", "the manifest", extra={"operation_id": failed.pk}
        )
        raise RuntimeError("rolled back")

    viewer = client_as(Role.VIEWER)
    html = viewer.get(reverse("metrics:errors")).content.decode()
    assert "could not write the manifest" in html
    assert "disk full" in html and "policy:demo" in html
    assert html.count(f'href="{reverse("core:operation", kwargs={"pk": failed.pk})}"') == 2
    only_log = viewer.get(reverse("metrics:errors") + "?source=log&q=manifest").content.decode()
    assert "could not write the manifest" in only_log and "disk full" not in only_log
    only_ops = viewer.get(reverse("metrics:errors") + "?source=operation").content.decode()
    assert "disk full" in only_ops and "could not write the manifest" not in only_ops
    critical = viewer.get(reverse("metrics:errors") + "?level=CRITICAL").content.decode()
    assert "No errors match." in critical


def test_the_errors_page_says_what_is_wrong_with_a_filter(client_as):
    viewer = client_as(Role.VIEWER)
    response = viewer.get(reverse("metrics:errors") + "?since=yesterday")
    assert response.status_code == 400
    assert "Since: &#x27;yesterday&#x27; is not a date" in response.content.decode()
    fragment = viewer.get(reverse("metrics:errors") + "?level=LOUD", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="errors-table"') and "Unknown level &#x27;LOUD&#x27;" in html


def test_the_handler_keeps_only_errors_and_never_recurses(db):
    handler = DatabaseErrorHandler()
    logger = logging.getLogger("hadr_portal.test.handler")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "just a warning", (), None)
    handler.handle(record)  # below ERROR: ignored
    handler._writing.active = True  # as if a record were logged while another is being written
    handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "nested", (), None))
    handler._writing.active = False
    assert not LoggedError.objects.filter(logger=logger.name).exists()
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("with a traceback")
    entry = LoggedError.objects.get(logger=logger.name)
    assert entry.level == "ERROR" and "ValueError: bad value" in entry.exception


def test_pruning_keeps_the_newest_errors(db, settings):
    settings.ERROR_LOG_KEEP = 100
    LoggedError.objects.bulk_create(LoggedError(level="ERROR", logger="x", message=str(n)) for n in range(130))
    assert metrics_prune()["logged_errors"] >= 30
    assert LoggedError.objects.count() == 100
    assert LoggedError.objects.order_by("-id").first().message == "129"


def test_incidents_are_markers_and_their_outage_is_not_marked_twice():
    from datetime import timedelta

    from django.utils import timezone

    from hadr_portal.incidents.models import Incident
    from hadr_portal.metrics.selectors import timeline_markers
    from hadr_portal.status.models import Transition
    from tests.status.factories import make_service

    now = timezone.now()
    shop, cart = make_service("shop"), make_service("cart")
    Transition.objects.create(service=shop, from_state="up", to_state="down", reason="HTTP 503", at=now)
    Transition.objects.create(service=cart, from_state="up", to_state="down", reason="refused", at=now)
    incident = Incident.objects.create(title="shop is down", severity="SEV1", service=shop, opened_at=now)
    markers = timeline_markers(since=now - timedelta(hours=1))
    labels = [marker.label for marker in markers]
    assert f"Incident #{incident.pk} SEV1: shop is down" in labels
    assert any(label.endswith("down: refused") for label in labels)  # cart opened no incident: its outage is marked
    assert not any("down: HTTP 503" in label for label in labels), "the incident already marks shop's outage"
    assert next(m for m in markers if m.kind == "incident").url == f"/incidents/{incident.pk}/"
