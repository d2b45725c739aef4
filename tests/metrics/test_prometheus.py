"""/metrics: refused without the token or an allowed network, and what it serves passes `promtool check metrics`."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import ip_network

import pytest
from django.test import Client
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from hadr_portal.status import engine
from tests.status.factories import make_check, make_service

pytestmark = pytest.mark.django_db
TOKEN = "scrape-token-0123456789"


@pytest.fixture
def scrape_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return settings


def scrape(token: str | None = None, address: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return Client(REMOTE_ADDR=address).get(reverse("prometheus-metrics"), headers=headers)


def test_without_token_or_network_configured_metrics_is_off(settings, db):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []
    response = scrape(TOKEN)
    assert response.status_code == 403
    assert b"set HADR_METRICS_TOKEN or HADR_METRICS_ALLOWED_NETWORKS" in response.content


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_a_missing_or_wrong_token_is_401(scrape_settings, token):
    response = scrape(token)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_allowed_network_needs_no_token_and_others_are_refused(settings, db):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = [ip_network("10.1.0.0/16")]
    assert scrape(address="10.1.2.3").status_code == 200
    refused = scrape(address="10.2.0.1")
    assert refused.status_code == 403
    assert b"10.2.0.1 is not in HADR_METRICS_ALLOWED_NETWORKS" in refused.content


def test_the_exposition_has_every_figure_and_passes_promtool(scrape_settings, portal_data):
    response = scrape(TOKEN)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    for sample in (
        'hadr_service_state{service="shop",state="up",tier="1"} 1.0',
        'hadr_check_latency_seconds{check="health",kind="http",service="shop"} 0.042',
        'hadr_replication_lag_bytes{cluster="demo",node="replica"} 2048.0',
        'hadr_backup_rpo_objective_seconds{cluster="demo",database="onboarding",policy="demo-onboarding"} 86400.0',
        'hadr_restore_drill_last_duration_seconds{target="cluster:demo"} 840.0',
        'hadr_operations{kind="backup",status="failed"} 1.0',
        'hadr_funnel_conversion_ratio{funnel="onboarding",step="overall",window="7d"} 0.21',
        'hadr_funnel_conversion_ratio{funnel="onboarding",step="email_verified",window="today"} 0.7',
        'hadr_funnel_step_reached{funnel="onboarding",step="signed_up",window="30d"} 3000.0',
        'hadr_funnel_stale{funnel="onboarding"} 0.0',
        'hadr_host_disk_ratio{check="resources",path="/",service="worker-host"} 0.71',
        'hadr_database_size_bytes{cluster="demo",database="onboarding"} 9.5e+06',
    ):
        assert sample in text, sample
    assert (
        'hadr_backup_last_good_age_seconds{cluster="demo",database="onboarding",policy="demo-onboarding"} 108' in text
    )
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; `make install-dev` installs it)")
    check = subprocess.run([promtool, "check", "metrics"], input=response.content, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert check.stdout.decode().strip() == check.stderr.decode().strip() == ""  # no lint warnings either


def test_the_demo_replicas_lag_is_in_a_real_scrape(scrape_settings, demo_cluster):
    """The lag the replica's postgres check read from the real streaming replica is the sample /metrics serves."""
    checks = [
        make_check(make_service(f"demo-db-{node.name}", kind="database"), "postgres", "postgres", node=node)
        for node in demo_cluster.nodes.all()
    ]
    engine.checks_run([check.pk for check in checks])
    replica = demo_cluster.nodes.get(name="replica")
    assert replica.last_probe["role"] == "replica" and replica.last_probe["lag_bytes"] is not None

    response = scrape(TOKEN)
    assert response.status_code == 200
    samples = {
        (sample.labels["cluster"], sample.labels["node"]): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        if family.name == "hadr_replication_lag_bytes"
        for sample in family.samples
    }
    assert samples == {("demo", "replica"): float(replica.last_probe["lag_bytes"])}  # a primary has no such lag
