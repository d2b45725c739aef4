"""Finding 8: the headers a browser needs to protect the portal's users.

A Content-Security-Policy with a nonce and no 'unsafe-inline' on every page (and no inline script or style left
for it to block: checked in the HTML and in Chromium, which reports every violation), a Permissions-Policy, no
caching of signed-in pages (static files stay cacheable), and HSTS preload only when the domain's owner says so.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect

from hadr_portal.backups.models import Backup
from hadr_portal.core.models import Operation
from hadr_portal.core.permissions import Role
from hadr_portal.incidents.models import Incident
from hadr_portal.status.models import Service
from tests.conftest import make_user, sign_in
from tests.metrics.conftest import portal_data  # noqa: F401 - the fixture: services, funnels, backups, operations

ROOT = Path(__file__).resolve().parents[2]
NONCE = re.compile(r"script-src 'self' 'nonce-([A-Za-z0-9+/=]+)'")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
STYLE = re.compile(r"<style\b|\sstyle=", re.IGNORECASE)
ADMIN_PAGES = ["/admin/", "/admin/metrics/funnel/add/", "/admin/auth/user/"]


@pytest.fixture
def pages(portal_data) -> list[str]:  # noqa: F811
    """One URL of every kind of page, with data on it (charts, bars, tables, forms)."""
    backup = Backup.objects.first()
    operation = Operation.objects.first()
    incident = Incident.objects.create(
        title="Shop is down", severity="sev1", service=Service.objects.get(name="shop"), opened_at=timezone.now()
    )
    return [
        "/",
        "/services/shop/",
        "/services/shop/edit",
        "/services/shop/checks/new",
        "/metrics/overview/",
        "/errors/",
        "/backups/",
        f"/backups/{backup.pk}/",
        "/backups/restores/",
        "/backups/policies/demo-onboarding/retention",
        "/databases/",
        "/databases/demo/failover",
        "/incidents/",
        f"/incidents/{incident.pk}/",
        "/contacts/",
        "/priorities/",
        "/readiness/",
        "/runbooks/",
        "/runbooks/service-failure/",
        "/audit/",
        "/operations/",
        f"/operations/{operation.pk}/",
        "/roles/",
        reverse("accounts:two-factor"),
        reverse("accounts:enrol"),  # the QR code is inline SVG: attributes only, no style
    ]


@pytest.fixture
def administrator(db) -> Client:
    client = Client()
    client.force_login(make_user("root", Role.DEVOPS, Role.DBA, superuser=True))
    return client


def test_every_page_has_a_nonce_csp_and_no_inline_script_or_style(administrator, pages):
    for url in pages:
        response = administrator.get(url)
        assert response.status_code == 200, (url, response.status_code)
        policy = response["Content-Security-Policy"]
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, url
        for directive in (
            "default-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ):
            assert directive in policy, (url, directive)
        nonce = NONCE.search(policy)
        assert nonce, (url, policy)
        html = response.content.decode()
        assert f'nonce="{nonce[1]}"' in html, url
        assert not INLINE_SCRIPT.search(html), (url, INLINE_SCRIPT.search(html))
        assert not STYLE.search(html), (url, html[max(0, STYLE.search(html).start() - 200) :][:400])


def test_htmx_fragments_carry_no_inline_style_either(administrator, pages):
    for url in pages:
        html = administrator.get(url, headers={"HX-Request": "true"}).content.decode()
        assert not STYLE.search(html) and not INLINE_SCRIPT.search(html), url


def test_admin_and_sign_in_pages_have_the_policy_too(administrator):
    for url in ADMIN_PAGES:
        response = administrator.get(url)
        assert response.status_code == 200, url
        assert "default-src 'self'" in response["Content-Security-Policy"]
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    response = Client().get("/login/")
    assert "script-src 'self' 'nonce-" in response["Content-Security-Policy"]
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]


def test_the_csrf_failure_page_needs_no_inline_style(db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("dev", Role.DEVELOPER))
    response = client.post("/incidents/open", {"title": "x", "severity": "sev2"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "nothing was changed" in html and not STYLE.search(html) and not INLINE_SCRIPT.search(html)


def test_the_nonce_is_new_for_every_response(administrator, pages):
    nonces = {NONCE.search(administrator.get("/")["Content-Security-Policy"])[1] for _ in range(3)}
    assert len(nonces) == 3


def test_permissions_policy_turns_off_what_the_portal_never_uses(administrator, db):
    for response in (administrator.get("/"), Client().get("/login/"), Client().get("/healthz")):
        policy = response["Permissions-Policy"]
        for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
            assert feature in policy


def test_signed_in_pages_are_never_stored_and_static_files_are(administrator, pages):
    for url in [*pages, *ADMIN_PAGES]:
        response = administrator.get(url)
        assert "no-store" in response["Cache-Control"], url
        assert "cookie" in response["Vary"].lower(), url
    static = administrator.get("/static/css/portal.css")
    assert static.status_code == 200
    assert "no-store" not in static.get("Cache-Control", "")


def test_an_anonymous_push_is_not_marked_private(db):
    assert "no-store" not in Client().get("/push/heartbeat").get("Cache-Control", "")


@override_settings(SECURE_SSL_REDIRECT=False, SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True)
def test_hsts_preload_only_when_asked(db):
    with override_settings(SECURE_HSTS_PRELOAD=False):
        header = Client().get("/login/", secure=True)["Strict-Transport-Security"]
        assert header == "max-age=31536000; includeSubDomains"
    with override_settings(SECURE_HSTS_PRELOAD=True):
        assert Client().get("/login/", secure=True)["Strict-Transport-Security"].endswith("; preload")


def _settings_with(**env: str) -> str:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("HADR_", "DJANGO_"))}
    clean.update(
        {
            "HADR_SECRET_KEY": secrets.token_urlsafe(60),
            "HADR_DATABASE_URL": "postgres://portal@127.0.0.1:1/portal",
            "HADR_REDIS_URL": "redis://127.0.0.1:1/0",
            "DJANGO_SETTINGS_MODULE": "hadr_portal.settings",
            **env,
        }
    )
    code = "from django.conf import settings; print(settings.SECURE_HSTS_PRELOAD, settings.SECURE_HSTS_SECONDS)"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.slow  # starts interpreters
def test_the_preload_setting_comes_from_the_environment_only():
    assert _settings_with(HADR_HTTPS="true") == "False 31536000"
    assert _settings_with(HADR_HTTPS="true", HADR_HSTS_PRELOAD="true") == "True 31536000"
    assert _settings_with(HADR_HSTS_PRELOAD="true") == "False 0"  # without HTTPS there is no HSTS at all


# --- In Chromium ----------------------------------------------------------------------------------


@pytest.fixture
def violations(page: Page) -> Iterator[list[str]]:
    """Every CSP violation (and Permissions-Policy complaint) Chromium reports, by event and on the console."""
    found: list[str] = []
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', function (e) {"
        " (window.__violations = window.__violations || []).push(e.violatedDirective + ' ' + e.blockedURI"
        " + ' ' + (e.sample || '')); });"
    )

    def console(message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or text.startswith("Refused to") or "Permissions-Policy" in text:
            found.append(f"{page.url}: {text}")

    page.on("console", console)
    page.on("pageerror", lambda error: found.append(f"{page.url}: page error {error}"))
    yield found


def _visit(page: Page, url: str, found: list[str]) -> None:
    response = page.goto(url)
    assert response is not None and response.ok, (url, response and response.status)
    page.wait_for_load_state("networkidle")
    if page.locator("[hx-trigger*='every']").count():
        page.wait_for_timeout(1200)  # polling pages refresh every second in tests: let htmx swap once
    found.extend(f"{url}: {text}" for text in page.evaluate("window.__violations || []"))


WALK_PARTS = 3  # the walk is cut in parts that the test processes share out (each part signs in anew)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("part", range(WALK_PARTS))
def test_chromium_reports_no_csp_violation_on_any_page(live_server, page, violations, pages, part):
    make_user("root", Role.DEVOPS, Role.DBA, superuser=True)
    sign_in(page, live_server.url, "root")
    expect(page.locator("header.topbar nav")).to_be_visible()
    urls = [*pages, *ADMIN_PAGES][part::WALK_PARTS]
    assert urls
    for url in urls:
        _visit(page, live_server.url + url, violations)
    assert violations == []


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_check_form_still_shows_only_the_chosen_kinds_settings(live_server, page, violations, pages):
    make_user("dev", Role.DEVOPS)
    sign_in(page, live_server.url, "dev")
    page.goto(f"{live_server.url}/services/shop/checks/new")
    expect(page.locator("#id_url")).to_be_hidden()  # no kind chosen yet: no kind's settings
    page.select_option("#id_kind", "tcp")
    expect(page.locator("#id_port")).to_be_visible()
    expect(page.locator("#id_url")).to_be_hidden()
    page.select_option("#id_kind", "heartbeat")
    expect(page.locator("#id_period_seconds")).to_be_visible()
    expect(page.locator("#id_port")).to_be_hidden()
    assert violations == []


def _wait_until(page: Page, condition: str, timeout: float = 10) -> None:
    """Poll from Python: page.wait_for_function evaluates a string in the page, which the CSP (rightly) refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):
        assert time.monotonic() < deadline, f"not within {timeout} s: {condition}"
        page.wait_for_timeout(100)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_polling_pauses_while_the_reader_types(live_server, page, violations, pages):
    make_user("olga", Role.DEVOPS)
    sign_in(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/services/shop/")
    page.evaluate(
        "window.__swaps = 0; document.body.addEventListener('htmx:afterSwap', function () { window.__swaps++; });"
    )
    _wait_until(page, "window.__swaps >= 1")  # it refreshes every second
    page.locator("input[name=reason]").click()
    page.keyboard.type("upgrade of the shop")
    before = page.evaluate("window.__swaps")
    page.wait_for_timeout(2500)
    assert page.evaluate("window.__swaps") == before, "the page refreshed under the reader's typing"
    assert page.locator("input[name=reason]").input_value() == "upgrade of the shop"
    page.locator("h1").click()  # the focus leaves the field: refreshing resumes
    _wait_until(page, f"window.__swaps > {before}")
    assert violations == []
