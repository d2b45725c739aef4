"""Funnels in the catalog file: validated with their place in the file, tokens only on request, history kept."""

from __future__ import annotations

import pytest

from hadr_portal.core.catalog import CatalogError, catalog_dump_toml, catalog_export, catalog_import
from hadr_portal.demo.catalog import DEMO_FUNNEL
from hadr_portal.metrics.models import Funnel
from tests.metrics.factories import make_day_counts, make_funnel

pytestmark = pytest.mark.django_db


def import_funnel(**changes: object) -> None:
    catalog_import({"funnels": [{**DEMO_FUNNEL, **changes}]})


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"steps": ["signed_up"]}, "funnels[0] (onboarding).steps: Give at least two steps, in funnel order."),
        ({"steps": ["a", "a"]}, "funnels[0] (onboarding).steps: Each step may appear only once."),
        ({"steps": "signed_up"}, "funnels[0] (onboarding).steps: expected an array, got a string 'signed_up'."),
        ({"query": "SELECT 1"}, "funnels[0] (onboarding).query: The query must select (step, hour, count) rows"),
        ({"cluster": "nope"}, "funnels[0] (onboarding).cluster: No cluster 'nope' in the file or the database."),
        ({"dsn_env": "APP_REPLICA_DSN"}, "funnels[0] (onboarding).cluster: Name a cluster (its replica is read)"),
        ({"source": "magic"}, "funnels[0] (onboarding).source: unknown source 'magic'; one of query, push."),
        ({"timeout_seconds": 0.5}, "funnels[0] (onboarding).timeout_seconds: Ensure this value is greater than"),
    ],
)
def test_a_bad_funnel_names_its_place_and_changes_nothing(demo_cluster, changes, problem):
    with pytest.raises(CatalogError) as error:
        import_funnel(**changes)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems
    assert not Funnel.objects.exists()


def test_a_funnel_round_trips_and_a_changed_query_runs_at_once(demo_cluster):
    import_funnel()
    exported = catalog_export()["funnels"]
    assert exported == [DEMO_FUNNEL]
    assert "%(since)s" in catalog_dump_toml(catalog_export())
    Funnel.objects.update(next_run_at="2100-01-01T00:00:00Z")

    report = catalog_import({"funnels": [{**DEMO_FUNNEL, "query": DEMO_FUNNEL["query"] + " "}]})

    assert report.updated == ["funnel onboarding"]
    assert Funnel.objects.get().next_run_at.year < 2100


def test_a_pushed_funnels_token_is_exported_only_on_request(db):
    funnel = make_funnel("signups", source="push", cluster="", query="")
    assert "token" not in catalog_export()["funnels"][0]
    with_tokens = catalog_export(include_tokens=True)
    assert with_tokens["funnels"][0]["token"] == funnel.token
    assert "keep it private" in catalog_dump_toml(with_tokens)
    Funnel.objects.all().delete()
    catalog_import(with_tokens)
    assert Funnel.objects.get().token == funnel.token  # the application's token still works


def test_prune_keeps_a_funnel_with_counts(demo_cluster):
    funnel = make_funnel(node="replica")
    make_day_counts(funnel, {"signed_up": 3})
    with pytest.raises(CatalogError, match="funnel onboarding is not in the file, but it has counts on record"):
        catalog_import({"clusters": catalog_export()["clusters"]}, prune=True)
    funnel.day_counts.all().delete()
    assert "funnel onboarding" in catalog_import({"clusters": catalog_export()["clusters"]}, prune=True).deleted
