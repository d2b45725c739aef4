"""Finding 3: a postgres check's (or a funnel's) `dsn_env` could name any environment variable — the portal's
secret key, its own database URL — and the value came back in the error text.

Now a DSN is read only from HADR_DSN_* variables (refused when saved, and again when run), and errors name
the variable, never its value: neither the URL nor its password reaches a message, a page or the history.
"""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from hadr_portal.core.catalog import CatalogError, catalog_import
from hadr_portal.core.permissions import Role
from hadr_portal.demo.catalog import DEMO_FUNNEL
from hadr_portal.metrics.funnels import FunnelUnavailable, funnel_collect
from hadr_portal.metrics.models import Funnel
from hadr_portal.status import engine
from hadr_portal.status.models import Check, CheckResult
from tests.conftest import make_user
from tests.infra.plugin import free_port
from tests.metrics.factories import make_funnel
from tests.status.factories import make_check, make_service

pytestmark = pytest.mark.django_db

PASSWORD = "Tr0ub4dor-and-3"


def check_form(**config: str) -> dict[str, str]:
    return {
        "name": "portal-db",
        "kind": "postgres",
        "enabled": "on",
        "interval_seconds": "30",
        "timeout_seconds": "5",
        "failures_before_down": "1",
        **config,
    }


@pytest.mark.parametrize("variable", ["HADR_SECRET_KEY", "HADR_DATABASE_URL"])
def test_devops_cannot_save_a_check_reading_the_portals_own_secrets(client_as, variable):
    make_service("shop")
    devops = client_as(Role.DEVOPS)

    response = devops.post(reverse("status:check-new", kwargs={"name": "shop"}), check_form(dsn_env=variable))

    assert response.status_code == 400
    assert "The name of a HADR_DSN_* environment variable holding the DSN" in response.content.decode()
    assert not Check.objects.filter(name="portal-db").exists()
    ok = devops.post(reverse("status:check-new", kwargs={"name": "shop"}), check_form(dsn_env="HADR_DSN_PORTAL"))
    assert ok.status_code == 302
    assert Check.objects.get(name="portal-db").config["dsn_env"] == "HADR_DSN_PORTAL"


def test_a_catalog_import_naming_the_portals_secrets_is_refused(demo_cluster):
    devops = make_user("devops", Role.DEVOPS)
    service = {
        "name": "portal-db",
        "display_name": "Portal database",
        "kind": "database",
        "checks": [{"name": "postgres", "kind": "postgres", "config": {"dsn_env": "HADR_DATABASE_URL"}}],
    }
    funnel = {**DEMO_FUNNEL, "cluster": "", "dsn_env": "HADR_SECRET_KEY"}

    with pytest.raises(CatalogError) as error:
        catalog_import({"services": [service], "funnels": [funnel]}, actor=devops)

    problems = "\n".join(error.value.problems)
    assert "services[0] (portal-db).checks[0] (postgres).config.dsn_env: The name of a HADR_DSN_*" in problems
    assert "funnels[0] (onboarding).dsn_env: The name of a HADR_DSN_* environment variable" in problems
    assert not Check.objects.exists() and not Funnel.objects.exists()


def test_a_check_saved_before_the_rule_is_refused_when_it_runs_and_echoes_nothing(client_as):
    service = make_service("portal-db")
    check = make_check(service, "postgres", kind="postgres", config={"dsn_env": "HADR_DATABASE_URL"})

    engine.checks_run([check.pk])

    check.refresh_from_db()
    assert check.last_message == "refused: HADR_DATABASE_URL is not a DSN variable; DSNs are read only from HADR_DSN_*"
    page = client_as(Role.VIEWER).get(reverse("status:service", kwargs={"name": "portal-db"})).content.decode()
    assert os.environ["HADR_DATABASE_URL"] not in page and "HADR_DATABASE_URL is not a DSN variable" in page


@pytest.mark.parametrize(
    ("dsn", "said"),
    [
        ("postgresql://app:{password}@127.0.0.1:{port}/app", "connection refused"),  # a closed port
        # libpq cannot parse these, and its message would quote the password
        ("postgresql://app:{password}%zz@127.0.0.1:{port}/app", "HADR_DSN_LEAKY does not hold a valid PostgreSQL DSN"),
        (
            "host=127.0.0.1 port={port} user=app password={password} sslmode=nonsense",
            'invalid sslmode value: "nonsense"',
        ),
    ],
    ids=["closed port", "bad URL", "bad option"],
)
def test_a_dsn_with_a_password_never_shows_in_the_error(client_as, monkeypatch, dsn, said):
    value = dsn.format(password=PASSWORD, port=free_port())
    monkeypatch.setenv("HADR_DSN_LEAKY", value)
    make_service("shop")
    devops = client_as(Role.DEVOPS)
    devops.post(reverse("status:check-new", kwargs={"name": "shop"}), check_form(dsn_env="HADR_DSN_LEAKY"))
    check = Check.objects.get(name="portal-db")

    engine.checks_run([check.pk])

    check.refresh_from_db()
    assert check.last_outcome == "down"
    messages = [check.last_message, *CheckResult.objects.filter(health_check=check).values_list("message", flat=True)]
    page = client_as(Role.VIEWER).get(reverse("status:service", kwargs={"name": "shop"})).content.decode()
    for text in [*messages, page]:
        assert PASSWORD not in text and value not in text
    assert said in check.last_message


def test_a_funnel_dsn_with_a_password_never_shows_in_its_error(db, monkeypatch):
    for value in (
        f"postgresql://app:{PASSWORD}@127.0.0.1:{free_port()}/app",
        f"postgresql://app:{PASSWORD}%zz@127.0.0.1:{free_port()}/app",
    ):
        monkeypatch.setenv("HADR_DSN_LEAKY_REPLICA", value)
        funnel = make_funnel(f"leaky-{len(value)}", cluster="", node="", dsn_env="HADR_DSN_LEAKY_REPLICA")
        with pytest.raises(FunnelUnavailable) as error:
            funnel_collect(funnel=funnel)
        funnel.refresh_from_db()
        for text in (str(error.value), funnel.last_error):
            assert text.startswith("HADR_DSN_LEAKY_REPLICA")
            assert PASSWORD not in text and value not in text


def test_an_unset_dsn_variable_says_so_instead_of_connecting_anywhere(db):
    service = make_service("portal-db")
    check = make_check(service, "postgres", kind="postgres", config={"dsn_env": "HADR_DSN_NOT_THERE"})
    engine.checks_run([check.pk])
    check.refresh_from_db()
    assert (check.last_outcome, check.last_message) == ("down", "HADR_DSN_NOT_THERE is not set")
