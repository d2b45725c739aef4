"""The runbook index (search by text and scenario) and one runbook's page."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from hadr_portal.core.htmx import render_page

from .actions import runbook_segments
from .documents import runbook_load, runbooks_all


@require_GET
def runbook_index(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    scenario = request.GET.get("scenario", "").strip()
    runbooks = runbooks_all()
    shown = [
        runbook
        for runbook in runbooks
        if (not scenario or runbook.scenario == scenario) and (not query or query.lower() in runbook.text.lower())
    ]
    context = {
        "runbooks": shown,
        "scenarios": sorted({runbook.scenario for runbook in runbooks if runbook.scenario}),
        "filters": {"q": query, "scenario": scenario},
    }
    return render_page(request, "runbooks/index.html", context, partial="results")


@require_GET
def runbook_detail(request: HttpRequest, name: str) -> HttpResponse:
    runbook = runbook_load(name)
    if runbook is None:
        raise Http404(f"No runbook {name!r}.")
    segments = runbook_segments(runbook, user=request.user, service=None, ticks=None)
    return render_page(request, "runbooks/detail.html", {"runbook": runbook, "segments": segments})
