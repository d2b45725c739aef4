"""A catalog entry names the variables whose values it sends somewhere: a cluster's password, a webhook's URL and
headers, S3 keys. An account that may edit the entry could name one of the portal's own secrets
(HADR_SECRET_KEY, HADR_DATABASE_URL …) and point the entry at a server of its own, which would receive it.

Each attack below is refused when saved (the service form, the admin, the catalog import) and, for a row written
straight into the database, when it runs: the secret's value never leaves.
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.urls import reverse

from hadr_portal.core.catalog import CatalogError, catalog_import
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster, Purpose
from hadr_portal.status.models import AlertChannel, Service
from tests.conftest import make_user
from tests.status.factories import SERVICE_FORM_FIELDS, make_service

pytestmark = pytest.mark.django_db


class Recorder(BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:
        Recorder.received.append(str(self.headers))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener():
    Recorder.received = []
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_devops_cannot_make_a_restart_webhook_send_the_secret_key_as_a_header(client_as, listener):
    make_service("shop", display_name="Shop")
    devops = client_as(Role.DEVOPS)
    fields = SERVICE_FORM_FIELDS | {
        "restart_controller": "webhook",
        "restart_url": listener,
        "restart_headers_env": "Authorization = HADR_SECRET_KEY",
    }

    response = devops.post(reverse("status:service-edit", kwargs={"name": "shop"}), fields)

    assert response.status_code == 400
    assert "never one of the portal&#x27;s own secrets" in response.content.decode()
    assert Service.objects.get(name="shop").restart == {}


def test_a_catalog_import_naming_the_portals_secrets_as_credentials_is_refused(listener):
    devops = make_user("devops", Role.DEVOPS)
    data = {
        "clusters": [
            {
                "name": "evil",
                "user": "postgres",
                "password_env": "HADR_DATABASE_URL",
                "nodes": [{"name": "n1", "host": "127.0.0.1", "port": 5999}],
            }
        ],
        "alert_channels": [{"name": "leak", "kind": "webhook", "target_env": "HADR_SECRET_KEY"}],
    }

    with pytest.raises(CatalogError) as error:
        catalog_import(data, actor=devops)

    problems = "\n".join(error.value.problems)
    assert "HADR_DATABASE_URL is one of the portal's own secrets" in problems
    assert "HADR_SECRET_KEY is one of the portal's own secrets" in problems
    assert not Cluster.objects.filter(name="evil").exists() and not AlertChannel.objects.filter(name="leak").exists()


def test_a_row_written_before_the_rule_never_sends_the_secret(demo_cluster):
    Cluster.objects.filter(pk=demo_cluster.pk).update(monitor_user="attacker", monitor_password_env="HADR_SECRET_KEY")
    node = demo_cluster.nodes.get(name="primary")
    node.cluster.refresh_from_db()

    address = node.address(Purpose.MONITOR)

    assert address.user == "attacker"
    assert address.password == "" and os.environ["HADR_SECRET_KEY"] not in address.conninfo()


def test_a_webhook_saved_before_the_rule_is_refused_when_it_runs(listener):
    from hadr_portal.adapters.controllers import ControllerFailed, WebhookController

    controller = WebhookController(
        url=listener, headers_env=(("Authorization", "HADR_SECRET_KEY"),), timeout=5, allow_private=True
    )

    with pytest.raises(ControllerFailed, match="HADR_SECRET_KEY is one of the portal's own secrets"):
        controller.restart(service="shop")

    assert Recorder.received == []
