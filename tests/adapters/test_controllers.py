"""Restart controllers against real parts: programs, a local HTTP server, ECS over HTTP (moto's server)."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from hadr_portal.adapters.controllers import (
    CommandController,
    ControllerConfigError,
    ControllerFailed,
    SystemdController,
    WebhookController,
    controller_from_config,
)
from tests.conftest import COMMAND_USER, command_python
from tests.infra.plugin import free_port
from tests.status.factories import http_target

PY = command_python()  # the programs run as the command user when the tests run as root


def python(code: str, **settings: Any) -> CommandController:
    controller = controller_from_config({"controller": "command", "argv": [PY, "-c", code], **settings})
    assert isinstance(controller, CommandController)
    return controller


# --- command --------------------------------------------------------------------------------------


def test_command_passes_only_the_named_variables_and_captures_both_outputs(exec_dir):
    controller = python(
        "import os, sys; print('restarted in', os.getcwd(), os.environ.get('APP_ENV'));"
        "print('secret key:', os.environ.get('HADR_SECRET_KEY')); print('a warning', file=sys.stderr)",
        env=["APP_ENV", "UNSET_NAME"],
        cwd=str(exec_dir),
    )
    result = controller.restart(service="shop", environ={"APP_ENV": "demo", "HADR_SECRET_KEY": "portal secret"})
    assert result.output == f"restarted in {exec_dir} demo\nsecret key: None\na warning"
    assert result.details == {"exit_status": 0}
    assert controller.describe().startswith(f"runs {PY} -c ")


def test_command_exiting_non_zero_fails_with_its_output():
    controller = python("import sys; print('stopping shop'); print('port 8001 in use', file=sys.stderr); sys.exit(3)")
    with pytest.raises(ControllerFailed) as failed:
        controller.restart(service="shop")
    assert str(failed.value).endswith(": exited with status 3: port 8001 in use")
    assert failed.value.output == "stopping shop\nport 8001 in use"


def test_missing_program_fails_clearly():
    controller = controller_from_config({"controller": "command", "argv": ["/nonexistent/restart-shop"]})
    with pytest.raises(ControllerFailed, match=r"restart-shop: program not found"):
        controller.restart(service="shop")


@pytest.mark.slow  # waits out the timeout
def test_command_is_stopped_at_its_timeout_with_what_it_wrote():
    controller = python("import time; print('stuck waiting for a lock', flush=True); time.sleep(30)", timeout_seconds=1)
    with pytest.raises(ControllerFailed, match="timed out after 1 s") as failed:
        controller.restart(service="shop")
    assert failed.value.output == "stuck waiting for a lock"


@pytest.mark.skipif(os.geteuid() != 0, reason="the command user is switched to only when the worker is root")
def test_as_root_a_command_runs_as_the_command_user_with_its_home():
    controller = python("import getpass, os; print(getpass.getuser(), os.getuid(), os.environ['HOME'])")
    user = pwd.getpwnam(COMMAND_USER)
    assert controller.restart(service="shop").output == f"{COMMAND_USER} {user.pw_uid} {user.pw_dir}"
    missing = controller_from_config({"controller": "command", "argv": [PY, "-c", "pass"]}, command_user="no-such-user")
    with pytest.raises(ControllerFailed, match=r"'no-such-user' \(HADR_COMMAND_USER\) does not exist.*`make install`"):
        missing.restart(service="shop")


# --- systemd: there is no systemd in the test environment, so only the command it runs is checked ---------


def test_systemd_runs_systemctl_restart_for_a_valid_unit():
    assert controller_from_config({"controller": "systemd", "unit": "web.service"}).argv == (
        "systemctl",
        "restart",
        "web.service",
    )
    user_unit = controller_from_config({"controller": "systemd", "unit": "worker@ops.service", "user": True})
    assert isinstance(user_unit, SystemdController)
    assert user_unit.argv == ("systemctl", "--user", "restart", "worker@ops.service")
    assert user_unit.describe() == "runs systemctl --user restart worker@ops.service"


@pytest.mark.parametrize("unit", ["--now", "web service", "web;reboot", "", "../x.service", "a" * 300])
def test_systemd_refuses_what_is_not_a_unit_name(unit):
    with pytest.raises(ControllerConfigError, match="unit: expected a systemd unit name"):
        controller_from_config({"controller": "systemd", "unit": unit})


# --- webhook (a real local HTTP server) ---------------------------------------------------------------


def test_webhook_posts_json_with_a_header_from_the_environment():
    with http_target() as target:
        target.body = b'{"deploying": true}'
        controller = controller_from_config(
            {"controller": "webhook", "url": target.url + "/hooks/restart", "headers_env": {"X-Token": "HOOK_TOKEN"}},
            allow_private=True,  # the target is on loopback (tests/security/test_ssrf.py: refused by default)
        )
        result = controller.restart(service="shop", operation=42, environ={"HOOK_TOKEN": "s3cret"})
    assert target.received == [{"service": "shop", "action": "restart", "operation": 42}]
    assert target.headers[0]["X-Token"] == "s3cret"
    assert (result.output, result.details) == ('{"deploying": true}', {"http_status": 200})
    assert controller.describe() == f"POSTs to {target.url}"


def test_webhook_answering_500_fails_with_the_body():
    with http_target() as target:
        target.status, target.body = 500, b"deploy pipeline is locked"
        controller = controller_from_config({"controller": "webhook", "url_env": "HOOK_URL"}, allow_private=True)
        with pytest.raises(ControllerFailed, match=rf"^{target.url} answered HTTP 500$") as failed:
            controller.restart(service="shop", environ={"HOOK_URL": target.url + "/restart?token=secret"})
    assert failed.value.output == "deploy pipeline is locked"
    assert "secret" not in str(failed.value)  # the URL's path and query may hold a token: never in a message


def test_webhook_refused_connection_and_missing_variables_fail_clearly():
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ControllerFailed, match=rf"cannot reach {closed}: .*[Cc]onnection refused"):
        WebhookController(url=closed + "/restart", timeout=2, allow_private=True).restart(service="shop")
    with pytest.raises(ControllerFailed, match=r"environment variable HOOK_TOKEN .* is not set"):
        WebhookController(url=closed, headers_env=(("X-Token", "HOOK_TOKEN"),), allow_private=True).restart(
            service="shop", environ={}
        )


# --- ECS (moto's server over HTTP) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ecs_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.slow  # a moto server
def test_ecs_forces_a_new_deployment(ecs_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # boto3's usual chain: here, the environment
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ecs = boto3.client("ecs", endpoint_url=ecs_endpoint, region_name="eu-west-1")
    ecs.create_cluster(clusterName="prod")
    ecs.register_task_definition(
        family="shop", containerDefinitions=[{"name": "web", "image": "shop:1", "memory": 128}]
    )
    ecs.create_service(cluster="prod", serviceName="shop", taskDefinition="shop", desiredCount=2)
    before = ecs.describe_services(cluster="prod", services=["shop"])["services"][0]["deployments"][0]["id"]

    controller = controller_from_config(
        {"controller": "ecs", "cluster": "prod", "service": "shop", "region": "eu-west-1", "endpoint_url": ecs_endpoint}
    )
    result = controller.restart(service="shop")

    after = ecs.describe_services(cluster="prod", services=["shop"])["services"][0]["deployments"][0]["id"]
    assert after != before
    assert result.details == {"deployment_id": after}
    assert result.output == f"ECS service shop in cluster prod: new deployment {after}, 2 task(s) desired"
    missing = controller_from_config(
        {"controller": "ecs", "cluster": "prod", "service": "gone", "region": "eu-west-1", "endpoint_url": ecs_endpoint}
    )
    with pytest.raises(ControllerFailed, match="ECS refused: ServiceNotFoundException"):
        missing.restart(service="gone")


# --- the catalog's table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "problems"),
    [
        ({"argv": ["x"]}, ["controller: required; one of command, systemd, webhook, ecs."]),
        (
            {"controller": "ansible"},
            ["controller: unknown controller 'ansible'; one of command, systemd, webhook, ecs."],
        ),
        ({"controller": "command"}, ["argv: required for the command controller"]),
        ({"controller": "command", "argv": "systemctl restart web"}, ["argv: expected a list of strings"]),
        ({"controller": "command", "argv": ["systemctl", 3]}, ["argv: expected a list of strings"]),
        ({"controller": "command", "argv": []}, ["argv: expected a list of strings"]),
        (
            {"controller": "command", "argv": ["x"], "timeout_seconds": "60", "wait_seconds": -1},
            [
                "timeout_seconds: expected a number of seconds from 1 to 3600, got '60'.",
                "wait_seconds: expected a number of seconds from 0 to 3600, got -1.",
            ],
        ),
        ({"controller": "command", "argv": ["x"], "env": ["lower"]}, ["env: expected a list of environment variable"]),
        (
            {"controller": "command", "argv": ["x"], "env": ["APP_ENV", "HADR_SECRET_KEY", "PGPASSWORD"]},
            [
                "env: HADR_SECRET_KEY may not be passed to a program: HADR_* variables are the portal's own",
                "env: PGPASSWORD may not be passed to a program: PG* variables are PostgreSQL client settings",
            ],
        ),
        ({"controller": "command", "argv": ["x"], "cwd": "relative"}, ["cwd: expected an absolute directory path"]),
        ({"controller": "command", "argv": ["x"], "shell": True}, ["shell: not a setting of the command controller"]),
        ({"controller": "webhook"}, ["url, url_env: give the webhook's URL"]),
        ({"controller": "webhook", "url": "ftp://x"}, ["url: expected an http(s) URL"]),
        ({"controller": "webhook", "url": "http://x", "url_env": "HOOK"}, ["— not both."]),
        ({"controller": "ecs", "cluster": "prod"}, ["service: required for the ecs controller"]),
        (["systemctl", "restart"], ["Expected a table such as"]),
    ],
)
def test_bad_tables_are_refused_with_every_problem_named(config, problems):
    with pytest.raises(ControllerConfigError) as refused:
        controller_from_config(config)
    assert len(refused.value.problems) == len(problems), refused.value.problems
    for said, expected in zip(refused.value.problems, problems, strict=True):
        assert expected in said
