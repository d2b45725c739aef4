"""Finding 10: every change made in the admin is audited with what it changed; the audit log and the Errors
page's rows cannot be changed or deleted from the admin."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from hadr_portal.core.admin import AuditedAdminMixin
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.redaction import REDACTED
from hadr_portal.incidents.models import Contact, EscalationStep
from hadr_portal.metrics.models import Funnel, LoggedError
from tests.conftest import make_user


@pytest.fixture
def root(db) -> Client:
    client = Client()
    client.force_login(make_user("root", superuser=True))
    return client


def admin_form_data(response: Any) -> dict[str, Any]:
    """The POST data of an admin change page as it was served: every field's current value, inlines included."""
    data: dict[str, Any] = {}

    def add(form: forms.BaseForm) -> None:
        for bound in form:
            value = bound.value()
            names = [bound.html_name] + ([bound.html_initial_name] if bound.field.show_hidden_initial else [])
            for name in names:  # a field with a callable default also sends its initial value, as a browser does
                if isinstance(bound.field, forms.BooleanField):
                    if value:
                        data[name] = "on"
                elif value is not None:
                    data[name] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def test_an_admin_edit_of_a_funnel_is_audited_with_its_fields(root):
    funnel = Funnel.objects.create(name="onboarding", source="push", steps=["signed_up", "activated"])
    url = reverse("admin:metrics_funnel_change", args=[funnel.pk])
    data = admin_form_data(root.get(url))
    data |= {"description": "Sign-ups to activation", "steps": '["signed_up", "verified", "activated"]'}
    data["token"] = "a-new-token-the-audit-must-not-show"
    response = root.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]

    entry = AuditEntry.objects.get(action="admin.funnel.change")
    assert (entry.actor_name, entry.target, entry.address) == ("root", "funnel:onboarding", "127.0.0.1")
    fields = entry.parameters["fields"]
    assert fields["description"] == {"from": "", "to": "Sign-ups to activation"}
    assert fields["steps"] == {"from": ["signed_up", "activated"], "to": ["signed_up", "verified", "activated"]}
    assert fields["token"] == REDACTED
    assert "a-new-token" not in str(entry.parameters) + entry.detail


def test_admin_edits_of_contacts_and_their_escalation_are_audited(root):
    response = root.post(
        reverse("admin:incidents_contact_add"),
        {
            "name": "Dana",
            "roles": '["DBA"]',
            "phone": "+351 900 000 000",
            "escalation_steps-TOTAL_FORMS": "0",
            "escalation_steps-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    dana = Contact.objects.get(name="Dana")
    added = AuditEntry.objects.get(action="admin.contact.add")
    assert added.target == "contact:Dana"
    assert added.parameters["fields"] == {"name": "Dana", "roles": ["DBA"], "phone": "+351 900 000 000"}

    url = reverse("admin:incidents_contact_change", args=[dana.pk])
    data = admin_form_data(root.get(url)) | {"phone": "+351 911 111 111", "email": "dana@example.com"}
    data |= {
        "escalation_steps-TOTAL_FORMS": "1",
        "escalation_steps-0-severity": "sev1",
        "escalation_steps-0-position": "1",
        "escalation_steps-0-contact": str(dana.pk),
    }
    assert root.post(url, data).status_code == 302
    changed = AuditEntry.objects.get(action="admin.contact.change")
    assert changed.parameters["fields"] == {
        "phone": {"from": "+351 900 000 000", "to": "+351 911 111 111"},
        "email": {"from": "", "to": "dana@example.com"},
    }
    step = EscalationStep.objects.get()
    assert changed.parameters["inlines"] == [
        {"row": f"escalationstep:{step}", "added": {"severity": "sev1", "position": 1}}
    ]

    delete = reverse("admin:incidents_contact_delete", args=[dana.pk])
    assert root.post(delete, {"post": "yes"}).status_code == 302
    deleted = AuditEntry.objects.get(action="admin.contact.delete")
    assert deleted.parameters["deleted"] | {"id": None} == {
        "id": None,
        "name": "Dana",
        "roles": ["DBA"],
        "phone": "+351 911 111 111",
        "email": "dana@example.com",
        "webhook": "",
        "hours": "",
    }


def test_models_other_packages_register_are_audited_too_with_their_secrets_hidden(root):
    """Two-factor devices are django-otp's admin: deleting one is audited, its secret key is not written."""
    user = make_user("erin")
    device = TOTPDevice.objects.create(user=user, name="phone")
    response = root.post(reverse("admin:otp_totp_totpdevice_delete", args=[device.pk]), {"post": "yes"})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="admin.totpdevice.delete")
    assert entry.parameters["deleted"]["key"] == REDACTED
    assert device.key not in str(entry.parameters)


def test_every_registered_model_admin_is_audited(db):
    registered = admin.site._registry
    assert {"contact", "funnel", "totpdevice", "staticdevice", "accessattempt"} <= {
        m._meta.model_name for m in registered
    }
    unaudited = [
        model._meta.label for model, model_admin in registered.items() if not isinstance(model_admin, AuditedAdminMixin)
    ]
    assert unaudited == []


def test_the_admin_cannot_delete_or_change_error_log_rows_or_audit_entries(root):
    row = LoggedError.objects.create(level="ERROR", logger="x", message="postgres is down")
    entry = AuditEntry.objects.create(actor_name="x", action="test", outcome="success")
    for model, obj, changelist in (
        ("metrics_loggederror", row, "admin:metrics_loggederror_changelist"),
        ("core_auditentry", entry, "admin:core_auditentry_changelist"),
    ):
        assert root.post(reverse(f"admin:{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
        page = root.get(reverse(changelist))
        assert page.status_code == 200 and "delete_selected" not in page.content.decode()
        bulk = root.post(
            reverse(changelist), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
        )
        assert bulk.status_code in (200, 302)
        change = root.post(reverse(f"admin:{model}_change", args=[obj.pk]), {"message": "nothing happened"})
        assert change.status_code in (200, 403)
    row.refresh_from_db()
    assert row.message == "postgres is down"
    assert LoggedError.objects.filter(pk=row.pk).exists() and AuditEntry.objects.filter(pk=entry.pk).exists()
