"""Finding 1: commands are code, not form fields.

A DevOps account could save a service's restart controller as a shell command in the service form; the ops worker
ran it as root, with the portal's own variables passed through `env`, and its output was shown to every account.
Each test below is that attack (or a part of it) against the real stack, refused now:

- the service form refuses a command it did not offer (and audits the attempt); an allowlisted program is run by a
  real worker as the unprivileged command user, without the portal's variables;
- the catalog file may not pass the portal's variables to a program (restart commands, node controllers, hooks);
- an operation's output is redacted when written, and shown only to the roles that may run the operation.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from hadr_portal.adapters.commands import env_name_problem, env_problems
from hadr_portal.core.catalog import CatalogError, catalog_dump_toml, catalog_import
from hadr_portal.core.models import AuditEntry, Operation, OperationLogLine
from hadr_portal.core.operations import operation_execute
from hadr_portal.core.permissions import Role
from hadr_portal.status.models import Service
from hadr_portal.status.restart import restart_request
from tests.conftest import COMMAND_USER, wait_for
from tests.status.factories import SERVICE_FORM_FIELDS, make_service

ROOT = Path(__file__).resolve().parents[2]
SHELL_COMMAND = {"controller": "command", "argv": ["/bin/sh", "-c", "id > /tmp/pwned"], "env": ["HADR_SECRET_KEY"]}


def edit_url(name: str = "shop") -> str:
    return reverse("status:service-edit", kwargs={"name": name})


def refusals() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action="catalog.service.restart", outcome=AuditEntry.Outcome.REFUSED))


def restart_script(directory: Path, body: str) -> Path:
    """An executable the command user can run (the directory is theirs to read)."""
    script = directory / "restart-shop"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


# --- (a) the form refuses what it did not offer ------------------------------------------------------


def test_devops_posting_a_shell_command_in_the_service_form_is_refused_saved_nowhere_and_audited(client_as):
    make_service("shop", display_name="Shop")
    devops = client_as(Role.DEVOPS)

    response = devops.post(edit_url(), SERVICE_FORM_FIELDS | {"restart": json.dumps(SHELL_COMMAND)})

    assert response.status_code == 400
    page = response.content.decode()
    assert "This form no longer takes the restart setting as JSON (a command controller was sent)" in page
    assert "defined only in the catalog file" in page
    assert Service.objects.get(name="shop").restart == {}
    [entry] = refusals()
    assert (entry.actor, entry.target, entry.address) == (devops.user, "service:shop", "127.0.0.1")
    assert "/bin/sh" in entry.parameters["attempted"]

    # the same with the form's own fields: a command or systemd controller is not one of its choices
    for controller in ("command", "systemd"):
        response = devops.post(edit_url(), SERVICE_FORM_FIELDS | {"restart_controller": controller})
        assert response.status_code == 400
        assert f"A {controller} controller cannot be written here." in response.content.decode()
    assert Service.objects.get(name="shop").restart == {}
    assert len(refusals()) == 3

    # nor through a new service
    response = devops.post(reverse("status:service-new"), SERVICE_FORM_FIELDS | {"name": "evil", "restart": "{}"})
    assert response.status_code == 400 and not Service.objects.filter(name="evil").exists()
    assert refusals()[0].target == "service:evil"


def test_a_program_outside_the_allowlist_is_refused_and_audited(client_as, settings, exec_dir):
    allowed = restart_script(exec_dir, "echo restarted\n")
    settings.COMMAND_ALLOWLIST = [str(allowed)]
    make_service("shop", display_name="Shop")
    devops = client_as(Role.DEVOPS)

    page = devops.get(edit_url()).content.decode()
    assert f'<option value="{allowed}">{allowed}</option>' in page
    assert "Run an allowlisted program" in page and "systemd" not in page.split("<legend>Restart</legend>")[1]

    response = devops.post(
        edit_url(), SERVICE_FORM_FIELDS | {"restart_controller": "program", "restart_program": "/bin/sh"}
    )
    assert response.status_code == 400
    assert "/bin/sh is not in the command allowlist (HADR_COMMAND_ALLOWLIST: " in response.content.decode()
    assert Service.objects.get(name="shop").restart == {}
    [entry] = refusals()
    assert entry.parameters == {"attempted": "/bin/sh"} and entry.actor == devops.user


def test_a_catalog_command_is_kept_as_it_is_and_shown_read_only(client_as):
    catalog_command = {"controller": "command", "argv": ["/usr/local/bin/restart-shop", "--graceful"]}
    make_service("shop", display_name="Shop", restart=catalog_command | {"env": ["APP_ENV"], "cwd": "/srv/shop"})
    devops = client_as(Role.DEVOPS)
    page = devops.get(edit_url()).content.decode()
    assert "Keep the command defined in the catalog file" in page
    assert "It runs /usr/local/bin/restart-shop --graceful, with the variables APP_ENV, in /srv/shop" in page
    # saving other fields keeps it, whatever else is posted in the restart fields
    fields = SERVICE_FORM_FIELDS | {"display_name": "Shop front", "restart_controller": "keep"}
    response = devops.post(edit_url(), fields | {"restart_program": "/bin/sh", "restart_arguments": "-c\nid"})
    assert response.status_code == 302
    service = Service.objects.get(name="shop")
    assert (service.display_name, service.restart) == (
        "Shop front",
        catalog_command | {"env": ["APP_ENV"], "cwd": "/srv/shop"},
    )
    assert not refusals()


# --- (b) an allowlisted program, run by a real worker as the command user -----------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_allowlisted_program_runs_on_a_real_worker_as_the_command_user_without_the_portals_variables(
    client_as, settings, exec_dir, start_worker
):
    seen = exec_dir / "seen"
    script = restart_script(exec_dir, f'{{ id -un; printf "%s\\n" "$@"; env; }} > {seen}\necho "shop restarted"\n')
    settings.COMMAND_ALLOWLIST = [str(script)]
    make_service("shop", display_name="Shop")
    devops = client_as(Role.DEVOPS)
    fields = SERVICE_FORM_FIELDS | {"restart_controller": "program", "restart_program": str(script)}
    response = devops.post(edit_url(), fields | {"restart_arguments": "--graceful\n$HOME; rm -rf / `id`"})
    assert response.status_code == 302, response.content.decode()
    assert Service.objects.get(name="shop").restart == {
        "controller": "command",
        "argv": [str(script), "--graceful", "$HOME; rm -rf / `id`"],  # one argument each, never a shell
    }
    assert AuditEntry.objects.get(action="catalog.service.update").outcome == "success"

    start_worker("ops")
    response = devops.post(reverse("status:service-restart", kwargs={"name": "shop"}))
    operation = Operation.objects.get(kind="restart_service")

    def finished() -> bool:
        operation.refresh_from_db()
        return not operation.is_active

    wait_for(finished, timeout=30, message="the restart did not finish")
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    user, graceful, literal, *environment = seen.read_text().splitlines()
    assert user == (COMMAND_USER if os.geteuid() == 0 else os.environ.get("USER", user))
    assert (graceful, literal) == ("--graceful", "$HOME; rm -rf / `id`")
    names = {line.split("=", 1)[0] for line in environment if "=" in line}
    assert not [name for name in names if name.startswith(("HADR_", "DJANGO_", "PG", "AWS_", "CELERY_"))]
    if os.geteuid() == 0:
        assert "HOME=/root" not in environment
    assert "| shop restarted" in operation.log_lines.values_list("message", flat=True)


# --- (c) the catalog file may not hand the portal's variables to a program ----------------------------


def test_catalog_import_refuses_env_naming_the_portals_secrets(db, tmp_path):
    forbidden = ["HADR_SECRET_KEY", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"]
    restart = {"controller": "command", "argv": ["/usr/local/bin/restart-shop"], "env": ["APP_ENV", *forbidden]}
    data = {"services": [{"name": "shop", "display_name": "Shop", "kind": "web", "restart": restart}]}
    with pytest.raises(CatalogError) as refused:
        catalog_import(data)
    assert refused.value.problems == [
        "services[0] (shop).restart: "
        "env: HADR_SECRET_KEY may not be passed to a program: HADR_* variables are the portal's own settings and "
        "secrets (its database URL, its secret key). "
        "env: PGPASSWORD may not be passed to a program: PG* variables are PostgreSQL client settings, passwords "
        "included (libpq, pgBackRest). "
        "env: AWS_SECRET_ACCESS_KEY may not be passed to a program: AWS_* variables are AWS credentials and settings "
        "(the portal's S3 and ECS access)."
    ]
    # the same file through the command line, and for node controllers and post-failover hooks
    cluster = {
        "name": "main",
        "nodes": [
            {
                "name": "db1",
                "host": "10.0.0.11",
                "port": 5432,
                "controller": {"controller": "command", "stop": ["/usr/local/bin/stop-pg"], "env": ["PGPASSWORD"]},
            }
        ],
        "post_failover_hook": {"argv": ["/usr/local/bin/point-dsn"], "env": ["HADR_DATABASE_URL", "DNS_ZONE"]},
    }
    file = tmp_path / "catalog.toml"
    file.write_text(catalog_dump_toml({**data, "clusters": [cluster]}))
    with pytest.raises(CommandError) as error:
        call_command("catalog", "import", str(file))
    said = str(error.value)
    assert "3 problems, nothing was changed" in said
    assert "clusters[0] (main).nodes[0] (db1).controller: env: PGPASSWORD may not be passed to a program" in said
    assert "clusters[0] (main).post_failover_hook: env: HADR_DATABASE_URL may not be passed to a program" in said
    assert "DNS_ZONE" not in said
    assert not Service.objects.exists()


def test_every_variable_the_portal_reads_is_refused_to_a_program():
    source = (ROOT / "hadr_portal" / "settings.py").read_text()
    read = set(re.findall(r"\benv(?:_bool|_int|_list|_required)?\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    assert "HADR_SECRET_KEY" in read and "HADR_COMMAND_ALLOWLIST" in read
    others = ["DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "REDIS_URL", "DATABASE_URL", "SECRET_KEY"]
    others += ["PGPASSWORD", "PGPASSFILE", "PGBACKREST_REPO1_S3_KEY", "AWS_SESSION_TOKEN", "SSH_AUTH_SOCK"]
    allowed = [name for name in [*read, *(f"{name}_FILE" for name in read), *others] if env_name_problem(name) is None]
    assert not allowed, f"a program could be handed these: {allowed}"
    assert env_problems(["APP_ENV", "DNS_ZONE", "ONBOARDING_DSN"]) == []


# --- (d) who reads an operation's output, and what is stored ------------------------------------------


@pytest.fixture
def leaky_restart(db, exec_dir) -> Operation:
    """A restart whose command prints a database URL with its password and fails with it (run in this process)."""
    script = restart_script(
        exec_dir, 'echo "connecting to postgresql://app:s3cr3t-pass@db.internal:5432/app"\necho "gave up" >&2\nexit 1\n'
    )
    service = make_service("shop", display_name="Shop", restart={"controller": "command", "argv": [str(script)]})
    operation = restart_request(service=service, actor=None)
    operation_execute(operation_id=operation.pk)
    operation.refresh_from_db()
    assert operation.status == Operation.Status.FAILED
    return operation


def test_stored_output_holds_no_password(leaky_restart):
    messages = list(OperationLogLine.objects.filter(operation=leaky_restart).values_list("message", flat=True))
    assert "| connecting to postgresql://app:[redacted]@db.internal:5432/app" in messages
    assert not [message for message in messages if "s3cr3t-pass" in message]
    assert "s3cr3t-pass" not in leaky_restart.error and "s3cr3t-pass" not in str(leaky_restart.result)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER, Role.DBA, Role.PRODUCT_MANAGER])
def test_only_those_who_may_restart_see_a_restarts_output(client_as, leaky_restart, role):
    url = reverse("core:operation", kwargs={"pk": leaky_restart.pk})
    reader = client_as(role)
    for headers in ({}, {"HX-Request": "true"}):  # the page, and the progress partial it polls
        html = reader.get(url, headers=headers).content.decode()
        assert "Output is shown to the roles that may run this operation (DevOps)." in html
        assert "Failed" in html  # the status is for everyone
        assert "postgresql://" not in html and "gave up" not in html and "exited with status" not in html
    listing = reader.get(reverse("core:operations"), {"q": "postgresql"}).content.decode()
    assert "No operations match." in listing  # errors are not searchable by those who may not read them
    listing = reader.get(reverse("core:operations")).content.decode()
    assert "exited with status" not in listing and "shown to DevOps" in listing


def test_devops_sees_a_restarts_output_redacted(client_as, leaky_restart):
    devops = client_as(Role.DEVOPS)
    url = reverse("core:operation", kwargs={"pk": leaky_restart.pk})
    for headers in ({}, {"HX-Request": "true"}):
        html = devops.get(url, headers=headers).content.decode()
        assert "| connecting to postgresql://app:[redacted]@db.internal:5432/app" in html
        assert "restart-shop: exited with status 1: gave up" in html
        assert "s3cr3t-pass" not in html and "Output is shown to the roles" not in html
    listing = devops.get(reverse("core:operations"), {"q": "gave up"}).content.decode()
    assert f"#{leaky_restart.pk}" in listing
