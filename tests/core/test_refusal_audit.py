"""Every refused attempt is in the audit log once: whether a view's permission check refused it or the
operation machinery did."""

from __future__ import annotations

import pytest

from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Role

pytestmark = pytest.mark.django_db


def test_a_view_refusal_is_audited_with_who_what_and_from_where(client_as, demo_cluster):
    viewer = client_as(Role.VIEWER)
    response = viewer.post(f"/databases/{demo_cluster.name}/nodes/replica/rebuild", {"confirm": "replica"})
    assert response.status_code == 403
    entry = AuditEntry.objects.get(outcome="refused")
    assert entry.actor == viewer.user
    assert entry.action == "view.databases:rebuild"
    assert entry.target == f"/databases/{demo_cluster.name}/nodes/replica/rebuild"
    assert entry.parameters == {"method": "POST"}
    assert entry.address == "127.0.0.1"
    assert "DBA" in entry.detail


def test_a_refusal_the_view_audited_itself_is_not_written_twice(rf, demo_cluster):
    from django.core.exceptions import PermissionDenied

    from hadr_portal.core.audit import audit_record
    from hadr_portal.core.middleware import RefusalAuditMiddleware
    from tests.conftest import make_user

    def self_auditing(request):
        audit_record(actor=request.user, action="catalog.import", outcome="refused", detail="not allowed")
        raise PermissionDenied("Only DevOps may do this")

    def plain(request):
        raise PermissionDenied("Only DBA may do this")

    def through_middleware(view, path):
        request = rf.post(path)
        request.user = user

        def get_response(r):
            try:
                return view(r)
            except PermissionDenied as exc:
                middleware.process_exception(r, exc)
                return None

        middleware = RefusalAuditMiddleware(get_response)
        middleware(request)

    user = make_user("vera", Role.VIEWER)
    through_middleware(self_auditing, "/catalog/import")
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["catalog.import"]
    through_middleware(plain, "/elsewhere")  # the next request starts afresh: its refusal is written
    assert list(AuditEntry.objects.order_by("pk").values_list("action", "target")) == [
        ("catalog.import", ""),
        ("view", "/elsewhere"),
    ]
