"""The pages and actions through HTTP: logins, htmx fragments, permissions on every state-changing URL.

These run in `db` tests (one transaction per test): `transaction.on_commit` never fires, so a
requested operation stays queued and no Celery worker is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, include, path, reverse

from hadr_portal import urls as root_urls
from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry, Operation, OperationLogLine
from hadr_portal.core.permissions import Action, Role
from hadr_portal.databases.services import connectivity_check_request
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

# (url name, whether it needs an operation's pk, id of the htmx fragment or None when the page has none)
PAGES = [
    ("dashboard", False, "board"),
    ("core:operations", False, "operations-table"),
    ("core:operation", True, None),  # id="operation-<pk>", checked with the pk
    ("core:audit", False, "audit-table"),
    ("core:roles", False, None),
    ("databases:clusters", False, "clusters"),
]

# URL names whose POST the walk below does not try: the admin has its own permission system,
# and login/logout are meant to be posted by anyone.
# login/logout; and the token-authenticated machine endpoints (tested in tests/status/test_push_and_alerts.py and
# tests/metrics/test_ingest.py)
# The sign-in's code step and each account's own two-factor pages (accounts:) are for every signed-in account
# (tested in tests/security/test_signin.py).
WALK_SKIP_NAMES = {
    "login",
    "login-code",
    "logout",
    "status:heartbeat",
    "status:heartbeat-header",
    "status:host-report",
    "metrics:funnel-counts",
}
WALK_SKIP_NAMESPACES = {"admin", "accounts"}


@pytest.fixture
def operation(db: None) -> Operation:
    """A queued operation on a target no view uses, so it conflicts with nothing."""
    return Operation.objects.create(kind="connectivity_check", target="test:sample")


def _url(name: str, operation: Operation) -> str:
    return reverse(name, kwargs={"pk": operation.pk}) if name == "core:operation" else reverse(name)


def _vary(response) -> set[str]:  # type: ignore[no-untyped-def]
    return {item.strip().lower() for item in response.get("Vary", "").split(",") if item.strip()}


def _walk(patterns: list, namespace: str = "", prefix: str = "") -> Iterator[tuple[str, list[str], str]]:  # type: ignore[type-arg]
    """Every URL pattern as (qualified name, kwarg names, route for messages), through includes."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in WALK_SKIP_NAMESPACES:
                continue
            inner = f"{namespace}:{entry.namespace}" if namespace and entry.namespace else entry.namespace or namespace
            yield from _walk(entry.url_patterns, inner or "", prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            assert entry.name, f"URL pattern {route!r} has no name; name it so the permission walk can reverse it"
            qualified = f"{namespace}:{entry.name}" if namespace else entry.name
            yield qualified, list(entry.pattern.regex.groupindex), route


# --- logins ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "needs_pk", "fragment"), PAGES)
def test_anonymous_is_sent_to_the_login_page(client: Client, operation: Operation, name, needs_pk, fragment):
    url = _url(name, operation)
    response = client.get(url)
    assert response.status_code == 302, url
    assert response.url.startswith(reverse("login") + "?next="), response.url


def test_anonymous_post_on_an_action_is_sent_to_the_login_page(client: Client, demo_cluster, operation):
    for url in (
        reverse("databases:check", kwargs={"name": demo_cluster.name}),
        reverse("core:operation-cancel", kwargs={"pk": operation.pk}),
    ):
        response = client.post(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login") + "?next="), response.url
    assert list(Operation.objects.values_list("pk", "status")) == [(operation.pk, "queued")]
    assert not AuditEntry.objects.exists()


def test_login_page_and_healthz_need_no_login(client: Client):
    login = client.get(reverse("login"))
    assert login.status_code == 200
    assert b'name="password"' in login.content
    health = client.get(reverse("healthz"))
    assert health.status_code in (200, 503)
    assert health["Content-Type"] == "application/json"


# --- pages and their htmx fragments ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "needs_pk", "fragment"), PAGES)
def test_pages_render_in_full_for_a_viewer(client_as, demo_cluster, operation, name, needs_pk, fragment):
    response = client_as(Role.VIEWER).get(_url(name, operation))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html
    assert "</html>" in html
    if fragment:
        assert f'id="{fragment}"' in html
    assert "hx-request" in _vary(response)


@pytest.mark.parametrize(("name", "needs_pk", "fragment"), [page for page in PAGES if page[0] != "core:roles"])
def test_htmx_requests_get_only_the_fragment(client_as, demo_cluster, operation, name, needs_pk, fragment):
    fragment = fragment or f"operation-{operation.pk}"
    response = client_as(Role.VIEWER).get(_url(name, operation), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert "<h1" not in html  # only the partial, not the page around it
    assert f'id="{fragment}"' in html
    assert html.lstrip().startswith("<div"), html[:200]
    assert "hx-request" in _vary(response)


def test_boosted_htmx_requests_get_the_whole_page(client_as):
    response = client_as(Role.VIEWER).get(reverse("dashboard"), headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert response.status_code == 200
    assert b"<html" in response.content


def test_missing_operation_is_404(client_as):
    assert client_as(Role.VIEWER).get(reverse("core:operation", kwargs={"pk": 999999})).status_code == 404


# --- permissions on every state-changing URL -------------------------------------------------------


def test_the_walk_finds_the_known_urls():
    names = {name for name, _, _ in _walk(get_resolver().url_patterns)}
    assert {"databases:check", "core:operation-cancel", "dashboard", "databases:clusters", "healthz"} <= names
    assert not any(name.startswith("admin:") for name in names)


def _viewer_post_answers(viewer: Client, samples: dict[str, object]) -> dict[str, int]:
    """POST as `viewer` to every URL the resolver knows (but the skipped ones): {url name: status}."""
    answers: dict[str, int] = {}
    for name, kwarg_names, route in _walk(get_resolver().url_patterns):
        if name in WALK_SKIP_NAMES:
            continue
        missing = [kwarg for kwarg in kwarg_names if kwarg not in samples]
        assert not missing, f"{name} ({route}) needs a sample value for {missing}: add one to `samples`"
        url = reverse(name, kwargs={kwarg: samples[kwarg] for kwarg in kwarg_names})
        answers[name] = viewer.post(url, {"sample_seconds": "0"}).status_code
    return answers


def _not_refused(answers: dict[str, int]) -> dict[str, int]:
    return {name: status for name, status in answers.items() if status not in (403, 405)}


@pytest.fixture
def walk_samples(demo_cluster, operation) -> dict[str, object]:
    """A cluster and a service both named `demo`, a check, an operation: every URL kwarg has a real target."""
    from tests.status.factories import make_check, make_service

    check = make_check(make_service(demo_cluster.name), kind="tcp", config={"host": "127.0.0.1", "port": 1})
    return {
        "pk": operation.pk,
        "name": demo_cluster.name,
        "check_id": check.pk,
        "node": "replica",
        "member": "replica",
        "action": "restart",
        "step": "run",
        "number": 1,
    }


def test_a_viewer_is_refused_on_every_state_changing_url(client_as, walk_samples, operation):
    """Walks the whole URL configuration; a new view that forgets its permission check fails here."""
    from hadr_portal.status.models import Check, Service

    operations_before = set(Operation.objects.values_list("pk", flat=True))
    catalog_before = (list(Service.objects.values()), list(Check.objects.values()))
    answers = _viewer_post_answers(client_as(Role.VIEWER), walk_samples)
    wrong = _not_refused(answers)
    assert not wrong, f"a Viewer's POST was not refused (want 403, or 405 for GET-only pages): {wrong}"
    refused = {name for name, status in answers.items() if status == 403}
    assert {
        "databases:check",
        "core:operation-cancel",
        "status:service-edit",
        "status:check-new",
        "status:check-edit",
        "status:check-delete",
        "status:maintenance",
        "status:service-new",
        "status:service-restart",
        "backups:restore-start",
        "backups:restore-step",
        "backups:restore-drop-kept",
        "backups:drill-now",
    } <= refused, answers
    assert set(Operation.objects.values_list("pk", flat=True)) == operations_before
    assert (list(Service.objects.values()), list(Check.objects.values())) == catalog_before
    operation.refresh_from_db()
    assert operation.status == Operation.Status.QUEUED
    assert not operation.cancel_requested
    # nothing but (possibly) refusals was written to the audit log
    assert (
        not AuditEntry.objects.exclude(action__startswith="auth.").exclude(outcome=AuditEntry.Outcome.REFUSED).exists()
    )


def _rogue_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A state-changing view that forgot its permission check (for the test below)."""
    Operation.objects.filter(pk=pk).update(status=Operation.Status.CANCELLED)
    return HttpResponseRedirect("/")


# Used only through `pytest.mark.urls(__name__)`: the real URLs plus one unprotected action.
urlpatterns = [
    *root_urls.urlpatterns,
    path("rogue/", include(([path("<int:pk>/cancel", _rogue_view, name="cancel")], "rogue"))),
]


@pytest.mark.urls(__name__)
def test_the_walk_catches_a_view_without_a_permission_check(client_as, walk_samples):
    answers = _viewer_post_answers(client_as(Role.VIEWER), walk_samples)
    assert _not_refused(answers) == {"rogue:cancel": 302}
    assert answers["databases:check"] == 403


# --- the connectivity check action ---------------------------------------------------------------


def test_dba_requests_a_connectivity_check(client_as, demo_cluster):
    dba = client_as(Role.DBA)
    response = dba.post(reverse("databases:check", kwargs={"name": demo_cluster.name}), {"sample_seconds": "3"})
    operation = Operation.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("core:operation", kwargs={"pk": operation.pk})
    assert operation.status == Operation.Status.QUEUED
    assert (operation.kind, operation.target) == ("connectivity_check", "cluster:demo")
    assert operation.parameters == {"cluster": "demo", "sample_seconds": 3}
    assert operation.requested_by == dba.user
    assert operation.requested_from == "127.0.0.1"
    entry = AuditEntry.objects.exclude(action__startswith="auth.").get()
    assert entry.operation_id == operation.pk
    assert entry.actor == dba.user
    assert entry.actor_name == dba.user.username
    assert entry.actor_roles == ["DBA"]
    assert entry.address == "127.0.0.1"
    assert (entry.action, entry.target, entry.outcome) == ("operation.connectivity_check", "cluster:demo", "accepted")
    page = dba.get(response.url)
    assert "Connectivity check of demo queued" in page.content.decode()


def test_second_check_while_one_is_queued_is_refused_with_a_message(client_as, demo_cluster):
    dba = client_as(Role.DBA)
    url = reverse("databases:check", kwargs={"name": demo_cluster.name})
    first = dba.post(url)
    operation = Operation.objects.get()
    response = dba.post(url, follow=True)
    assert Operation.objects.count() == 1
    assert response.status_code == 200
    assert response.redirect_chain == [(reverse("core:operation", kwargs={"pk": operation.pk}), 302)]
    assert first.url == response.redirect_chain[0][0]
    html = response.content.decode()
    assert "Another operation on cluster:demo is already in progress" in html
    assert f"#{operation.pk}, queued" in html
    assert AuditEntry.objects.filter(outcome="refused", target="cluster:demo").count() == 1


@pytest.mark.parametrize("seconds", ["abc", "-1", "601"])
def test_bad_sampling_time_shows_an_error_and_creates_nothing(client_as, demo_cluster, seconds):
    dba = client_as(Role.DBA)
    response = dba.post(
        reverse("databases:check", kwargs={"name": demo_cluster.name}), {"sample_seconds": seconds}, follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("databases:clusters")
    html = response.content.decode()
    assert 'role="status"' in html
    assert "Sampling time must be" in html
    if seconds == "abc":
        assert "whole number of seconds" in html
    assert not Operation.objects.exists()


def test_check_of_an_unknown_cluster_is_404(client_as):
    response = client_as(Role.DBA).post(reverse("databases:check", kwargs={"name": "nope"}))
    assert response.status_code == 404
    assert not Operation.objects.exists()


def test_get_on_the_check_url_is_405_for_a_dba(client_as, demo_cluster):
    response = client_as(Role.DBA).get(reverse("databases:check", kwargs={"name": demo_cluster.name}))
    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    ("role", "shown"),
    [
        (Role.DBA, True),
        (Role.DEVOPS, True),
        (Role.DEVELOPER, True),
        (Role.VIEWER, False),
        (Role.PRODUCT_MANAGER, False),
    ],
)
def test_check_button_only_for_those_allowed(client_as, demo_cluster, role, shown):
    check_url = reverse("databases:check", kwargs={"name": demo_cluster.name})
    for page in ("databases:clusters",):
        html = client_as(role).get(reverse(page)).content.decode()
        assert 'id="cluster-demo"' in html
        assert ("Run connectivity check" in html) is shown, (role, page)
        assert (f'action="{check_url}"' in html) is shown, (role, page)


def test_check_button_is_disabled_while_an_operation_runs_on_the_cluster(client_as, demo_cluster):
    dba = client_as(Role.DBA)
    dba.post(reverse("databases:check", kwargs={"name": demo_cluster.name}))
    operation = Operation.objects.get()
    html = dba.get(reverse("databases:clusters")).content.decode()
    assert "disabled" in html.split("Run connectivity check")[0].rsplit("<button", 1)[1]
    assert f'href="{reverse("core:operation", kwargs={"pk": operation.pk})}"' in html


def test_actions_need_the_csrf_token(demo_cluster, queued_check):
    dba = make_user("csrf-dba", Role.DBA)
    client = Client(enforce_csrf_checks=True)
    client.force_login(dba)
    check = client.post(reverse("databases:check", kwargs={"name": demo_cluster.name}), {"sample_seconds": "0"})
    cancel = client.post(reverse("core:operation-cancel", kwargs={"pk": queued_check.pk}))
    assert (check.status_code, cancel.status_code) == (403, 403)
    assert list(Operation.objects.values_list("pk", "status")) == [(queued_check.pk, "queued")]


# --- cancelling -------------------------------------------------------------------------------------


@pytest.fixture
def queued_check(demo_cluster) -> Operation:
    """A connectivity check queued by someone else (so the canceller's own-operation rule plays no part)."""
    return connectivity_check_request(cluster=demo_cluster, actor=make_user("requester", Role.DBA), address="10.0.0.1")


@pytest.mark.parametrize("role", [Role.DEVOPS, Role.DBA])
def test_devops_and_dba_cancel_a_queued_operation(client_as, queued_check, role):
    client = client_as(role)
    response = client.post(reverse("core:operation-cancel", kwargs={"pk": queued_check.pk}))
    assert response.status_code == 302
    assert response.url == reverse("core:operation", kwargs={"pk": queued_check.pk})
    queued_check.refresh_from_db()
    assert queued_check.status == Operation.Status.CANCELLED
    entry = AuditEntry.objects.get(action="operation.cancel")
    assert entry.actor == client.user
    assert entry.actor_roles == [role.value]
    assert entry.address == "127.0.0.1"
    assert entry.operation_id == queued_check.pk
    assert entry.outcome == AuditEntry.Outcome.SUCCESS
    page = client.get(response.url).content.decode()
    assert f"Cancellation of operation #{queued_check.pk} recorded." in page


def test_cancelling_a_finished_operation_says_why(client_as, queued_check):
    dba = client_as(Role.DBA)
    url = reverse("core:operation-cancel", kwargs={"pk": queued_check.pk})
    dba.post(url)
    response = dba.post(url, follow=True)
    assert response.status_code == 200
    assert "cannot be cancelled: it has already cancelled" in response.content.decode()


def test_viewer_cannot_cancel(client_as, queued_check):
    response = client_as(Role.VIEWER).post(reverse("core:operation-cancel", kwargs={"pk": queued_check.pk}))
    assert response.status_code == 403
    queued_check.refresh_from_db()
    assert queued_check.status == Operation.Status.QUEUED
    assert not AuditEntry.objects.filter(action="operation.cancel").exclude(outcome="refused").exists()


def test_a_developer_may_cancel_their_own_check_but_not_someone_elses(client_as, demo_cluster, queued_check):
    developer = client_as(Role.DEVELOPER)
    other = reverse("core:operation-cancel", kwargs={"pk": queued_check.pk})
    assert developer.post(other).status_code == 403
    queued_check.status = Operation.Status.SUCCEEDED
    Operation.objects.filter(pk=queued_check.pk).update(status="succeeded")
    own = connectivity_check_request(cluster=demo_cluster, actor=developer.user)
    page = developer.get(reverse("core:operation", kwargs={"pk": own.pk})).content.decode()
    assert "Cancel operation" in page
    developer.post(reverse("core:operation-cancel", kwargs={"pk": own.pk}))
    own.refresh_from_db()
    assert own.status == Operation.Status.CANCELLED


def test_cancel_of_a_missing_operation_is_404(client_as):
    assert client_as(Role.DBA).post(reverse("core:operation-cancel", kwargs={"pk": 999999})).status_code == 404


@pytest.mark.parametrize(
    ("role", "shown"), [(Role.DBA, True), (Role.DEVOPS, True), (Role.VIEWER, False), (Role.DEVELOPER, False)]
)
def test_cancel_button_only_for_those_allowed(client_as, queued_check, role, shown):
    html = client_as(role).get(reverse("core:operation", kwargs={"pk": queued_check.pk})).content.decode()
    cancel_url = reverse("core:operation-cancel", kwargs={"pk": queued_check.pk})
    assert ("Cancel operation" in html) is shown
    assert (f'action="{cancel_url}"' in html) is shown


def test_no_cancel_button_once_finished(client_as, db):
    finished = Operation.objects.create(
        kind="connectivity_check", target="cluster:done", status="succeeded", progress=100
    )
    html = client_as(Role.DBA).get(reverse("core:operation", kwargs={"pk": finished.pk})).content.decode()
    assert "Cancel operation" not in html


# --- operation detail -------------------------------------------------------------------------------


def test_operation_page_shows_progress_and_log(client_as, db):
    operation = Operation.objects.create(
        kind="connectivity_check", target="cluster:x", status="running", progress=42, progress_message="probing replica"
    )
    OperationLogLine.objects.create(operation=operation, message="Connectivity check started on w1.")
    OperationLogLine.objects.create(operation=operation, level="warning", message="replica lags 3 MB")
    developer, viewer = client_as(Role.DEVELOPER), client_as(Role.VIEWER)  # the log: for those who may run it
    for headers in ({}, {"HX-Request": "true"}):
        html = developer.get(reverse("core:operation", kwargs={"pk": operation.pk}), headers=headers).content.decode()
        assert '<progress max="100" value="42"' in html
        assert "42%" in html
        assert "probing replica" in html
        assert "Connectivity check started on w1." in html
        assert '<li class="log-warning">' in html
        assert "replica lags 3 MB" in html
        assert html.index("started on w1") < html.index("replica lags")
        html = viewer.get(reverse("core:operation", kwargs={"pk": operation.pk}), headers=headers).content.decode()
        assert '<progress max="100" value="42"' in html and "probing replica" in html
        assert "replica lags" not in html
        assert "Output is shown to the roles that may run this operation (DevOps, DBA and Developer)." in html


def test_queued_operation_fragment_keeps_polling(client_as, db):
    operation = Operation.objects.create(kind="connectivity_check", target="cluster:x")
    html = (
        client_as(Role.DBA)
        .get(reverse("core:operation", kwargs={"pk": operation.pk}), headers={"HX-Request": "true"})
        .content.decode()
    )
    assert "hx-trigger=" in html
    assert f'hx-get="{reverse("core:operation", kwargs={"pk": operation.pk})}"' in html
    assert "Waiting for a worker" in html


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_finished_operation_fragment_stops_polling(client_as, db, status):
    operation = Operation.objects.create(
        kind="connectivity_check",
        target="cluster:x",
        status=status,
        error="" if status == "succeeded" else "boom",
        result={"nodes": {"primary": {"role": "primary"}}} if status == "succeeded" else {},
    )
    html = (
        client_as(Role.DBA)
        .get(reverse("core:operation", kwargs={"pk": operation.pk}), headers={"HX-Request": "true"})
        .content.decode()
    )
    assert f'id="operation-{operation.pk}"' in html
    assert "hx-trigger" not in html
    assert "hx-get" not in html
    if status == "succeeded":
        assert "Result" in html
    else:
        assert "boom" in html


def test_operations_table_polls_only_while_something_is_active(client_as, db):
    viewer = client_as(Role.VIEWER)
    url = reverse("core:operations")
    done = Operation.objects.create(kind="connectivity_check", target="cluster:a", status="succeeded")
    assert "hx-trigger" not in viewer.get(url, headers={"HX-Request": "true"}).content.decode()
    Operation.objects.create(kind="connectivity_check", target="cluster:b")
    html = viewer.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" in html
    assert f"#{done.pk}" in html


# --- audit log --------------------------------------------------------------------------------------


@pytest.fixture
def audit_entries(db: None) -> None:
    alice = make_user("alice", Role.DBA)
    bob = make_user("bob", Role.DEVOPS)
    audit_record(actor=alice, action="operation.connectivity_check", target="cluster:one", outcome="accepted")
    audit_record(actor=bob, action="operation.cancel", target="cluster:two", outcome="success")
    audit_record(actor=bob, action="operation.run_backup", target="cluster:three", outcome="refused")


def _audit_targets(client: Client, **filters: str) -> set[str]:
    response = client.get(reverse("core:audit"), filters, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.content.decode()
    html = response.content.decode()
    return {target for target in ("cluster:one", "cluster:two", "cluster:three") if f"<td>{target}</td>" in html}


def test_audit_filters_narrow_the_table(client_as, audit_entries):
    viewer = client_as(Role.VIEWER)
    assert _audit_targets(viewer) == {"cluster:one", "cluster:two", "cluster:three"}
    assert _audit_targets(viewer, actor="alice") == {"cluster:one"}
    assert _audit_targets(viewer, actor="BOB") == {"cluster:two", "cluster:three"}
    assert _audit_targets(viewer, action="cancel") == {"cluster:two"}
    assert _audit_targets(viewer, outcome="refused") == {"cluster:three"}
    assert _audit_targets(viewer, actor="bob", outcome="success") == {"cluster:two"}
    assert _audit_targets(viewer, target="three") == {"cluster:three"}
    assert _audit_targets(viewer, actor="nobody") == set()
    assert _audit_targets(viewer, since="2000-01-01") == {"cluster:one", "cluster:two", "cluster:three"}
    assert _audit_targets(viewer, until="2000-01-01") == set()


def test_audit_page_shows_who_with_which_roles_from_where(client_as, db):
    dba = make_user("carol", Role.DBA, Role.DEVOPS)
    audit_record(actor=dba, action="operation.cancel", target="cluster:z", outcome="success", address="10.1.2.3")
    html = client_as(Role.VIEWER).get(reverse("core:audit")).content.decode()
    assert "<td>carol</td>" in html
    assert "<td>DBA, DevOps</td>" in html
    assert "<td>10.1.2.3</td>" in html


@pytest.mark.parametrize("field", ["since", "until"])
def test_audit_bad_date_is_400_with_a_hint(client_as, audit_entries, field):
    viewer = client_as(Role.VIEWER)
    # htmx swaps only 2xx responses, so the fragment carries the message with a 200.
    for headers, status in (({}, 400), ({"HX-Request": "true"}, 200)):
        response = viewer.get(reverse("core:audit"), {field: "not-a-date"}, headers=headers)
        assert response.status_code == status
        html = response.content.decode()
        assert "YYYY-MM-DD" in html
        assert 'role="alert"' in html


def test_audit_unknown_outcome_is_400(client_as, audit_entries):
    response = client_as(Role.VIEWER).get(reverse("core:audit"), {"outcome": "maybe"})
    assert response.status_code == 400
    assert "Unknown outcome" in response.content.decode()


# --- health and roles -------------------------------------------------------------------------------


@pytest.mark.redis
def test_healthz_reports_database_redis_and_missing_workers(client: Client, db):
    response = client.get(reverse("healthz"))
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["redis"] == {"ok": True}
    # no Celery worker runs in this test
    assert response.status_code == 503
    assert body["ok"] is False
    assert set(body["checks"]["queues"]) == {"checks", "ops", "default"}
    for queue, state in body["checks"]["queues"].items():
        assert state["ok"] is False, queue
        assert state["workers"] == [], queue
        assert "no worker" in state["error"], queue
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_roles_page_lists_every_role_and_action(client_as):
    html = client_as(Role.VIEWER).get(reverse("core:roles")).content.decode()
    for role in Role:
        assert f"<th>{role.value}</th>" in html, role
    for action in Action:
        assert f"<td>{action.value}</td>" in html, action
    assert html.count("<tr><td>") == len(Action)
