"""Restore points over the web: the Backups page's form, and `POST /api/restore-points` for deploy pipelines
(a bearer token, HADR_RESTORE_POINT_TOKEN, checked before a byte of the body is read). Thin: the service in
restore_points.py decides."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from hadr_portal.core.htmx import HtmxHttpRequest
from hadr_portal.core.middleware import raw_body
from hadr_portal.core.permissions import Action, action_required
from hadr_portal.core.pushbody import TOKEN_MAX_LENGTH, BodyRefused, body_json, push_token
from hadr_portal.databases.models import Cluster

from .models import RestorePoint
from .restore_points import (
    RestorePointFailed,
    RestorePointNameInvalid,
    RestorePointNameTaken,
    RestorePointNotRecoverable,
    RestorePointPrimaryUnavailable,
    RestorePointRefused,
    restore_point_create,
    restore_point_section,
)

# What each refusal is to a pipeline: its own mistake (400, 409), or the cluster's state (422, 503), or the
# primary's answer (502).
API_STATUS: dict[type[RestorePointRefused], int] = {
    RestorePointNameInvalid: 400,
    RestorePointNameTaken: 409,
    RestorePointNotRecoverable: 422,
    RestorePointPrimaryUnavailable: 503,
    RestorePointFailed: 502,
}
API_FIELDS = ("cluster", "name", "note")


@action_required(Action.CREATE_RESTORE_POINT)
def restore_point_new(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """The Backups page's "Create restore point" form. Through htmx the cluster's section comes back with the
    new point listed, or the refusal beside the form; without JavaScript, back to the page with a message."""
    cluster = get_object_or_404(Cluster, name=name)
    typed = {"name": request.POST.get("name", ""), "note": request.POST.get("note", "")}
    try:
        point = restore_point_create(
            cluster=cluster,
            name=typed["name"],
            note=typed["note"],
            actor=request.user,
            source=RestorePoint.Source.WEB,
            request=request,
        )
    except RestorePointRefused as exc:
        if not request.htmx:
            messages.error(request, str(exc))
            return redirect(f"{reverse('backups:list')}#restore-points-{cluster.name}")
        section = restore_point_section(cluster, error=str(exc), **typed)
    else:
        created = f"Restore point {point.name} created on {cluster.name} at {point.lsn}."
        if not request.htmx:
            messages.success(request, created)
            return redirect(f"{reverse('backups:list')}#restore-points-{cluster.name}")
        section = restore_point_section(cluster, created=created)
    # htmx swaps only 2xx answers: a refusal comes back as a 200 that carries it.
    return render(request, "backups/_restore_points.html", {"section": section})


def _api_error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _api_fields(payload: Any) -> dict[str, str] | str:
    """The request's fields, or what is wrong with them."""
    if not isinstance(payload, dict):
        return 'expected a JSON object like {"cluster": "demo", "name": "before-deploy-1234", "note": "..."}'
    unknown = sorted(set(payload) - set(API_FIELDS))
    if unknown:
        return f"unknown field(s): {', '.join(unknown)} (expected {', '.join(API_FIELDS)})"
    missing = [field for field in ("cluster", "name") if not payload.get(field)]
    if missing:
        return f"missing field(s): {', '.join(missing)}"
    wrong = [field for field in API_FIELDS if not isinstance(payload.get(field, ""), str)]
    if wrong:
        return f"{', '.join(wrong)}: expected a string"
    return {field: payload.get(field, "") for field in API_FIELDS}


@login_not_required
@csrf_exempt
@raw_body
@require_POST
def restore_points_api(request: HttpRequest) -> JsonResponse:
    """`POST /api/restore-points` with `Authorization: Bearer <HADR_RESTORE_POINT_TOKEN>` and
    `{"cluster": ..., "name": ..., "note": ...}`: 201 with the point's LSN, or an error saying why."""
    expected = settings.RESTORE_POINT_TOKEN
    if not expected:
        return _api_error(403, "restore points over HTTP are off: set HADR_RESTORE_POINT_TOKEN")
    if len(expected) > TOKEN_MAX_LENGTH:
        return _api_error(
            403, f"HADR_RESTORE_POINT_TOKEN is longer than {TOKEN_MAX_LENGTH} characters: set a shorter token"
        )
    token = push_token(request)
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        response = _api_error(401, "missing or wrong token: send Authorization: Bearer <HADR_RESTORE_POINT_TOKEN>")
        response["WWW-Authenticate"] = 'Bearer realm="hadr-portal restore points"'
        return response
    try:
        fields = _api_fields(body_json(request))
    except BodyRefused as exc:
        return exc.response()
    if isinstance(fields, str):
        return _api_error(400, fields)
    cluster = Cluster.objects.filter(name=fields["cluster"]).first()
    if cluster is None:
        known = ", ".join(Cluster.objects.values_list("name", flat=True)[:20]) or "none"
        return _api_error(404, f"no cluster named {fields['cluster']!r} (known: {known})")
    try:
        point = restore_point_create(
            cluster=cluster,
            name=fields["name"],
            note=fields["note"],
            actor=None,
            source=RestorePoint.Source.API,
            request=request,
        )
    except RestorePointRefused as exc:
        return _api_error(API_STATUS.get(type(exc), 400), str(exc))
    return JsonResponse(
        {"cluster": cluster.name, "name": point.name, "lsn": point.lsn, "created_at": point.created_at.isoformat()},
        status=201,
    )
