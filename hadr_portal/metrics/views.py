"""Metrics and Errors pages, the Prometheus endpoint and the funnel ingestion API. Thin: the modules do the work."""

from __future__ import annotations

import hmac
from ipaddress import ip_address

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from hadr_portal.core.htmx import HtmxHttpRequest, render_page
from hadr_portal.core.middleware import raw_body
from hadr_portal.core.pushbody import BodyRefused, body_json, push_token

from . import errors, selectors
from .exposition import exposition_text
from .funnels import CountsRejected, funnel_counts_push
from .models import Funnel
from .sections import metrics_sections


@require_GET
def metrics_page(request: HttpRequest) -> HttpResponse:
    range_name = request.GET.get("range", "")
    if range_name not in selectors.RANGES:
        range_name = selectors.DEFAULT_RANGE
    context = {
        "sections": metrics_sections(range_name),
        "range_name": range_name,
        "ranges": list(selectors.RANGES),
        "refresh_seconds": max(30, settings.DASHBOARD_REFRESH_SECONDS),
    }
    return render_page(request, "metrics/metrics.html", context, partial="funnels")


@require_GET
def errors_page(request: HtmxHttpRequest) -> HttpResponse:
    filters = {key: request.GET.get(key, "").strip() for key in ("source", "level", "since", "until", "q")}
    rows, problems = errors.errors_list(filters)
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    page.object_list = errors.rows_shown(page.object_list)
    context = {
        "page": page,
        "filters": filters,
        "problems": problems,
        "sources": errors.SOURCES,
        "levels": errors.LEVELS,
    }
    # htmx does not swap 4xx responses: the fragment carries the problem with a 200 instead.
    status = 400 if problems and not request.htmx else 200
    return render_page(request, "metrics/errors.html", context, partial="table", status=status)


def _bearer(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def _scrape_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read /metrics: an allowed network, or the bearer token."""
    try:
        address = ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        address = None
    if address is not None and any(address in network for network in settings.METRICS_ALLOWED_NETWORKS):
        return None
    token = settings.METRICS_TOKEN
    if token and hmac.compare_digest(_bearer(request).encode(), token.encode()):
        return None
    if token:
        response = HttpResponse("401 Unauthorized: send Authorization: Bearer <HADR_METRICS_TOKEN>\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="hadr-portal metrics"'
    elif settings.METRICS_ALLOWED_NETWORKS:
        response = HttpResponse(f"403 Forbidden: {address} is not in HADR_METRICS_ALLOWED_NETWORKS\n", status=403)
    else:
        response = HttpResponse(
            "403 Forbidden: /metrics is off; set HADR_METRICS_TOKEN or HADR_METRICS_ALLOWED_NETWORKS\n", status=403
        )
    response["Content-Type"] = "text/plain; charset=utf-8"
    return response


@login_not_required
@never_cache
@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """For Prometheus: token or network restricted (HADR_METRICS_TOKEN, HADR_METRICS_ALLOWED_NETWORKS)."""
    refusal = _scrape_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(exposition_text(), content_type=CONTENT_TYPE_PLAIN_0_0_4)  # what Prometheus 2 and 3 both read


@login_not_required
@csrf_exempt
@raw_body
@require_POST
def funnel_counts(request: HttpRequest, name: str) -> JsonResponse:
    """An application pushes one day's (or hour's) counts: `Authorization: Bearer <the funnel's token>` (or
    `X-HADR-Token`). The token is checked before the body is read; the body is bounded like every push's."""
    token = push_token(request)
    funnel = Funnel.objects.filter(name=name, enabled=True).first()
    if funnel is None or not token or not hmac.compare_digest(token.encode(), funnel.token.encode()):
        return JsonResponse({"error": "unknown funnel or wrong token (Authorization: Bearer <token>)"}, status=401)
    try:
        stored = funnel_counts_push(funnel=funnel, payload=body_json(request))
    except BodyRefused as exc:
        return exc.response()
    except CountsRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(stored)
