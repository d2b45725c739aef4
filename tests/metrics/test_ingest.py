"""The funnel ingestion API: a token per funnel, reasons for every refusal, a resend replaces and never adds."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hadr_portal.metrics.models import Funnel, FunnelDayCount, FunnelHourCount
from tests.metrics.factories import make_funnel

pytestmark = pytest.mark.django_db


@pytest.fixture
def pushed(db) -> Funnel:
    return make_funnel("signups", source="push", cluster="", query="", interval_seconds=3600)


def push(funnel: Funnel, body: object, token: str | None = None) -> tuple[int, dict]:
    response = Client().post(
        reverse("metrics:funnel-counts", kwargs={"name": funnel.name}),
        body if isinstance(body, bytes) else json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {funnel.token if token is None else token}"},
    )
    return response.status_code, response.json()


def day_counts(funnel: Funnel) -> dict[str, int]:
    return dict(FunnelDayCount.objects.filter(funnel=funnel).values_list("step", "count"))


def test_a_resend_of_the_same_day_replaces_the_counts(pushed):
    today = str(timezone.localdate())
    status, body = push(pushed, {"day": today, "counts": {"signed_up": 100, "email_verified": 70}})
    assert status == 200, body
    assert body["counts"] == {"signed_up": 100, "email_verified": 70}

    status, body = push(pushed, {"day": today, "counts": {"signed_up": 120, "email_verified": 80}})

    assert status == 200
    assert day_counts(pushed) == {"signed_up": 120, "email_verified": 80}
    pushed.refresh_from_db()
    assert pushed.last_success_at is not None and pushed.stale_reason() == ""


def test_hourly_counts_add_up_to_their_day_and_a_resent_hour_replaces(pushed):
    hour = (timezone.now() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    for at, count in ((hour, 5), (hour - timedelta(hours=1), 7), (hour, 6)):
        status, body = push(pushed, {"hour": at.isoformat(), "counts": {"signed_up": count}})
        assert status == 200, body
    assert FunnelHourCount.objects.filter(funnel=pushed).count() == 2
    expected = 6 + (7 if timezone.localdate(hour - timedelta(hours=1)) == timezone.localdate(hour) else 0)
    assert FunnelDayCount.objects.get(funnel=pushed, day=timezone.localdate(hour), step="signed_up").count == expected


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_a_wrong_or_missing_token_is_401(pushed, token):
    status, body = push(pushed, {"day": str(timezone.localdate()), "counts": {"signed_up": 1}}, token=token)
    assert status == 401
    assert "wrong token" in body["error"]
    assert not FunnelDayCount.objects.exists()


def test_an_unknown_funnel_is_401_too(pushed):
    response = Client().post(
        reverse("metrics:funnel-counts", kwargs={"name": "nope"}),
        "{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {pushed.token}"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"day": "2025-01-31"}, "counts must be an object"),
        ({"day": "2025-01-31", "counts": {"signed_up": -1}}, "counts.signed_up must be from 0"),
        ({"day": "2025-01-31", "counts": {"signed_up": 1.5}}, "counts.signed_up must be a whole number, got 1.5"),
        ({"day": "2025-01-31", "counts": {"signed_up": True}}, "must be a whole number, got True"),
        ({"day": "2025-01-31", "counts": {"clicked": 1}}, "unknown step 'clicked'; the funnel's steps are signed_up"),
        ({"day": "31/01/2025", "counts": {"signed_up": 1}}, "day must be a date like 2025-01-31"),
        ({"counts": {"signed_up": 1}}, 'give either "day"'),
        ({"hour": "2025-01-31T13:00:00", "counts": {"signed_up": 1}}, "hour needs a time zone"),
        ({"hour": "2025-01-31T13:30:00Z", "counts": {"signed_up": 1}}, "start of an hour"),
        ({"day": "2999-01-01", "counts": {"signed_up": 1}}, "in the future"),
        ({"day": "2025-01-31", "counts": {"signed_up": 1}, "extra": 1}, "unknown field 'extra'"),
    ],
)
def test_malformed_or_negative_counts_are_400_with_the_reason(pushed, body, reason):
    status, answer = push(pushed, body)
    assert status == 400
    assert reason in answer["error"]
    assert not FunnelDayCount.objects.exists()


def test_a_queried_funnel_accepts_no_pushes(db):
    funnel = make_funnel(cluster="", node="", dsn_env="HADR_DSN_REPLICA")
    status, body = push(funnel, {"day": str(timezone.localdate()), "counts": {"signed_up": 1}})
    assert status == 400
    assert "collected by its query" in body["error"]


def test_get_is_405(pushed):
    assert Client().get(reverse("metrics:funnel-counts", kwargs={"name": pushed.name})).status_code == 405
