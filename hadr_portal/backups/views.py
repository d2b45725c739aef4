"""Backups pages and actions. Thin: services and selectors do the work."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET

from hadr_portal.core.audit import audit_record
from hadr_portal.core.htmx import HtmxHttpRequest, render_page
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.operation_views import operation_response
from hadr_portal.core.operations import client_address
from hadr_portal.core.permissions import Action, action_required, require

from . import selectors, services
from .models import Backup, BackupPolicy
from .restore_points import restore_point_sections
from .retention import retention_plan
from .storage import storage_for


@require_GET
def backups_page(request: HtmxHttpRequest) -> HttpResponse:
    filters = {key: request.GET.get(key, "").strip() for key in ("policy", "status", "kind", "pinned")}
    backups, errors = selectors.backups_list(filters)
    page = Paginator(backups, 50).get_page(request.GET.get("page"))
    context = {
        "policies": selectors.policies_overview(),
        "restore_points": restore_point_sections(),
        "page": page,
        "filters": filters,
        "errors": errors,
        "statuses": Backup.Status.choices,
        "kinds": Backup.Kind.choices,
        "polling": any(b.status == Backup.Status.RUNNING for b in page),
    }
    status = 400 if errors and not request.htmx else 200
    return render_page(request, "backups/backups.html", context, partial="history", status=status)


@action_required(Action.RUN_BACKUP)
def backup_now(request: HttpRequest, name: str) -> HttpResponse:
    policy = get_object_or_404(BackupPolicy, name=name)
    return operation_response(
        request,
        lambda: services.backup_request(policy=policy, actor=request.user, address=client_address(request)),
        queued=lambda op: f"Backup of {policy.cluster.name}/{policy.dbname} queued (operation #{op.pk}).",
        back_to="backups:list",
    )


@require_GET
def backup_detail(request: HttpRequest, pk: int) -> HttpResponse:
    backup = get_object_or_404(Backup.objects.select_related("policy", "storage", "operation", "requested_by"), pk=pk)
    log_lines = list(backup.operation.log_lines.all()) if backup.operation else []
    context = {"backup": backup, "log_lines": log_lines, "expires_at": selectors.backup_expiry(backup)}
    return render_page(request, "backups/backup_detail.html", context)


@action_required(Action.PIN_BACKUP)
def backup_pin(request: HttpRequest, pk: int) -> HttpResponse:
    backup = get_object_or_404(Backup, pk=pk)
    pinned = request.POST.get("pinned") == "yes"
    try:
        services.backup_pin(backup=backup, pinned=pinned, actor=request.user, address=client_address(request))
    except OperationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Pinned: kept until unpinned." if pinned else "Unpinned: retention applies again.")
    return redirect("backups:detail", pk=pk)


@require_GET
def backup_download(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Streamed from storage, never loaded whole; only for those allowed to restore."""
    require(request.user, Action.DOWNLOAD_BACKUP)
    backup = get_object_or_404(Backup, pk=pk, status=Backup.Status.GOOD)
    audit_record(
        actor=request.user,
        action="backup.download",
        target=backup.policy.target,
        outcome=AuditEntry.Outcome.SUCCESS,
        address=client_address(request),
        parameters={"backup": backup.pk, "key": backup.key},
    )
    response = StreamingHttpResponse(
        storage_for(backup.storage).open_read(backup.key), content_type="application/octet-stream"
    )
    response["Content-Disposition"] = f'attachment; filename="{backup.key.rsplit("/", 1)[-1]}"'
    response["Content-Length"] = str(backup.size)
    response["X-Backup-SHA256"] = backup.sha256
    return response


@require_GET
def retention_preview(request: HttpRequest, name: str) -> HttpResponse:
    policy = get_object_or_404(BackupPolicy, name=name)
    return render_page(request, "backups/retention.html", {"policy": policy, "plan": retention_plan(policy)})


@action_required(Action.PRUNE_BACKUPS)
def prune_now(request: HttpRequest, name: str) -> HttpResponse:
    policy = get_object_or_404(BackupPolicy, name=name)
    if request.POST.get("confirm") != policy.name:
        messages.error(request, f"Type the policy's name ({policy.name}) to delete the backups listed.")
        return redirect("backups:retention", name=name)
    deleted = services.backups_prune(policy=policy, dry_run=False, actor=request.user, address=client_address(request))
    messages.success(request, f"{len(deleted)} backup(s) deleted by retention.")
    return redirect("backups:retention", name=name)
