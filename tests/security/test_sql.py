"""Finding 2: funnel and verification SQL ran as the cluster's superuser, behind a prefix check and READ ONLY.

Now a user-written query is parsed (pglast) and refused unless it is one SELECT calling allowlisted functions —
when it is saved (catalog import, admin form) and again when it runs — and it runs as the read role, which
could not do the damage anyway. Every attack here went through before: through the real collection path,
against the test infrastructure's real primary and streaming replica.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser

import psycopg
import pytest
from django.urls import reverse
from django.utils import timezone

from hadr_portal.adapters.sqlguard import ALLOWED_FUNCTIONS, sql_refusal
from hadr_portal.backups import wizard
from hadr_portal.backups.models import BackupPolicy
from hadr_portal.core.catalog import CatalogError, catalog_import
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster
from hadr_portal.demo.catalog import DEMO_FUNNEL, DEMO_VERIFY
from hadr_portal.metrics.funnels import FunnelUnavailable, funnel_collect
from hadr_portal.metrics.models import Funnel, FunnelHourCount
from tests.backups import conftest as restore_fixtures
from tests.backups.conftest import backup_of, run
from tests.conftest import make_user
from tests.infra.plugin import Infrastructure
from tests.metrics.factories import direct_counts, make_funnel, onboarding_events, onboarding_reset

# The restore tests' application database and policy, for the verification queries.
app_database, app_policy = restore_fixtures.app_database, restore_fixtures.app_policy
backup_dir, scratch_dir = restore_fixtures.backup_dir, restore_fixtures.scratch_dir

# What a careless admin or a DevOps account could save as a funnel query, and what the refusal must name.
ATTACKS = {
    "terminate every session": ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "pg_terminate_backend"),
    "read a server file": ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
    "reload the server's configuration": ("SELECT pg_reload_conf()", "pg_reload_conf"),
    "write past READ ONLY through dblink": (
        "SELECT dblink_exec('dbname=onboarding', 'DELETE FROM app_users')",
        "dblink_exec",
    ),
    "promote the standby (split brain)": ("SELECT pg_promote()", "pg_promote"),
    "delete in a WITH": (
        "WITH gone AS (DELETE FROM app_users RETURNING id) SELECT 'signed_up', now(), count(*)::int FROM gone",
        "a data-modifying WITH (DELETE)",
    ),
    "two statements": ("SELECT 'signed_up', now(), 1; DROP TABLE app_users", "one SELECT statement; this has 2"),
    "lock rows": ("SELECT 'signed_up', now(), id FROM app_users FOR UPDATE", "FOR UPDATE / FOR SHARE locks rows"),
    "read password hashes": ("SELECT 'signed_up', now(), 1 FROM pg_authid", "pg_authid is a system catalog"),
}
FUNCTION_ATTACKS = {"pg_terminate_backend", "pg_read_file", "pg_reload_conf", "dblink_exec", "pg_promote"}


def as_funnel(sql: str) -> str:
    """The attack as a funnel query: it must take %(since)s to be saved at all."""
    return f"{sql} -- rows since %(since)s"


@pytest.fixture
def onboarding(infra: Infrastructure, demo_cluster: Cluster) -> Infrastructure:
    onboarding_reset(infra)
    onboarding_events(infra, [("first_project_created", 0), ("email_verified", 1), ("signed_up", 3)])
    return infra


def reader_dsn(infra: Infrastructure, node: str, dbname: str = "onboarding") -> str:
    instance = infra.primary if node == "primary" else infra.replica
    return instance.conninfo(dbname, user="hadr_reader", password=infra.role_passwords["hadr_reader"])


def in_recovery(infra: Infrastructure) -> bool:
    with psycopg.connect(infra.replica.conninfo(), autocommit=True) as conn:
        return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])


@pytest.fixture
def sentinel(infra: Infrastructure) -> Iterator[psycopg.Connection]:
    """A superuser session on each node that an attack would have ended."""
    with (
        psycopg.connect(infra.primary.conninfo("onboarding"), autocommit=True) as primary,
        psycopg.connect(infra.replica.conninfo("onboarding"), autocommit=True) as replica,
    ):
        yield primary
        assert primary.execute("SELECT 1").fetchone() == (1,)
        assert replica.execute("SELECT 1").fetchone() == (1,)


# --- The guard itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "named"), ATTACKS.values(), ids=ATTACKS.keys())
def test_the_guard_refuses_each_attack_naming_the_function_or_the_kind(sql, named):
    refusal = sql_refusal(as_funnel(sql), kind="funnel query", placeholders=True)
    assert named in refusal
    if named in FUNCTION_ATTACKS:
        assert refusal.startswith(f"{named} is not allowed in a funnel query")
        assert "allowed functions:" in refusal or "reads the server" in refusal


def test_the_guard_lets_the_demo_funnel_and_verification_queries_through():
    assert sql_refusal(DEMO_FUNNEL["query"], kind="funnel query", placeholders=True) == ""
    assert [sql_refusal(query["sql"]) for query in DEMO_VERIFY] == [""] * len(DEMO_VERIFY)
    assert {"count", "sum", "date_trunc", "extract", "lower", "round"} <= ALLOWED_FUNCTIONS
    assert sql_refusal("SELECT coalesce(max(id), 0), nullif(count(*), 0), greatest(1, 2) FROM app_users") == ""


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT pg_catalog.pg_promote()", "pg_promote is not allowed"),  # schema-qualified, resolved
        ("SELECT public.lower('A')", "public.lower is not allowed in a query: only built-in functions"),
        ('SELECT "Count"(*) FROM t', "Count is not allowed"),
        ("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir is not allowed in a query: it reads the server"),
        ("SELECT set_config('default_transaction_read_only', 'off', false)", "set_config is not allowed"),
        ("SELECT 1 INTO copy_of_users", "SELECT INTO creates a table"),
        ("SELECT * FROM (SELECT id FROM app_users FOR SHARE) s", "FOR UPDATE / FOR SHARE locks rows"),
        ("EXPLAIN ANALYZE SELECT 1", "must be a SELECT; EXPLAIN is not allowed"),
        ("COPY app_users TO '/tmp/users'", "must be a SELECT; COPY is not allowed"),
        ("SELECT 1 OPERATOR(public.===) 2", "the operator public.=== is not allowed"),
        ("SELECT x::evil.money FROM t", "the type evil.money is not allowed"),
        ("SELECT count(*) FROM information_schema.tables", "information_schema.tables is a system catalog"),
        ("SELEC 1", "is not valid SQL"),
    ],
)
def test_the_guard_resolves_names_and_refuses_what_it_does_not_know(sql, named):
    assert named in sql_refusal(sql)


# --- Refused when saved ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "named"), ATTACKS.values(), ids=ATTACKS.keys())
def test_a_devops_catalog_import_of_each_attack_is_refused_naming_it(demo_cluster, sql, named):
    devops = make_user("devops", Role.DEVOPS)
    with pytest.raises(CatalogError) as error:
        catalog_import({"funnels": [{**DEMO_FUNNEL, "query": as_funnel(sql)}]}, actor=devops)
    [problem] = [p for p in error.value.problems if p.startswith("funnels[0] (onboarding).query: Refused: ")]
    assert named in problem
    assert not Funnel.objects.exists()


def funnel_form(**changes: str) -> dict[str, str]:
    demo = Cluster.objects.get(name="demo")
    data = {
        "name": "onboarding",
        "description": "",
        "source": "query",
        "steps": json.dumps(DEMO_FUNNEL["steps"]),
        "cluster": str(demo.pk),  # chosen from the catalog's clusters and nodes
        "node": str(demo.nodes.get(name="replica").pk),
        "dbname": "onboarding",
        "dsn_env": "",
        "query": DEMO_FUNNEL["query"],
        "interval_seconds": "300",
        "timeout_seconds": "10",
        "enabled": "on",
        "token": "t" * 32,
        "next_run_at_0": timezone.localdate().isoformat(),
        "next_run_at_1": "00:00:00",
    }
    return data | changes


@pytest.mark.parametrize("attack", ["promote the standby (split brain)", "read a server file", "delete in a WITH"])
def test_an_admin_saving_a_funnel_in_the_admin_form_is_refused(client_as, demo_cluster, attack):
    admin = client_as(superuser=True)
    sql, named = ATTACKS[attack]
    response = admin.post(reverse("admin:metrics_funnel_add"), funnel_form(query=as_funnel(sql)))
    assert response.status_code == 200  # the form again, with the error
    assert named in response.content.decode().replace("&#x27;", "'")
    assert not Funnel.objects.exists()
    legitimate = admin.post(reverse("admin:metrics_funnel_add"), funnel_form())
    assert legitimate.status_code == 302, legitimate.content.decode()[-2000:]
    assert Funnel.objects.get().query == DEMO_FUNNEL["query"]


# --- Refused when run (a query saved before the guard existed) ------------------------------------------


@pytest.mark.parametrize(("sql", "named"), ATTACKS.values(), ids=ATTACKS.keys())
def test_a_saved_attack_is_refused_when_it_runs_and_nothing_happens(onboarding, sentinel, sql, named):
    funnel = make_funnel(node="replica", query=as_funnel(sql))  # written to the table directly, not validated

    with pytest.raises(FunnelUnavailable, match=r"^refused: ") as refused:
        funnel_collect(funnel=funnel)

    assert named in str(refused.value)
    funnel.refresh_from_db()
    assert named in funnel.last_error and not FunnelHourCount.objects.exists()
    assert in_recovery(onboarding)  # still a standby: no split brain
    with psycopg.connect(onboarding.primary.conninfo("onboarding"), autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('app_users') IS NOT NULL").fetchone() == (True,)


def test_user_written_sql_never_runs_as_a_superuser(onboarding, demo_cluster, monkeypatch):
    funnel = make_funnel(node="replica")
    Cluster.objects.filter(pk=demo_cluster.pk).update(read_user="", read_password_env="")  # falls back to admin

    with pytest.raises(FunnelUnavailable, match=r"refused: demo/replica .* was reached as postgres, a superuser"):
        funnel_collect(funnel=funnel)
    assert "read_user and read_password_env" in Funnel.objects.get(pk=funnel.pk).last_error

    Cluster.objects.filter(pk=demo_cluster.pk).update(read_user="postgres", read_password_env="HADR_DEMO_PASSWORD")
    with pytest.raises(FunnelUnavailable, match="a superuser"):
        funnel_collect(funnel=funnel)

    monkeypatch.setenv("HADR_DSN_SUPERUSER_REPLICA", onboarding.replica.conninfo("onboarding"))
    by_dsn = make_funnel("by-dsn", cluster="", node="", dsn_env="HADR_DSN_SUPERUSER_REPLICA")
    with pytest.raises(FunnelUnavailable, match="refused: HADR_DSN_SUPERUSER_REPLICA was reached as postgres"):
        funnel_collect(funnel=by_dsn)
    assert not FunnelHourCount.objects.exists()


def test_funnel_queries_run_only_on_a_replica(onboarding, monkeypatch):
    on_primary = make_funnel(node="primary")
    with pytest.raises(FunnelUnavailable, match=r"refused: demo/primary .* reports being a primary"):
        funnel_collect(funnel=on_primary)
    monkeypatch.setenv("HADR_DSN_READER_PRIMARY", reader_dsn(onboarding, "primary"))
    by_dsn = make_funnel("by-dsn", cluster="", node="", dsn_env="HADR_DSN_READER_PRIMARY")
    with pytest.raises(FunnelUnavailable, match="only on a replica"):
        funnel_collect(funnel=by_dsn)
    assert not FunnelHourCount.objects.exists()


def test_a_legitimate_funnel_imported_by_devops_collects_the_same_count_as_sql(onboarding):
    devops = make_user("devops", Role.DEVOPS)
    catalog_import({"funnels": [{**DEMO_FUNNEL, "node": "replica"}]}, actor=devops)
    funnel = Funnel.objects.get(name="onboarding")

    done = funnel_collect(funnel=funnel)

    counted: dict[str, int] = {}
    for step, count in FunnelHourCount.objects.filter(funnel=funnel).values_list("step", "count"):
        counted[step] = counted.get(step, 0) + count
    assert counted == direct_counts(onboarding, done.since)


# --- Past the guard: the read role itself cannot -------------------------------------------------------


@pytest.fixture
def dblink(infra: Infrastructure) -> Iterator[None]:
    """dblink installed in the application's database, as a DBA might have it."""
    with psycopg.connect(infra.primary.conninfo("onboarding"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    yield
    with psycopg.connect(infra.primary.conninfo("onboarding"), autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS dblink")


@pytest.mark.parametrize(
    ("node", "sql"),
    [
        ("primary", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres'"),
        ("replica", "SELECT pg_read_file('/etc/passwd')"),
        ("replica", "SELECT pg_reload_conf()"),
        ("replica", "SELECT pg_promote()"),
        ("primary", "WITH gone AS (DELETE FROM app_users RETURNING id) SELECT count(*) FROM gone"),
        ("primary", "SELECT id FROM app_users FOR UPDATE"),
        ("primary", "SELECT dblink_exec('dbname=onboarding user=postgres', 'DELETE FROM app_users')"),
    ],
)
def test_even_past_the_guard_the_read_role_is_refused_by_the_server(onboarding, sentinel, dblink, node, sql):
    """Without the guard and without READ ONLY (a read-write transaction on the primary), as hadr_reader."""
    with psycopg.connect(reader_dsn(onboarding, node)) as conn, pytest.raises(psycopg.Error) as refused:
        conn.execute(sql)  # type: ignore[arg-type]
    assert isinstance(refused.value, psycopg.errors.InsufficientPrivilege) or "password is required" in str(
        refused.value
    ), refused.value
    assert in_recovery(onboarding)
    with psycopg.connect(onboarding.primary.conninfo("onboarding")) as conn:
        assert conn.execute("SELECT count(*) FROM app_users").fetchone()[0] > 0


# --- Verification queries -----------------------------------------------------------------------------

USERS_QUERY = {"name": "users", "sql": "SELECT count(*) FROM app_users", "expect": "> 0"}


def test_a_verification_query_with_a_forbidden_function_is_refused_at_save(client_as, demo_cluster, tmp_path):
    devops = make_user("devops", Role.DEVOPS)
    policy = {
        "name": "nightly",
        "cluster": "demo",
        "dbname": "onboarding",
        "storage": "local",
        "verify": [{"name": "passwd", "sql": "SELECT length(pg_read_file('/etc/passwd'))", "expect": "> 0"}],
    }
    storage = {"name": "local", "kind": "local", "config": {"path": str(tmp_path)}}
    with pytest.raises(CatalogError) as error:
        catalog_import({"storage_targets": [storage], "backup_policies": [policy]}, actor=devops)
    assert any(
        "verify: query 'passwd': sql refused: pg_read_file is not allowed in a verification query" in problem
        for problem in error.value.problems
    ), error.value.problems
    assert not BackupPolicy.objects.exists()

    catalog_import({"storage_targets": [storage], "backup_policies": [{**policy, "verify": []}]}, actor=devops)
    saved = BackupPolicy.objects.get(name="nightly")
    admin = client_as(superuser=True)
    form = admin.get(reverse("admin:backups_backuppolicy_change", args=[saved.pk]))
    assert form.status_code == 200
    data = _admin_form_data(form.content.decode())
    data["verify"] = json.dumps([{"name": "kill", "sql": "SELECT pg_terminate_backend(42)", "expect": ""}])
    response = admin.post(reverse("admin:backups_backuppolicy_change", args=[saved.pk]), data)
    assert response.status_code == 200
    assert "pg_terminate_backend is not allowed in a verification query" in response.content.decode().replace(
        "&#x27;", "'"
    )
    saved.refresh_from_db()
    assert saved.verify == []


class _FormValues(HTMLParser):
    """The values an admin change form shows, as the browser would post them back."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._textarea = self._select = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        name = values.get("name") or ""
        if tag == "input" and name and name != "csrfmiddlewaretoken":
            if values.get("type") != "checkbox" or "checked" in values:
                self.data[name] = values.get("value") or "on"
        elif tag == "textarea":
            self._textarea, self.data[name] = name, ""
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in values:
            self.data[self._select] = values.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = ""
        elif tag == "select":
            self._select = ""

    def handle_data(self, text: str) -> None:
        if self._textarea:
            self.data[self._textarea] += text


def _admin_form_data(html: str) -> dict[str, str]:
    form = _FormValues()
    form.feed(html)
    return form.data


def test_a_verification_query_with_a_forbidden_function_is_refused_when_it_runs(app_policy, infra):
    BackupPolicy.objects.filter(pk=app_policy.pk).update(  # as saved before the guard existed
        verify=[USERS_QUERY, {"name": "passwd", "sql": "SELECT length(pg_read_file('/etc/passwd'))", "expect": "> 0"}]
    )
    backup_of(app_policy)

    drill = run(wizard.drill_request(policy=app_policy, actor=None))

    assert drill.status == "failed"
    results = {result["name"]: result for result in drill.verification}
    assert results["users"]["ok"]  # the legitimate one ran, as the read role
    assert not results["passwd"]["ok"]
    assert "refused: pg_read_file is not allowed in a verification query" in results["passwd"]["detail"]

    # no read role: the queries would run as the admin account, a superuser — refused, every one
    Cluster.objects.filter(pk=app_policy.cluster_id).update(read_user="", read_password_env="")
    BackupPolicy.objects.filter(pk=app_policy.pk).update(verify=[USERS_QUERY])
    again = run(wizard.drill_request(policy=app_policy, actor=None))
    assert again.status == "failed"
    [users] = [result for result in again.verification if result["name"] == "users"]
    assert "the restored database was reached as postgres, a superuser" in users["detail"], again.verification


# --- Which role each purpose uses -----------------------------------------------------------------------


def test_the_databases_page_shows_each_purposes_role_and_warns_of_a_superuser(client_as, demo_cluster, infra):
    from hadr_portal.databases.services import cluster_upsert
    from hadr_portal.databases.topology import cluster_probe

    bare = cluster_upsert(
        name="bare",
        nodes={"primary": ("127.0.0.1", infra.primary.port)},
        user="postgres",
        password_env="HADR_DEMO_PASSWORD",
    )
    for cluster in (demo_cluster, bare):
        cluster_probe(cluster)  # the monitoring probes say which role they connected as
    assert demo_cluster.nodes.get(name="primary").last_probe["user"] == "hadr_monitor"

    html = client_as(Role.VIEWER).get(reverse("databases:clusters")).content.decode()

    def roles_table(cluster: str) -> str:
        start = html.index(f'id="roles-{cluster}"')
        return html[start : html.index("</table>", start)]

    demo = roles_table("demo")
    for role in ("postgres", "hadr_monitor", "hadr_reader", "hadr_backup"):
        assert f"<code>{role}</code>" in demo
    assert 'class="error"' not in demo
    bare_roles = roles_table("bare")
    assert "Falls back to the admin account postgres, a superuser: more power than health checks need" in bare_roles
    assert "funnel and verification queries refuse to run as a superuser; create a role with pg_read_all_data" in (
        bare_roles
    )


def test_the_catalog_carries_each_purposes_role(demo_cluster):
    from hadr_portal.core.catalog import catalog_dump_toml, catalog_export

    exported = catalog_export()["clusters"][0]
    assert (exported["read_user"], exported["read_password_env"]) == ("hadr_reader", "HADR_DEMO_READ_PASSWORD")
    assert 'backup_user = "hadr_backup"' in catalog_dump_toml(catalog_export())
    devops = make_user("devops", Role.DEVOPS)
    with pytest.raises(CatalogError) as error:
        catalog_import({"clusters": [{**exported, "read_user": ""}]}, actor=devops)
    assert "clusters[0] (demo).read_user: Name the role whose password read_password_env holds." in (
        error.value.problems
    )
