"""Finding 4 of issue 13, and two-factor and step-up: tried over HTTP as an attacker and as each role would.

Before: 50 wrong passwords in a row were all checked (no lockout, no alert), and the name typed at a failed
sign-in was on the audit page every role reads. After: the account is locked on the attacker's address (the
right password too), the lockout is audited and alerted, only administrators see the typed name; accounts
can enrol an authenticator app, sign-in asks for its code, and destructive actions ask for a fresh one.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from hadr_portal.accounts import services as account_services
from hadr_portal.accounts.stepup import CODE_FIELD, VERIFIED_AT
from hadr_portal.backups.models import Restore
from hadr_portal.core.models import AuditEntry, Operation, OutboxMessage
from hadr_portal.core.permissions import Role
from hadr_portal.metrics.models import LoggedError
from hadr_portal.status.models import AlertChannel
from hadr_portal.status.tasks import security_alert_deliver_task
from tests.backups import conftest as backups_conftest
from tests.conftest import PASSWORD, make_user
from tests.status.factories import make_service

LOGIN = "/login/"
CODE = "/login/code/"
HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _no_code_throttling(settings) -> None:
    """django-otp makes a device wait 1 s, 2 s, 4 s... after each wrong code; the tests that type a wrong code
    on purpose would wait for nothing. Throttling itself is tested below with it on."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


def attacker(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def sign_in_post(client: Client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(LOGIN, {"username": username, "password": password})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def totp_code(device: TOTPDevice) -> str:
    """A code the device accepts now, computed from its key as an authenticator app would: the current
    30-second step's, or a later one inside the tolerance when the current one was already used."""
    device.refresh_from_db()
    for later in range(0, device.tolerance + 1):
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time() + later * device.step
        if totp.t() > device.last_t:
            return f"{totp.token():0{device.digits}d}"
    raise AssertionError("every code the device accepts now was used")


def wrong_code(device: TOTPDevice) -> str:
    return f"{(int(totp_code(device)) + 1) % 10**6:06d}"


def enrolled(user: User) -> tuple[TOTPDevice, list[str]]:
    """Enrol `user` the way the enrolment page does; the device and the recovery codes."""
    device = account_services.authenticator_enrol_start(user=user)
    check, codes = account_services.authenticator_confirm(
        user=user, device=device, code=totp_code(device), address=None
    )
    assert check.ok, check.error
    device.refresh_from_db()
    return device, codes


def signed_in_with_code(username: str, device: TOTPDevice, address: str = "127.0.0.1") -> Client:
    client = attacker(address)
    response = sign_in_post(client, username, PASSWORD)
    assert response.status_code == 302 and response.url == CODE
    response = client.post(CODE, {"code": totp_code(device)})
    assert response.status_code == 302, response.content.decode()[:1000]
    assert signed_in(client)
    return client


def audit(action: str, **filters: object) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, **filters).order_by("id"))


# --- finding 4: throttling and lockout -------------------------------------------------------------------------


def test_fifty_wrong_passwords_lock_the_account_on_that_address_and_the_right_one_is_refused_too(db, settings):
    make_user("root", superuser=True)
    thief = attacker("203.0.113.7")
    statuses = [sign_in_post(thief, "root", f"guess-{n}").status_code for n in range(50)]
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses[: limit - 1] == [200] * (limit - 1)  # the login page again, "wrong username or password"
    assert set(statuses[limit - 1 :]) == {429}

    response = sign_in_post(thief, "root", PASSWORD)
    assert response.status_code == 429 and not signed_in(thief)
    page = response.content.decode()
    assert "Sign-in locked" in page and f"{settings.SIGNIN_LOCKOUT_MINUTES} minutes" in page
    assert "axes_reset_username" in page
    assert AccessAttempt.objects.get(username="root", ip_address="203.0.113.7").failures_since_start == limit

    # the owner, from another address, is not locked out
    owner = attacker("198.51.100.20")
    assert sign_in_post(owner, "root", PASSWORD).status_code == 302 and signed_in(owner)

    # every failure is audited, by "system", and the lockout once
    failures = audit("auth.sign_in", outcome="refused")
    assert len(failures) == 51 and {entry.actor_name for entry in failures} == {"system"}
    assert sum("wrong username or password" in entry.detail for entry in failures) == limit
    assert sum("account locked" in entry.detail for entry in failures) == 51 - limit
    (lockout,) = audit("auth.lockout")
    assert (lockout.outcome, lockout.address, lockout.parameters) == (
        "refused",
        "203.0.113.7",
        {"attempted_username": "root"},
    )
    assert f"after {limit} failed sign-ins" in lockout.detail
    # and it is an error on the Errors page, without the account's name
    logged = LoggedError.objects.filter(message__contains="Sign-in locked out").filter(message__contains="203.0.113.7")
    assert logged.exists() and not logged.filter(message__contains="root").exists()


def test_the_typed_name_is_shown_to_administrators_only(db, client_as):
    typed = "Tr0ub4dor-typed-in-the-name-field"
    for _ in range(2):
        sign_in_post(attacker("203.0.113.8"), typed, "x")
    url = reverse("core:audit")

    viewer = client_as(Role.VIEWER)
    page = viewer.get(url).content.decode()
    assert typed not in page and "a failed sign-in" in page
    table = viewer.get(url, {"target": typed}, headers=HTMX).content.decode()  # the table alone, not the filters
    assert typed not in table and "No entries match" in table  # the filter does not find it either
    for role in (Role.DBA, Role.DEVOPS):
        assert typed not in client_as(role).get(url).content.decode()

    admin = client_as(superuser=True)
    assert typed in admin.get(url).content.decode()
    found = admin.get(url, {"target": typed[:10]}).content.decode()
    assert typed in found and "No entries match" not in found
    assert typed in admin.get(reverse("admin:axes_accessattempt_changelist")).content.decode()


def test_a_failed_sign_in_written_before_the_change_is_masked_too(db, client_as):
    AuditEntry.objects.create(actor_name="system", action="auth.sign_in", target="user:old-typo", outcome="refused")
    url = reverse("core:audit")
    assert "old-typo" not in client_as(Role.VIEWER).get(url).content.decode()
    assert "No entries match" in client_as(Role.VIEWER).get(url, {"target": "typo"}, headers=HTMX).content.decode()
    assert "old-typo" in client_as(superuser=True).get(url).content.decode()


def test_sign_in_attempts_in_the_admin_are_for_administrators_only(db):
    make_user("vera", Role.VIEWER)
    sign_in_post(attacker("203.0.113.9"), "vera", "nope")
    staff = make_user("staffer", Role.DEVOPS)
    staff.is_staff = True
    staff.save()
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="axes"))
    client = Client()
    client.force_login(staff)
    for name in ("accessattempt", "accessfailurelog", "accesslog"):
        assert client.get(reverse(f"admin:axes_{name}_changelist")).status_code == 403


def test_a_lockout_alerts_every_enabled_channel_without_the_name(db, mailoutbox, django_capture_on_commit_callbacks):
    cache.delete_many(["accounts:lockout-alert", "accounts:lockout-alert:203.0.113.10"])
    AlertChannel.objects.create(name="oncall", kind="email", address="oncall@example.com")
    AlertChannel.objects.create(name="off", kind="email", address="nobody@example.com", enabled=False)
    make_user("root", superuser=True)
    with django_capture_on_commit_callbacks():
        for _ in range(10):
            sign_in_post(attacker("203.0.113.10"), "root", "guess")
    sent = list(OutboxMessage.objects.filter(task=security_alert_deliver_task.name))
    assert len(sent) == 1  # one lockout, one enabled channel
    security_alert_deliver_task.apply(kwargs=sent[0].kwargs)  # what the worker does with it
    (mail,) = mailoutbox
    assert mail.to == ["oncall@example.com"] and "[SECURITY] Sign-in locked out" in mail.subject
    assert "203.0.113.10" in mail.body and "root" not in mail.body.replace("axes_reset_username", "")


@pytest.mark.slow  # waits out the cool-off
def test_the_lockout_ends_after_the_cool_off(db, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    make_user("olga", Role.DEVOPS)
    thief = attacker("203.0.113.11")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in_post(thief, "olga", "guess")
    assert sign_in_post(thief, "olga", PASSWORD).status_code == 429
    time.sleep(1.2)
    assert sign_in_post(thief, "olga", PASSWORD).status_code == 302 and signed_in(thief)
    assert not AccessAttempt.objects.filter(username="olga").exists()  # reset on success


def test_an_administrator_unlocks_with_the_command(db, settings):
    make_user("olga", Role.DEVOPS)
    me = attacker("203.0.113.12")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in_post(me, "olga", "mistyped")
    assert sign_in_post(me, "olga", PASSWORD).status_code == 429
    call_command("axes_reset_username", "olga")
    assert sign_in_post(me, "olga", PASSWORD).status_code == 302 and signed_in(me)


# --- two-factor ---------------------------------------------------------------------------------------------------


def test_enrolment_with_a_code_from_the_device_key_then_recovery_codes_once(client_as):
    dba = client_as(Role.DBA)
    assert "Turn on two-factor" in dba.get("/").content.decode()  # offered, not forced
    page = dba.get(reverse("accounts:enrol"))
    html = page.content.decode()
    main = html.split("<main>")[1]
    assert page.status_code == 200 and "<svg" in main and "<script" not in main and "style=" not in main  # strict CSP
    device = TOTPDevice.objects.get(user=dba.user, confirmed=False)
    secret = html.split('id="totp-secret">')[1].split("<")[0].replace(" ", "")
    from base64 import b32encode

    assert secret == b32encode(device.bin_key).decode()  # the key the QR code holds, for typing by hand

    refused = dba.post(reverse("accounts:enrol"), {"code": wrong_code(device)})
    assert refused.status_code == 400 and "not right" in refused.content.decode()
    assert not TOTPDevice.objects.filter(user=dba.user, confirmed=True).exists()

    shown = dba.post(reverse("accounts:enrol"), {"code": totp_code(device)})
    assert shown.status_code == 200
    codes = list(StaticToken.objects.filter(device__user=dba.user).values_list("token", flat=True))
    assert len(codes) == 10 and all(code in shown.content.decode() for code in codes)
    assert 'download="hadr-portal-recovery-codes.txt"' in shown.content.decode()
    device.refresh_from_db()
    assert device.confirmed
    assert [e.outcome for e in audit("account.two_factor.enrol")] == ["refused", "success"]

    status = dba.get(reverse("accounts:two-factor")).content.decode()
    assert "10 unused" in status and not any(code in status for code in codes)  # shown once
    assert dba.get(reverse("accounts:enrol")).url == reverse("accounts:two-factor")
    # new codes need a fresh code (the enrolment was one) and replace the old ones
    regenerated = dba.post(reverse("accounts:recovery-codes"))
    assert regenerated.status_code == 200
    assert not StaticToken.objects.filter(token__in=codes).exists()
    assert StaticToken.objects.filter(device__user=dba.user).count() == 10


def test_sign_in_asks_for_the_code_and_refuses_a_wrong_one(db):
    user = make_user("dina", Role.DBA)
    device, _ = enrolled(user)
    client = attacker("127.0.0.1")
    response = sign_in_post(client, "dina", PASSWORD)
    assert response.status_code == 302 and response.url == CODE and not signed_in(client)
    assert client.get("/").status_code == 302  # not in with the password alone
    refused = client.post(CODE, {"code": wrong_code(device)})
    assert refused.status_code == 400 and "not right" in refused.content.decode() and not signed_in(client)
    (entry,) = audit("auth.sign_in.code")
    assert (entry.actor_name, entry.outcome) == ("dina", "refused")
    response = client.post(CODE, {"code": totp_code(device)})
    assert response.status_code == 302 and signed_in(client)
    assert client.get("/").status_code == 200
    assert 'href="/account/two-factor/"' in client.get("/").content.decode()


def test_a_recovery_code_signs_in_once(db):
    user = make_user("dina", Role.DBA)
    _, codes = enrolled(user)
    client = attacker("127.0.0.1")
    sign_in_post(client, "dina", PASSWORD)
    response = client.post(CODE, {"code": codes[0].upper()})  # as typed from paper
    assert response.status_code == 302 and signed_in(client)
    assert "9 left" in audit("auth.recovery_code")[0].detail
    client.post(reverse("logout"))

    again = attacker("127.0.0.1")
    sign_in_post(again, "dina", PASSWORD)
    refused = again.post(CODE, {"code": codes[0]})
    assert refused.status_code == 400 and not signed_in(again)


def test_wrong_codes_make_the_device_wait(db, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 1
    user = make_user("dina", Role.DBA)
    device, _ = enrolled(user)
    client = attacker("127.0.0.1")
    sign_in_post(client, "dina", PASSWORD)
    client.post(CODE, {"code": wrong_code(device)})
    refused = client.post(CODE, {"code": totp_code(device)})  # right, but too soon after a wrong one
    assert refused.status_code == 400 and "Too many wrong codes" in refused.content.decode()
    assert not signed_in(client)


def test_removing_two_factor_needs_a_current_code(db):
    user = make_user("dina", Role.DBA)
    device, _ = enrolled(user)
    client = signed_in_with_code("dina", device)
    client.post(reverse("accounts:remove"), {"code": "123"})
    assert TOTPDevice.objects.filter(user=user).exists()
    client.post(reverse("accounts:remove"), {"code": totp_code(device)})
    assert not TOTPDevice.objects.filter(user=user).exists() and not StaticToken.objects.filter(device__user=user)
    assert [e.outcome for e in audit("account.two_factor.remove")] == ["refused", "success"]
    assert client.get("/").status_code == 200  # not required here: signing in now needs the password only


def test_when_required_a_dba_without_a_device_is_sent_to_enrolment(client_as, settings):
    settings.TWO_FACTOR_REQUIRED = True
    enrol = reverse("accounts:enrol")
    for account in (client_as(Role.DBA), client_as(Role.DEVOPS), client_as(superuser=True)):
        for url in ("/", reverse("databases:clusters"), reverse("core:audit"), reverse("admin:index")):
            response = account.get(url)
            assert response.status_code == 302 and response.url.startswith(enrol), (url, response)
        assert account.get("/", headers=HTMX)["HX-Redirect"] == enrol
        assert account.get(enrol).status_code == 200
        assert account.get(reverse("healthz")).status_code in (200, 503)
    viewer = client_as(Role.VIEWER, Role.DEVELOPER)  # no destructive role: offered, not forced
    assert viewer.get("/").status_code == 200

    settings.TWO_FACTOR_ROLES = ["Viewer"]
    assert viewer.get("/").url.startswith(enrol)
    settings.TWO_FACTOR_REQUIRED = False
    assert client_as(Role.DBA).get("/").status_code == 200


def test_an_enrolled_account_signed_in_without_a_code_is_asked_for_one(db):
    """However the session was opened (the admin's own login page, say), it must be verified by a code."""
    user = make_user("root", superuser=True)
    device, _ = enrolled(user)
    client = Client()
    response = client.post(reverse("admin:login"), {"username": "root", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302 and signed_in(client)
    for url in ("/", "/admin/", reverse("core:audit")):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("accounts:verify")), url
    refused = client.post(reverse("accounts:verify"), {"code": wrong_code(device), "next": "/admin/"})
    assert refused.status_code == 400
    response = client.post(reverse("accounts:verify"), {"code": totp_code(device), "next": "/admin/"})
    assert response.url == "/admin/" and client.get("/admin/").status_code == 200
    assert [e.outcome for e in audit("auth.verify")] == ["refused", "success"]


# --- step-up ------------------------------------------------------------------------------------------------------


def stale(client: Client, minutes: float = 11) -> None:
    """Pretend the session's last code was entered `minutes` ago."""
    session = client.session
    session[VERIFIED_AT] = time.time() - minutes * 60
    session.save()


def test_a_failover_with_a_stale_code_is_not_run_until_a_fresh_code_is_given(demo_cluster):
    user = make_user("dina", Role.DBA)
    device, _ = enrolled(user)
    dba = signed_in_with_code("dina", device)
    url = reverse("databases:failover", kwargs={"name": demo_cluster.name})
    fields = {"confirm": demo_cluster.name, "to": "replica", "isolation_reason": ""}

    stale(dba)
    asked = dba.post(url, fields)
    html = asked.content.decode()
    assert asked.status_code == 200 and "Confirm it is you" in html and f"Fail over {demo_cluster.name}" in html
    assert f'name="confirm" value="{demo_cluster.name}"' in html and f'name="{CODE_FIELD}"' in html  # re-posted as is
    assert not Operation.objects.filter(kind="failover").exists()

    refused = dba.post(url, fields | {CODE_FIELD: wrong_code(device)})
    assert refused.status_code == 403 and "not right" in refused.content.decode()
    assert not Operation.objects.filter(kind="failover").exists()

    done = dba.post(url, fields | {CODE_FIELD: totp_code(device)})
    operation = Operation.objects.get(kind="failover")
    assert done.status_code == 302 and done.url == reverse("core:operation", kwargs={"pk": operation.pk})
    assert [(e.outcome, e.parameters["for"]) for e in audit("auth.step_up")] == [
        ("refused", f"Fail over {demo_cluster.name}"),
        ("success", f"Fail over {demo_cluster.name}"),
    ]
    assert VERIFIED_AT in dba.session and time.time() - dba.session[VERIFIED_AT] < 60


def test_a_fresh_code_is_not_asked_again_and_an_account_without_a_device_is_not_asked(demo_cluster, client_as):
    url = reverse("databases:failover", kwargs={"name": demo_cluster.name})
    fields = {"confirm": demo_cluster.name, "to": "replica"}
    user = make_user("dina", Role.DBA)
    device, _ = enrolled(user)
    dba = signed_in_with_code("dina", device)
    stale(dba, minutes=5)
    assert dba.post(url, fields).status_code == 302  # within HADR_STEP_UP_MINUTES
    Operation.objects.all().delete()
    # without a device, and two-factor not required: no step-up (there is no code to ask for)
    assert client_as(Role.DBA).post(url, fields).status_code == 302


def test_a_tier_one_restart_from_a_dashboard_button_asks_for_a_code_in_place(db, settings):
    settings.STEP_UP_MINUTES = 1
    restart = {"controller": "command", "argv": ["/bin/true"], "timeout_seconds": 10}
    make_service("shop", tier=1, display_name="Shop front", restart=restart)
    make_service("wiki", tier=3, display_name="Wiki", restart=restart)
    user = make_user("olga", Role.DEVOPS)
    device, _ = enrolled(user)
    devops = signed_in_with_code("olga", device)
    stale(devops, minutes=2)

    # a tier-3 service restarts without a code
    response = devops.post(reverse("status:service-restart", kwargs={"name": "wiki"}), headers=HTMX)
    assert "HX-Redirect" in response and Operation.objects.filter(target="service:wiki").exists()

    shop = reverse("status:service-restart", kwargs={"name": "shop"})
    asked = devops.post(shop, headers=HTMX)
    assert asked.status_code == 200 and asked["HX-Retarget"] == "main" and "<html" not in asked.content.decode()
    assert "Restart Shop front" in asked.content.decode()
    assert not Operation.objects.filter(target="service:shop").exists()
    # the form in place posts without htmx: the code, and the restart goes ahead
    done = devops.post(shop, {CODE_FIELD: totp_code(device)})
    assert done.status_code == 302 and Operation.objects.filter(target="service:shop", kind="restart_service").exists()


def test_the_step_up_decorator_guards_new_recovery_codes(db):
    user = make_user("dina", Role.DBA)
    device, codes = enrolled(user)
    client = signed_in_with_code("dina", device)
    stale(client)
    asked = client.post(reverse("accounts:recovery-codes"))
    assert "Confirm it is you" in asked.content.decode()
    assert StaticToken.objects.filter(device__user=user).count() == 10 and StaticToken.objects.filter(token=codes[0])
    done = client.post(reverse("accounts:recovery-codes"), {CODE_FIELD: totp_code(device)})
    assert done.status_code == 200 and not StaticToken.objects.filter(token=codes[0]).exists()


def test_the_roles_setting_is_checked_at_start_up(settings):
    from hadr_portal.accounts.checks import two_factor_roles_check

    settings.TWO_FACTOR_ROLES = ["DBA", "Dba"]
    (error,) = two_factor_roles_check()
    assert "Dba" in error.msg and error.id == "accounts.E001"
    settings.TWO_FACTOR_ROLES = [role.value for role in Role]
    assert two_factor_roles_check() == []


# The restore fixtures: an application database of its own on the session's primary, a backup policy for it.
app_database = backups_conftest.app_database
app_policy = backups_conftest.app_policy
backup_dir = backups_conftest.backup_dir
scratch_dir = backups_conftest.scratch_dir


def test_a_restore_replacing_production_asks_for_a_fresh_code_before_it_is_queued(app_policy):
    backup = backups_conftest.backup_of(app_policy)
    user = make_user("dora", Role.DBA)
    device, _ = enrolled(user)
    dba = signed_in_with_code("dora", device)
    dba.post(reverse("backups:restore-start", kwargs={"name": app_policy.name}))
    restore = Restore.objects.get()

    def step(name: str) -> str:
        return reverse("backups:restore-step", kwargs={"pk": restore.pk, "step": name})

    dba.post(step("situation"), {"situation": "corruption"})
    dba.post(step("backup"), {"backup": str(backup.pk)})
    replace = {"destination": "replace", "confirm": backups_conftest.APP_DB}
    assert dba.post(step("destination"), replace).url == step("preflight")
    assert f"Replace {backups_conftest.APP_DB} now" in dba.post(step("preflight")).content.decode()

    stale(dba)
    asked = dba.post(step("run"), headers=HTMX)  # the wizard's Run button posts through htmx
    assert asked["HX-Retarget"] == "main" and f"Replace {backups_conftest.APP_DB}" in asked.content.decode()
    restore.refresh_from_db()
    assert restore.status == "draft" and restore.operation is None
    done = dba.post(step("run"), {CODE_FIELD: totp_code(device)})
    restore.refresh_from_db()
    assert done.status_code == 302 and restore.status == "queued" and restore.operation.kind == "restore"
