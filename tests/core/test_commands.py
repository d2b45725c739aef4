"""Management commands: the CLI path to the same services, permissions and audit."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class

from hadr_portal.core.cli import OperationCommand
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.permissions import Role
from tests.conftest import make_user


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    "name",
    ["backup", "restore", "restore_drill", "connectivity_check", "failover", "rebuild_replica", "restart_service"],
)
def test_every_command_that_queues_an_operation_acts_as_a_user_and_can_wait(name):
    command = load_command_class(get_commands()[name], name)
    assert isinstance(command, OperationCommand)
    usage = command.create_parser("manage.py", name).format_help()
    assert "--user USER" in usage and "--wait" in usage and "--timeout TIMEOUT" in usage


def test_connectivity_check_command_queues_as_the_named_user(demo_cluster):
    make_user("dora", Role.DBA)
    output = run("connectivity_check", "demo", "--user", "dora", "--sample-seconds", "2")
    operation = Operation.objects.get()
    assert f"Operation #{operation.pk} queued" in output
    assert operation.parameters["sample_seconds"] == 2
    assert AuditEntry.objects.get(operation=operation).actor_name == "dora"


def test_connectivity_check_command_refuses_clearly(demo_cluster):
    make_user("val", Role.VIEWER)
    with pytest.raises(CommandError, match="Only DevOps, DBA, Developer may do this"):
        run("connectivity_check", "demo", "--user", "val")
    with pytest.raises(CommandError, match=r"No cluster named 'nope' \(known: demo\)"):
        run("connectivity_check", "nope")
    with pytest.raises(CommandError, match="No active account named 'ghost'"):
        run("connectivity_check", "demo", "--user", "ghost")
    with pytest.raises(CommandError, match="Sampling time must be between 0 and 600"):
        run("connectivity_check", "demo", "--sample-seconds", "9999")
    assert not Operation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_connectivity_check_command_waits_and_shows_the_log(demo_cluster, start_worker):
    start_worker("ops")
    output = run("connectivity_check", "demo", "--wait", "--timeout", "60")
    assert "replica (127.0.0.1" in output
    assert "Operation succeeded." in output


def test_operations_command_lists_shows_and_cancels(demo_cluster):
    dba = make_user("dba", Role.DBA)
    run("connectivity_check", "demo", "--user", "dba")
    operation = Operation.objects.get()
    assert f"#{operation.pk}" in run("operations", "list", "--active")
    assert "Connectivity check on cluster:demo: queued" in run("operations", "show", str(operation.pk))
    assert "cancelled" in run("operations", "cancel", str(operation.pk), "--user", dba.username)
    with pytest.raises(CommandError, match="cannot be cancelled: it has already cancelled"):
        run("operations", "cancel", str(operation.pk), "--user", dba.username)
    with pytest.raises(CommandError, match="No operation #999999"):
        run("operations", "show", "999999")
    assert "Reaped: nothing" in run("operations", "reap")
