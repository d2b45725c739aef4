"""The lockout and the step-up in Chromium: what a person sees when they (or someone) guess passwords, and when a
destructive button asks for a fresh two-factor code."""

from __future__ import annotations

import time
from base64 import b32decode

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from hadr_portal.core.models import Operation
from hadr_portal.core.permissions import Role
from tests.conftest import make_user, sign_in
from tests.security.test_signin import totp_code
from tests.status.factories import make_service

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_wrong_passwords_until_the_lockout_page_shows(live_server, page, settings):
    make_user("root", superuser=True)
    page.goto(f"{live_server.url}/login/")
    statuses = []
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        page.fill("input[name=username]", "root")
        page.fill("input[name=password]", f"guess {attempt}")
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/login/")) as answer:
            page.click("button[type=submit]")
        statuses.append(answer.value.status)
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    expect(page.get_by_role("heading", name="Sign-in locked")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(f"{settings.SIGNIN_LOCKOUT_MINUTES} minutes")
    expect(page.locator("#locked-out")).to_contain_text("axes_reset_username")
    expect(page.locator("input[name=password]")).to_have_count(0)


def test_a_devops_enrols_and_a_tier_one_restart_asks_for_a_code_then_runs(live_server, page, settings):
    settings.STEP_UP_MINUTES = 0  # every destructive action asks, however fresh the last code
    restart = {"controller": "command", "argv": ["/bin/true"], "timeout_seconds": 10}
    make_service("shop", tier=1, display_name="Shop front", restart=restart)
    user = make_user("olga", Role.DEVOPS)
    sign_in(page, live_server.url, "olga")

    # enrol: the secret typed into an "authenticator app" (computed here), confirmed with its first code
    page.get_by_role("banner").get_by_role("link", name="Turn on two-factor").click()
    page.locator("#two-factor-off").get_by_role("link", name="Turn on two-factor").click()
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    app = TOTP(b32decode(secret))
    app.time = time.time()
    page.fill("input[name=code]", f"{app.token():06d}")
    page.get_by_role("button", name="Turn on two-factor").click()
    expect(page.locator("ol.recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="Done").click()
    expect(page.locator("#two-factor-on")).to_contain_text("On")

    # the dashboard's Restart button on a tier-1 service: the code form takes the page's place
    page.get_by_role("link", name="Dashboard").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(".tile-wrap", has_text="Shop front").get_by_role("button", name="Restart").click()
    form = page.locator("#step-up")
    expect(form).to_contain_text("Restart Shop front needs a fresh two-factor code")
    assert not Operation.objects.filter(kind="restart_service").exists()

    page.fill("#step-up input[name=step_up_code]", totp_code(TOTPDevice.objects.get(user=user)))
    page.get_by_role("button", name="Confirm: Restart Shop front").click()
    expect(page.get_by_role("heading", name="Operation #")).to_contain_text("Service restart on service:shop")
    operation = Operation.objects.get(kind="restart_service")
    assert operation.target == "service:shop" and operation.requested_by == user
