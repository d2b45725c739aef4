"""Status pages, catalog editing, and the push endpoints (no login; the token is the key)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hadr_portal.accounts.stepup import step_up_challenge
from hadr_portal.core.htmx import render_page
from hadr_portal.core.middleware import raw_body
from hadr_portal.core.operation_views import operation_response
from hadr_portal.core.operations import client_address
from hadr_portal.core.permissions import Action, action_required, require, user_can
from hadr_portal.core.pushbody import BodyRefused, body_bytes, body_json, push_token

from . import push, selectors, services
from .forms import CheckForm, MaintenanceForm, PriorityForm, ServiceForm
from .models import Check, Service
from .restart import restart_request


@require_GET
def service_detail(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service, name=name)
    return render_page(request, "status/service_detail.html", selectors.service_detail(service), partial="live")


@require_http_methods(["GET", "POST"])
def service_edit(request: HttpRequest, name: str | None = None) -> HttpResponse:
    full = user_can(request.user, Action.EDIT_CATALOG)
    if not full:
        require(request.user, Action.EDIT_PRIORITIES)
        if name is None:
            raise PermissionDenied("Only DevOps may add services.")
    service = get_object_or_404(Service, name=name) if name else Service()
    form_class = ServiceForm if full else PriorityForm
    form = form_class(request.POST or None, instance=service)
    if request.method == "POST" and form.is_valid():
        saved = services.service_save(
            service=form.save(commit=False),
            actor=request.user,
            address=client_address(request),
            changed=form.changed_settings() if isinstance(form, ServiceForm) else form.changed_data,
            priorities_only=not full,
        )
        messages.success(request, f"{saved.display_name} saved.")
        return redirect("status:service", name=saved.name)
    if isinstance(form, ServiceForm) and form.refusals:
        services.restart_setting_refuse(
            name=name or request.POST.get("name", ""),
            actor=request.user,
            address=client_address(request),
            reasons=form.refusals,
            attempted=request.POST.get("restart") or request.POST.get("restart_program", ""),
        )
    return render_page(
        request,
        "status/service_form.html",
        {"form": form, "service": service, "full": full},
        status=400 if form.errors else 200,
    )


@action_required(Action.RESTART_SERVICE)
def service_restart(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service, name=name)
    if service.tier == 1 and (challenge := step_up_challenge(request, what=f"Restart {service.display_name}")):
        return challenge  # a tier-1 service: a fresh two-factor code first
    return operation_response(
        request,
        lambda: restart_request(service=service, actor=request.user, address=client_address(request)),
        queued=lambda op: f"Restart of {service.display_name} queued (operation #{op.pk}).",
        back_to=reverse("status:service", kwargs={"name": service.name}),
    )


@require_http_methods(["GET", "POST"])
def check_edit(request: HttpRequest, name: str, check_id: int | None = None) -> HttpResponse:
    require(request.user, Action.EDIT_CATALOG)
    service = get_object_or_404(Service, name=name)
    check = get_object_or_404(Check, pk=check_id, service=service) if check_id else Check(service=service)
    form = CheckForm(request.POST or None, instance=check)
    if request.method == "POST" and form.is_valid():
        saved = services.check_save(check=form.save(commit=False), actor=request.user, address=client_address(request))
        messages.success(request, f"Check {saved.name} saved; it runs within a few seconds.")
        return redirect("status:service", name=service.name)
    return render_page(
        request,
        "status/check_form.html",
        {"form": form, "service": service, "check": check},
        status=400 if form.errors else 200,
    )


@require_POST
def check_delete(request: HttpRequest, name: str, check_id: int) -> HttpResponse:
    require(request.user, Action.EDIT_CATALOG)
    check = get_object_or_404(Check, pk=check_id, service__name=name)
    if request.POST.get("confirm") != check.name:
        messages.error(request, f"Type the check's name ({check.name}) to delete it.")
        return redirect("status:check-edit", name=name, check_id=check_id)
    services.check_delete(check=check, actor=request.user, address=client_address(request))
    messages.success(request, f"Check {check.name} deleted.")
    return redirect("status:service", name=name)


@require_POST
def maintenance_open(request: HttpRequest, name: str) -> HttpResponse:
    require(request.user, Action.EDIT_CATALOG)
    service = get_object_or_404(Service, name=name)
    form = MaintenanceForm(request.POST)
    if form.is_valid():
        window = services.maintenance_open(
            window=form.window(service), actor=request.user, address=client_address(request)
        )
        messages.success(request, f"Alerts for {service.display_name} silenced until {window.ends_at:%H:%M}.")
    else:
        messages.error(
            request,
            "Maintenance window not opened: "
            + "; ".join(
                f"{field}: {' '.join(str(error) for error in errors)}" for field, errors in form.errors.items()
            ),
        )
    return redirect("status:service", name=name)


def _text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body + "\n", status=status, content_type="text/plain; charset=utf-8")


@login_not_required
@csrf_exempt
@raw_body
@require_http_methods(["GET", "POST", "HEAD"])
def heartbeat(request: HttpRequest, token: str = "") -> HttpResponse:
    """A cron job's ping: `curl -fsS -m 10 --retry 3 -H "X-HADR-Token: <token>" https://portal/push/heartbeat`
    (or the token in the URL, `/push/heartbeat/<token>`). A POST's body (UTF-8 text) is the result's message."""
    token = push_token(request, token)
    if not token:
        return _text("no token: send X-HADR-Token: <token> (or Authorization: Bearer <token>)", status=401)
    try:
        check = push.push_check(token=token, kind=Check.Kind.HEARTBEAT)
    except push.UnknownToken:
        return _text("unknown heartbeat", status=404)
    try:
        message = body_bytes(request).decode(errors="replace").strip() if request.method == "POST" else ""
        push.heartbeat_ping(check=check, message=message)
    except BodyRefused as exc:
        return _text(exc.message, status=exc.status)
    except ValueError as exc:
        return _text(str(exc), status=400)
    return _text("OK")


@login_not_required
@csrf_exempt
@raw_body
@require_POST
def host_report(request: HttpRequest) -> JsonResponse:
    """Another host pushes its resources: `Authorization: Bearer <token>` (or `X-HADR-Token: <token>`),
    JSON {cpu, memory, disks}. The token is checked before the body is read."""
    try:
        check = push.push_check(token=push_token(request), kind=Check.Kind.HOST_PUSH)
    except push.UnknownToken:
        return JsonResponse({"error": "unknown or missing token (Authorization: Bearer <token>)"}, status=401)
    try:
        values = body_json(request)
        if not isinstance(values, dict):
            return JsonResponse(
                {"error": 'expected a JSON object like {"cpu": 12.5, "memory": 40, "disks": {"/": 71}}'}, status=400
            )
        push.host_report(check=check, values=values)
    except BodyRefused as exc:
        return exc.response()
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    check.refresh_from_db()
    return JsonResponse({"state": check.state, "message": check.last_message})
