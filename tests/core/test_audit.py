"""What lands in the audit log besides operations: sign-ins, and user/role changes in the admin."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Role
from tests.conftest import make_user


def test_sign_in_and_failed_sign_in_are_audited(db):
    make_user("erin", Role.DBA)
    client = Client()
    client.post(reverse("login"), {"username": "erin", "password": "nope"})
    client.post(reverse("login"), {"username": "erin", "password": "correct horse battery"})
    client.post(reverse("logout"))
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "actor_name", "outcome", "address"))
    assert entries == [
        ("auth.sign_in", "system", "refused", "127.0.0.1"),
        ("auth.sign_in", "erin", "success", "127.0.0.1"),
        ("auth.sign_out", "erin", "success", "127.0.0.1"),
    ]


def test_giving_a_role_in_the_admin_is_audited(db):
    admin = make_user("root", superuser=True)
    target = make_user("frank")
    client = Client()
    client.force_login(admin)
    dba = Group.objects.get_or_create(name=Role.DBA.value)[0]  # a transactional test before may have flushed it
    response = client.post(
        reverse("admin:auth_user_change", args=[target.pk]),
        {
            "username": "frank",
            "is_active": "on",
            "groups": [dba.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(User.objects.get(pk=target.pk).groups.values_list("name", flat=True)) == ["DBA"]
    entry = AuditEntry.objects.get(action="admin.user.change")
    assert (entry.actor_name, entry.target, entry.address) == ("root", "user:frank", "127.0.0.1")
    assert "Groups" in entry.detail


def test_the_admin_cannot_edit_or_delete_audit_entries(db):
    admin = make_user("root", superuser=True)
    make_user("x", Role.VIEWER)
    client = Client()
    client.force_login(admin)
    entry = AuditEntry.objects.create(actor_name="x", action="test", outcome="success")
    assert client.get(reverse("admin:core_auditentry_changelist")).status_code == 200
    assert client.post(reverse("admin:core_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
