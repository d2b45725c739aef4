"""Findings 5 and 6: secrets never leave — not through the audit log, the catalog export, the Errors page, the
500 page, nor gunicorn's access log (heartbeat tokens); and the local environment's logs are private files."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, reverse

from hadr_portal.core.catalog import CatalogError, catalog_import, catalog_load_toml
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Role
from hadr_portal.metrics.models import LoggedError
from hadr_portal.status.models import AlertChannel, Check
from tests.conftest import ROOT, wait_for
from tests.infra.plugin import free_port
from tests.status.factories import make_check, make_service

PASSWORD = "hunter2-" + "Xq9"  # the secret each attack tries to get out (built: the debug page shows source lines)
DSN = f"postgresql://app:{PASSWORD}@db.internal:5432/app"


def crash(request: HttpRequest) -> HttpResponse:
    """A view failing with a DSN in its exception and in a local variable, as a broken connection would."""
    dsn = DSN
    raise RuntimeError(f"could not connect to {dsn}")


urlpatterns = [path("crash/", crash), path("", include("hadr_portal.urls"))]


# --- audit ----------------------------------------------------------------------------------------


def test_an_audited_action_never_stores_a_password_from_its_parameters(client_as):
    make_service("shop", tier=1)
    devops = client_as(Role.DEVOPS)
    response = devops.post(
        reverse("status:maintenance", kwargs={"name": "shop"}),
        {"hours": "1", "reason": f"moving {DSN} to the new server"},
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action__startswith="catalog.maintenance")
    assert PASSWORD not in str(entry.parameters) and "[redacted]" in entry.parameters["reason"]
    assert "moving postgresql://app:[redacted]@db.internal:5432/app" in entry.parameters["reason"]
    page = client_as(Role.VIEWER).get(reverse("core:audit"))
    assert page.status_code == 200 and PASSWORD not in page.content.decode()


# --- the catalog as code --------------------------------------------------------------------------


def test_the_catalog_export_never_carries_url_credentials(db):
    """Rows written before URLs with credentials were refused: the export cuts the credentials out."""
    service = make_service("shop", description=f"orders live in {DSN}")
    make_check(service, config={"url": f"https://monitor:{PASSWORD}@shop.example.com/health"})
    heartbeat = make_check(service, "nightly", kind="heartbeat", config={"period_seconds": 3600})
    AlertChannel.objects.create(name="chat", kind="webhook", address=f"https://hook:{PASSWORD}@chat.example.com/x")
    out = StringIO()
    call_command("catalog", "export", "-", "--with-tokens", stdout=out)
    exported = out.getvalue()
    assert PASSWORD not in exported
    assert "https://monitor:[redacted]@shop.example.com/health" in exported
    assert heartbeat.token in exported  # asked for with --with-tokens: kept

    # The export cannot be imported back as it is: a URL with credentials is refused, and the message says where
    # they belong.
    with pytest.raises(CatalogError) as refused:
        catalog_import(catalog_load_toml(exported))
    problems = "\n".join(refused.value.problems)
    assert "services[0] (shop).checks[0] (health).config.url: The URL carries credentials" in problems
    assert "name it in url_env" in problems
    assert "alert_channels[0] (chat).target: The URL carries credentials" in problems and "target_env" in problems


def test_a_check_url_with_credentials_is_refused_by_the_form_and_kept_in_the_environment(client_as, monkeypatch):
    make_service("shop", tier=1)
    devops = client_as(Role.DEVOPS)
    url = reverse("status:check-new", kwargs={"name": "shop"})
    fields = {"name": "api", "kind": "http", "enabled": "on", "interval_seconds": "30", "timeout_seconds": "5"}
    fields |= {"failures_before_down": "2", "expected_status": "200"}
    response = devops.post(url, fields | {"url": f"https://monitor:{PASSWORD}@shop.example.com/health"})
    assert response.status_code == 400
    assert "The URL carries credentials (…@shop.example.com)" in response.content.decode()
    assert PASSWORD not in response.content.decode().split("<form", 1)[0]  # not repeated in the message
    assert not Check.objects.filter(name="api").exists()
    assert devops.post(url, fields | {"url_env": "HADR_SHOP_HEALTH_URL"}).status_code == 302
    assert Check.objects.get(name="api").config["url_env"] == "HADR_SHOP_HEALTH_URL"


# --- the Errors page and the 500 page -------------------------------------------------------------


def test_a_logged_dsn_or_heartbeat_token_reaches_the_errors_page_redacted(transactional_db, client_as):
    log = logging.getLogger("hadr_portal.tests.secrets")
    log.error("replica unreachable: %s", DSN)
    try:
        raise ConnectionError(f"connection to {DSN} failed")
    except ConnectionError:
        log.exception("Internal Server Error: /push/heartbeat/Tok3n-Of-A-Check")
    rows = list(LoggedError.objects.filter(logger="hadr_portal.tests.secrets").order_by("id"))
    assert [row.message for row in rows] == [
        "replica unreachable: postgresql://app:[redacted]@db.internal:5432/app",
        "Internal Server Error: /push/heartbeat/[redacted]",
    ]
    assert "ConnectionError" in rows[1].exception and PASSWORD not in rows[1].exception
    page = client_as(Role.VIEWER).get(reverse("metrics:errors"))
    assert page.status_code == 200
    assert PASSWORD not in page.content.decode() and "Tok3n-Of-A-Check" not in page.content.decode()
    assert "replica unreachable: postgresql://app:[redacted]@" in page.content.decode()


def test_rows_written_before_redaction_are_shown_redacted(db, client_as):
    LoggedError.objects.create(level="ERROR", logger="old", message=f"GET /push/heartbeat/oldtoken1 {DSN}")
    page = client_as(Role.VIEWER).get(reverse("metrics:errors")).content.decode()
    assert PASSWORD not in page and "oldtoken1" not in page and "/push/heartbeat/[redacted]" in page


@pytest.mark.urls(__name__)
def test_the_500_page_shows_no_secret(transactional_db, client_as, settings):
    settings.DEBUG = False
    client = client_as(Role.VIEWER)
    client.raise_request_exception = False
    response = client.get("/crash/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body and PASSWORD not in body and "RuntimeError" not in body
    logged = LoggedError.objects.get(message="Internal Server Error: /crash/")
    assert "RuntimeError: could not connect to postgresql://app:[redacted]@db.internal" in logged.exception
    assert PASSWORD not in logged.exception


@pytest.mark.urls(__name__)
def test_the_debug_page_is_redacted_too(transactional_db, client_as, settings):
    """HADR_DEBUG is never for production; should it be on, the page still keeps the secrets out."""
    settings.DEBUG = True
    client = client_as(Role.VIEWER)
    client.raise_request_exception = False
    body = client.get("/crash/").content.decode()
    assert "could not connect to" in body  # Django's debug page, with the exception
    assert PASSWORD not in body and os.environ["HADR_SECRET_KEY"] not in body


# --- gunicorn's access log ------------------------------------------------------------------------


def test_a_heartbeat_token_never_reaches_the_access_log(transactional_db, tmp_path: Path):
    """gunicorn started exactly as `make run` starts it (scripts/localenv.py), on a free port, against the test
    database; a cron job pings its heartbeat with the token in the URL, and in a query string."""
    from django.db import connection

    from scripts.localenv import PROCESSES

    check = make_check(make_service("cron", kind="job"), "nightly", kind="heartbeat", config={"period_seconds": 60})
    port = free_port()
    values = {"bin": str(Path(sys.executable).parent), "web_port": str(port), "python": sys.executable, "run": ""}
    argv = [part.format(**values) for part in PROCESSES["web"]]
    assert "--logger-class" in argv
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="hadr_portal.settings")
    env["HADR_DATABASE_URL"] = env["HADR_DATABASE_URL"].rsplit("/", 1)[0] + f"/{connection.settings_dict['NAME']}"
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        web = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/login/", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return web.poll() is not None  # stop waiting if it died

        wait_for(answers, timeout=60, message=f"gunicorn did not start: {log_path.read_text()[-2000:]}")
        assert web.poll() is None, log_path.read_text()[-2000:]
        with urllib.request.urlopen(f"{base}/push/heartbeat/{check.token}?token={check.token}", timeout=10) as r:
            assert r.read() == b"OK\n"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
    text = log_path.read_text()
    assert "/push/heartbeat/[redacted]?token=[redacted]" in text, text[-2000:]
    assert check.token not in text
    check.refresh_from_db()
    assert check.last_ping_at is not None  # the ping itself worked


# --- file modes of the local environment ------------------------------------------------------------


def test_the_local_environment_writes_its_logs_and_secrets_for_its_user_only(tmp_path: Path, monkeypatch):
    from hadr_portal.adapters.pg.server import LocalInstance
    from scripts import localenv

    run = tmp_path / "run"
    monkeypatch.setattr(localenv, "PIDS", run / "pids")
    monkeypatch.setattr(localenv, "LOGS", run / "logs")
    monkeypatch.setattr(localenv, "SECRETS", run / "secrets")
    (run / "logs").mkdir(parents=True)
    old = run / "logs" / "old.log"
    old.write_text("written by an earlier version\n")
    old.chmod(0o644)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    for name in ("web", "old"):
        pid = localenv.spawn(name, [sys.executable, "-c", "print('started')"], dict(os.environ))
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped: subprocess's clean-up of dropped Popen objects (any thread)
            pass
    assert mode(run / "logs" / "web.log") == 0o600 and "started" in (run / "logs" / "web.log").read_text()
    assert mode(old) == 0o600 and old.read_text().startswith("written by an earlier version")
    assert mode(run / "logs") == 0o700 and mode(run / "pids") == 0o700

    localenv.secret("test-secret")
    assert mode(run / "secrets") == 0o700 and mode(run / "secrets" / "test-secret") == 0o600
    localenv.write_private(run / "env", "export X=1\n")
    assert mode(run / "env") == 0o600

    instance = LocalInstance(run / "pg" / "portal", free_port())
    instance.data_dir.parent.mkdir(parents=True)
    instance.ensure_log_file()
    assert mode(instance.log_file) == 0o600  # the server's log: the postgres user's own
