"""Restarting a service: a real process, its real HTTP check, the view, a real Celery worker and the CLI."""

from __future__ import annotations

import os
import signal
import textwrap
import urllib.request
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from playwright.sync_api import expect

from hadr_portal.adapters.commands import run_program
from hadr_portal.core.catalog import CatalogError, catalog_import
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operations import operation_execute
from hadr_portal.core.permissions import Role
from hadr_portal.demo.catalog import demo_catalog
from hadr_portal.status.engine import checks_run
from hadr_portal.status.models import Check, Service
from hadr_portal.status.restart import restart_request
from tests.conftest import COMMAND_USER, command_python, make_user, sign_in, wait_for
from tests.infra.plugin import free_port
from tests.status.factories import make_check, make_service

# `shop.py serve PORT DELAY` answers GET /health after DELAY seconds (a service takes a moment to start);
# `shop.py start PIDFILE PORT DELAY` starts that in the background and returns at once, like an init script.
SHOP = textwrap.dedent(
    """
    import subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    if sys.argv[1] == "serve":
        time.sleep(float(sys.argv[3]))
        HTTPServer(("127.0.0.1", int(sys.argv[2])), Health).serve_forever()
    else:
        pidfile, port, delay = sys.argv[2:5]
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", port, delay],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        open(pidfile, "w").write(str(server.pid))
        print(f"started shop (pid {server.pid}) on port {port}")
    """
)


class Shop:
    """A real service for the restart to bring back: its process, port, and the restart command for it. It runs as
    the command user, as the portal's restart command will (in a directory that user can write)."""

    def __init__(self, root: Path) -> None:
        self.script, self.pidfile, self.port = root / "shop.py", root / "shop.pid", free_port()
        self.script.write_text(SHOP)
        self.pids: list[int] = []

    def restart_argv(self, delay: float = 0.0) -> list[str]:
        return [command_python(), str(self.script), "start", str(self.pidfile), str(self.port), str(delay)]

    def start(self) -> None:
        run_program(self.restart_argv(), user=COMMAND_USER)
        wait_for(self.answers, timeout=10, message="the shop did not start")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        pid = int(self.pidfile.read_text())
        self.pids.append(pid)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.answers(), timeout=5, message="the shop still answers")

    def stop(self) -> None:
        for pid in {*self.pids, *([int(self.pidfile.read_text())] if self.pidfile.exists() else [])}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def shop(exec_dir: Path) -> Iterator[Shop]:
    shop = Shop(exec_dir)
    yield shop
    shop.stop()


def shop_service(shop: Shop, *, argv: list[str] | None = None, **settings: float) -> tuple[Service, Check]:
    restart = {"controller": "command", "argv": argv or shop.restart_argv(delay=1.5), "timeout_seconds": 10}
    service = make_service("shop", display_name="Shop front", restart=restart | {"wait_seconds": 10} | settings)
    url = f"http://127.0.0.1:{shop.port}/health"
    return service, make_check(service, "health", config={"url": url}, timeout_seconds=1.0, failures_before_down=2)


def restart_url(service: Service) -> str:
    return reverse("status:service-restart", kwargs={"name": service.name})


def log_of(operation: Operation) -> list[str]:
    return list(operation.log_lines.values_list("message", flat=True))


def finished(operation: Operation, timeout: float = 30) -> Operation:
    def done() -> bool:
        operation.refresh_from_db()
        return not operation.is_active

    wait_for(done, timeout=timeout, message=f"operation #{operation.pk} still {operation.status}")
    return operation


# --- end to end: the page, a real worker, a real process --------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_devops_restarts_a_killed_service_from_the_page_and_the_cli_it_succeeds_once_green(
    client_as, shop, start_worker
):
    shop.start()
    service, check = shop_service(shop)
    checks_run([check.pk])
    shop.kill()
    checks_run([check.pk])
    check.refresh_from_db()
    # one failure of two allowed: the check (and the service) still say up although the process is dead
    assert (check.state, check.last_outcome, Service.objects.get().state) == ("up", "down", "up")
    start_worker("ops")
    devops = client_as(Role.DEVOPS)

    response = devops.post(restart_url(service))

    operation = Operation.objects.get(kind="restart_service")
    assert response.status_code == 302
    assert response.url == reverse("core:operation", kwargs={"pk": operation.pk})
    assert (operation.target, operation.parameters) == ("service:shop", {"service": "shop", "controller": "command"})
    assert finished(operation).status == Operation.Status.SUCCEEDED, operation.error
    assert shop.answers()
    log = log_of(operation)
    assert f"| started shop (pid {shop.pidfile.read_text()}) on port {shop.port}" in log
    rounds = [line for line in log if line.startswith("Checks, round")]
    assert "health: down" in rounds[0]  # the new process needs 1.5 s: the first round finds nobody listening
    assert rounds[-1].startswith(f"Checks, round {len(rounds)} (") and "all green — health: up" in rounds[-1]
    result = operation.result
    assert (result["controller"], result["check_rounds"], result["service_state"]) == ("command", len(rounds), "up")
    assert result["controller_seconds"] < 2 <= len(rounds) and 1.0 <= result["seconds_until_green"] < 10
    check.refresh_from_db()
    assert check.last_outcome == "up" and check.last_result_at >= operation.started_at
    entry = AuditEntry.objects.get(action="operation.restart_service")
    assert (entry.actor, entry.outcome, entry.target) == (devops.user, "accepted", "service:shop")
    assert "Restart of Shop front queued" in devops.get(response.url).content.decode()

    # the same from the command line (one worker for both: starting one takes seconds)
    shop.kill()
    out = StringIO()
    call_command("restart_service", "shop", "--wait", "--timeout", "30", stdout=out)
    printed = out.getvalue()
    assert "queued: restart of shop." in printed
    assert "| started shop" in printed and "all green — health: up" in printed
    assert "Operation succeeded." in printed
    assert "shop is green again " in printed
    assert shop.answers()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_devops_presses_restart_and_watches_it_succeed_without_a_reload(live_server, page, shop):
    shop_service(shop, argv=shop.restart_argv())
    make_user("dev", Role.DEVOPS)
    sign_in(page, live_server.url, "dev")
    page.goto(f"{live_server.url}/services/shop/")
    expect(page.locator("dl.facts")).to_contain_text("The portal runs")
    page.get_by_role("button", name="Restart").click()
    badge = page.locator(".operation-progress .badge")
    expect(badge).to_have_text("Queued")
    page.evaluate("window.__marker = 'same page'")
    # run here rather than on a worker (seconds to start): what matters is what the page shows meanwhile
    operation_execute(operation_id=Operation.objects.get().pk)
    expect(badge).to_have_text("Succeeded", timeout=15000)
    expect(page.get_by_label("Operation log")).to_contain_text("all green — health: up")
    assert page.evaluate("window.__marker") == "same page", "the page was reloaded"
    assert shop.answers()


# --- failures, run in this process ------------------------------------------------------------------


def restart_now(service: Service) -> Operation:
    operation = restart_request(service=service, actor=None)  # as the portal itself (the CLI without --user)
    operation_execute(operation_id=operation.pk)
    operation.refresh_from_db()
    return operation


def test_a_failing_restart_command_fails_the_operation_with_its_output(db, shop):
    failing = [command_python(), "-c", "import sys; print('stopping shop'); sys.exit('shop: port already in use')"]
    service, _ = shop_service(shop, argv=failing)
    operation = restart_now(service)
    assert operation.status == Operation.Status.FAILED
    assert operation.error.endswith(": exited with status 1: shop: port already in use")
    assert {"| stopping shop", "| shop: port already in use"} <= set(log_of(operation))
    assert not any(line.startswith("Checks, round") for line in log_of(operation))


@pytest.mark.slow  # waits out a hanging command's timeout
def test_a_missing_or_hanging_command_fails_with_why(db, shop):
    service, _ = shop_service(shop, argv=["/nonexistent/restart-shop"])
    assert restart_now(service).error == "restart-shop: program not found; is it installed?"
    hanging = [command_python(), "-c", "import time; print('waiting for a lock', flush=True); time.sleep(30)"]
    Service.objects.filter(pk=service.pk).update(
        restart={"controller": "command", "argv": hanging, "timeout_seconds": 1}
    )
    operation = restart_now(Service.objects.get())
    assert operation.error.endswith("timed out after 1 s")
    assert "| waiting for a lock" in log_of(operation)


@pytest.mark.slow  # waits for the deadline
def test_a_command_that_starts_nothing_fails_at_the_deadline_with_the_checks_reason(db, shop):
    service, _ = shop_service(shop, argv=[command_python(), "-c", "print('nothing to do')"], wait_seconds=2)
    operation = restart_now(service)
    assert operation.status == Operation.Status.FAILED
    assert operation.error.startswith("Shop front is not healthy 2 s after the restart: health: ")
    assert "refused" in operation.error.lower()
    assert len([line for line in log_of(operation) if line.startswith("Checks, round")]) >= 2


# --- who may, and how often -------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER, Role.DBA, Role.PRODUCT_MANAGER])
def test_only_devops_may_restart(client_as, shop, role):
    service, _ = shop_service(shop)
    client = client_as(role)
    assert client.post(restart_url(service)).status_code == 403
    assert client.get(restart_url(service)).status_code == 403
    assert not Operation.objects.exists()
    page = client.get(reverse("status:service", kwargs={"name": "shop"})).content.decode()
    assert "then runs its health check every second until it is green" in page  # what a restart does is no secret
    assert restart_url(service) not in page
    assert restart_url(service) not in client.get(reverse("dashboard")).content.decode()


def test_a_double_click_makes_one_operation(client_as, shop):
    service, _ = shop_service(shop)
    devops = client_as(Role.DEVOPS)
    page = devops.get(reverse("status:service", kwargs={"name": "shop"})).content.decode()
    assert f'action="{restart_url(service)}"' in page
    first = devops.post(restart_url(service))
    second = devops.post(restart_url(service), follow=True)
    operation = Operation.objects.get()
    assert first.url == second.redirect_chain[0][0] == reverse("core:operation", kwargs={"pk": operation.pk})
    assert f"Another operation on service:shop is already in progress (#{operation.pk}, queued)" in (
        second.content.decode()
    )
    page = devops.get(reverse("status:service", kwargs={"name": "shop"})).content.decode()
    assert "disabled" in page.split(">Restart</button>")[0].rsplit("<button", 1)[1]


def test_the_tile_button_posts_through_htmx_and_sends_the_browser_to_the_operation(client_as, shop):
    service, _ = shop_service(shop)
    make_service("no-controller")
    devops = client_as(Role.DEVOPS)
    board = devops.get(reverse("dashboard")).content.decode()
    assert board.count('hx-post="/services/') == 1 and f'hx-post="{restart_url(service)}"' in board
    assert 'hx-confirm="Restart Shop front? The portal runs ' in board
    response = devops.post(restart_url(service), headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == reverse("core:operation", kwargs={"pk": Operation.objects.get().pk})


def test_a_service_without_a_restart_controller_is_refused_with_a_reason(client_as):
    make_service("reports", display_name="Reports")
    response = client_as(Role.DEVOPS).post(reverse("status:service-restart", kwargs={"name": "reports"}), follow=True)
    assert response.redirect_chain == [(reverse("status:service", kwargs={"name": "reports"}), 302)]
    assert "Reports has no restart controller" in response.content.decode()
    assert not Operation.objects.exists()
    with pytest.raises(CommandError, match="No service named 'nope'"):
        call_command("restart_service", "nope")


# --- bad restart settings never get into the catalog ----------------------------------------------


def test_bad_restart_settings_are_refused_by_the_import_and_the_form(client_as):
    bad = {"controller": "command", "argv": "systemctl restart web", "timeout": 5}
    with pytest.raises(CatalogError) as refused:
        catalog_import({"services": [{"name": "web", "display_name": "Web", "kind": "web", "restart": bad}]})
    assert refused.value.problems == [
        "services[0] (web).restart: argv: expected a list of strings: the program and its arguments, e.g. "
        '["/usr/local/bin/restart-web", "--graceful"], got \'systemctl restart web\'. timeout: not a setting of '
        "the command controller (argv, controller, cwd, env, timeout_seconds, wait_seconds)."
    ]

    make_service("web", display_name="Web")
    devops = client_as(Role.DEVOPS)
    url = reverse("status:service-edit", kwargs={"name": "web"})
    fields = {"name": "web", "display_name": "Web", "kind": "web", "tier": "2", "owner_role": "DevOps"}
    fields |= {"rto_minutes": "60", "rpo_minutes": "60"}
    webhook = fields | {"restart_controller": "webhook", "restart_timeout_seconds": "60", "restart_wait_seconds": "120"}
    response = devops.post(url, webhook | {"restart_url": "ftp://deploy.example.com/hook"})
    assert response.status_code == 400
    assert "url: expected an http(s) URL" in response.content.decode()
    assert devops.post(url, webhook | {"restart_url_env": "DEPLOY_HOOK_URL"}).status_code == 302
    assert Service.objects.get(name="web").restart == {"controller": "webhook", "url_env": "DEPLOY_HOOK_URL"}
    assert devops.post(url, fields | {"restart_controller": "none"}).status_code == 302
    assert Service.objects.get(name="web").restart == {}
    # the systemd controller is code: it is written only in the catalog file (tests/security/test_commands.py)
    response = devops.post(url, fields | {"restart_controller": "none", "restart": '{"controller": "systemd"}'})
    assert response.status_code == 400 and Service.objects.get(name="web").restart == {}


def test_the_demo_application_restarts_through_the_local_environment_only():
    def onboarding(environ: dict[str, str]) -> dict:
        return next(s for s in demo_catalog(environ)["services"] if s["name"] == "onboarding-app")["restart"]

    assert onboarding({}) == {}  # e.g. under Docker Compose: a worker cannot restart another container
    restart = onboarding({"HADR_RUN_DIR": "/srv/hadr/.run", "HADR_DEMO_PYTHON": "/usr/bin/python3"})
    localenv = str(Path(__file__).parents[2] / "scripts" / "localenv.py")
    assert restart["argv"] == ["/usr/bin/python3", localenv, "--run-dir", "/srv/hadr/.run", "restart", "demo-app"]
    assert "env" not in restart  # run as the command user, given no variable: the run directory holds the rest
