"""The restore wizard's pages (DBA only) and the restore pages everyone may read. Thin: wizard.py does the work.

Each step is one URL (`restores/<pk>/<step>`): GET shows it, POST saves it and shows the next one. htmx requests
get only the `#wizard` fragment (with `HX-Push-Url`, so Back and reload work); without JavaScript the same
forms post and redirect. Steps 5–7 (run, verify, summary) are the restore's own page, live while it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from hadr_portal.accounts.stepup import step_up_challenge
from hadr_portal.adapters.readonly import ReadOnlyQueryError
from hadr_portal.core.findings import blockers, findings_from
from hadr_portal.core.htmx import HtmxHttpRequest, render_page
from hadr_portal.core.operation_kinds import OperationConflict, OperationError
from hadr_portal.core.operation_views import operation_response
from hadr_portal.core.operations import client_address
from hadr_portal.core.permissions import Action, action_required, require
from hadr_portal.runbooks.documents import Runbook, runbook_load

from . import copyback, pitr, replace, scratch, selectors, services, wizard
from .models import BackupPolicy, Restore

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

EDIT_STEPS = wizard.EDIT_STEPS
TEMPLATE = "backups/restore.html"


@action_required(Action.RESTORE)
def restore_start(request: HttpRequest, name: str) -> HttpResponse:
    """A new draft restore of the policy's database (from a backup's page: that backup chosen)."""
    policy = get_object_or_404(BackupPolicy, name=name)
    restore = wizard.restore_draft_start(policy=policy, actor=request.user)
    if backup_id := request.POST.get("backup", ""):
        wizard.restore_backup_set(restore=restore, actor=request.user, backup_id=backup_id)
    return redirect("backups:restore-step", pk=restore.pk, step="situation")


@require_http_methods(["GET", "POST"])
def restore_step(request: HtmxHttpRequest, pk: int, step: str) -> HttpResponse:
    """Steps 1–4 and the Run button. DBA only, reading included: it shows what the restore would touch."""
    require(request.user, Action.RESTORE)  # refusals are audited by core.middleware
    restore = get_object_or_404(Restore.objects.select_related("policy__cluster", "backup"), pk=pk)
    if step not in (*EDIT_STEPS, "run"):
        raise Http404("No such step")
    if restore.status != Restore.Status.DRAFT:
        return redirect("backups:restore", pk=restore.pk)
    if request.method == "GET":
        return _show(request, restore, "preflight" if step == "run" else step)
    if step == "run":
        return _run(request, restore)
    errors = _save(request, restore, step)
    if errors or step == "preflight":
        return _show(request, restore, step, errors=errors, status=200 if request.htmx or not errors else 400)
    following = EDIT_STEPS[EDIT_STEPS.index(step) + 1]
    if not request.htmx:
        return redirect("backups:restore-step", pk=restore.pk, step=following)
    response = _show(request, restore, following)
    response["HX-Push-Url"] = reverse("backups:restore-step", kwargs={"pk": restore.pk, "step": following})
    return response


def _run(request: HtmxHttpRequest, restore: Restore) -> HttpResponse:
    if restore.destination == Restore.Destination.REPLACE and (
        challenge := step_up_challenge(request, what=f"Replace {restore.destination_database} with the restored backup")
    ):
        return challenge  # production is replaced: a fresh two-factor code first
    try:
        operation = wizard.restore_request(restore=restore, actor=request.user, address=client_address(request))
    except OperationConflict as exc:
        messages.warning(request, str(exc))
        return _go(request, reverse("core:operation", kwargs={"pk": exc.existing.pk}) if exc.existing else request.path)
    except OperationError as exc:
        return _show(request, restore, "preflight", errors=[str(exc)], status=200 if request.htmx else 400)
    messages.success(request, f"Restore #{restore.pk} queued (operation #{operation.pk}).")
    return _go(request, reverse("backups:restore", kwargs={"pk": restore.pk}))


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _save(request: HttpRequest, restore: Restore, step: str) -> list[str]:
    data = request.POST
    actor = request.user
    if step == "situation":
        return wizard.restore_situation_set(
            restore=restore, actor=actor, situation=data.get("situation", ""), incident_at=data.get("incident_at", "")
        )
    if step == "backup" and restore.is_physical:
        return _point_save(restore, actor, data)
    if step == "backup":
        return wizard.restore_backup_set(restore=restore, actor=actor, backup_id=data.get("backup", ""))
    if step == "destination":
        fields = ("destination", "database", "cluster", "data_directory", "port", "confirm")
        return wizard.restore_destination_set(
            restore=restore, actor=actor, **{key: data.get(key, "") for key in fields}
        )
    wizard.restore_preflight_run(restore=restore, actor=actor)
    return []


def _point_save(restore: Restore, actor: Actor, data: QueryDict) -> list[str]:
    """The point step: a time (local, or UTC when ticked), a restore point, a moment another app offers (sent as
    "<ISO time>|<label>"), a transaction id, the latest moment, or the end of the backup."""
    target_type = data.get("target_type", "")
    if target_type == "moment":
        moment, _, label = data.get("moment", "").partition("|")
        return pitr.restore_point_in_time_set(
            restore=restore,
            actor=actor,
            target_type="time",
            when=moment,
            utc=True,
            label=label,
        )
    return pitr.restore_point_in_time_set(
        restore=restore,
        actor=actor,
        target_type=target_type,
        when=data.get("when", ""),
        utc=data.get("utc") == "on",
        value=data.get(f"value_{target_type}", ""),
    )


def _show(
    request: HttpRequest, restore: Restore, step: str, *, errors: list[str] | None = None, status: int = 200
) -> HttpResponse:
    restore.refresh_from_db()
    findings = findings_from(restore.preflight)
    context = {
        "restore": restore,
        "step": step,
        "steps": wizard.wizard_steps(restore, step),
        "errors": errors or [],
        "values": request.POST if request.method == "POST" else {},
        "findings": findings,
        "blocked": bool(blockers(findings)),
        "runbook": _runbook(request.GET.get("situation") or restore.situation),
        "situations": Restore.Situation.choices,
    }
    if step == "backup" and restore.is_physical:
        context["point"] = wizard.point_defaults(restore)
    elif step == "backup":
        context["backups"] = selectors.backups_for_restore(restore.policy)
        context["suggested"] = selectors.suggested_backup(restore.policy)
    if step == "destination":
        context["defaults"] = wizard.destination_defaults(restore)
    return render_page(request, TEMPLATE, context, partial="wizard", status=status)


@require_GET
def restore_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Run, verify, summary: live while the operation runs (everyone may read; a draft is the DBA's wizard)."""
    restore = get_object_or_404(
        Restore.objects.select_related(
            "policy__cluster", "backup", "operation", "safety_backup", "destination_cluster"
        ),
        pk=pk,
    )
    if restore.status == Restore.Status.DRAFT:
        return redirect("backups:restore-step", pk=restore.pk, step="situation")
    operation = restore.operation
    objective = selectors.rto_objective_minutes(restore.policy)
    step = "run" if restore.is_active else ("summary" if restore.status == Restore.Status.VERIFIED else "verify")
    waiting = scratch.queryable(restore)
    verifying = waiting and restore.verified_at is None
    context = {
        "restore": restore,
        "steps": wizard.wizard_steps(restore, step),
        "step": step,
        "operation": operation,
        "log_lines": list(operation.log_lines.all()) if operation else [],
        "objective_minutes": objective,
        "objective_seconds": objective * 60 if objective else None,
        "findings": findings_from(restore.preflight),
        "runbook": _runbook(restore.situation),
        "waiting": waiting,
        "verifying": verifying,
        "live_database": restore.policy.dbname,
    }
    return render_page(request, TEMPLATE, context, partial="wizard")


@action_required(Action.RESTORE)
def scratch_query(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The read-only query box of a scratch instance: the answer (or the refusal) as a fragment."""
    restore = get_object_or_404(Restore.objects.select_related("policy__cluster"), pk=pk)
    sql, answer, error = request.POST.get("sql", ""), None, ""
    try:
        answer = scratch.scratch_query(restore=restore, actor=request.user, sql=sql)
    except ReadOnlyQueryError as exc:
        error = str(exc)
    context = {"restore": restore, "answer": answer, "error": error, "sql": sql}
    return render_page(
        request, "backups/_scratch_query.html", context, status=200 if not error or request.htmx else 400
    )


@require_GET
def scratch_tables(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Row counts of the scratch instance's largest tables beside the live database's (loaded after the page).
    DBA only, reading included, like the wizard: it shows what the data looked like."""
    require(request.user, Action.RESTORE)
    restore = get_object_or_404(Restore.objects.select_related("policy__cluster"), pk=pk)
    counts = scratch.table_counts(restore) if scratch.queryable(restore) else []
    return render_page(request, "backups/_scratch_tables.html", {"restore": restore, "counts": counts})


@action_required(Action.RESTORE)
def scratch_copy_back(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue copying tables back from the scratch instance (tables comma-separated; filters as `table: expression`
    lines; the live database's name typed to confirm)."""
    restore = get_object_or_404(Restore.objects.select_related("policy__cluster"), pk=pk)
    data = request.POST
    tables = [name.strip() for name in data.get("tables", "").replace("\n", ",").split(",") if name.strip()]
    where = {}
    for line in data.get("where", "").splitlines():
        table, _, expression = line.partition(":")
        if table.strip() and expression.strip():
            where[table.strip()] = expression.strip()
    return operation_response(
        request,
        lambda: copyback.copy_back_request(
            restore=restore,
            tables=tables,
            mode=data.get("mode", "missing"),
            where=where or None,
            actor=request.user,
            confirm=data.get("confirm", ""),
            address=client_address(request),
        ),
        queued=lambda op: f"Copying {', '.join(tables)} back into {restore.policy.dbname} (operation #{op.pk}).",
        back_to=reverse("backups:restore", kwargs={"pk": restore.pk}),
    )


@action_required(Action.RESTORE)
def scratch_replace(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Replace the cluster with the scratch instance: the cluster's name typed, and a fresh two-factor code."""
    restore = get_object_or_404(Restore.objects.select_related("policy__cluster"), pk=pk)
    if challenge := step_up_challenge(
        request, what=f"Replace cluster {restore.policy.cluster.name} with restore #{pk}"
    ):
        return challenge
    return operation_response(
        request,
        lambda: replace.replace_request(
            restore=restore,
            actor=request.user,
            confirm=request.POST.get("confirm", ""),
            address=client_address(request),
        ),
        queued=lambda op: f"Replacing {restore.policy.cluster.name} with restore #{pk} (operation #{op.pk}).",
        back_to=reverse("backups:restore", kwargs={"pk": pk}),
    )


def _typed(request: HttpRequest, pk: int, act: Callable[..., object], done: Callable[[Restore], str]) -> HttpResponse:
    """A typed-confirmation action on a restore (`act(restore=, actor=, confirm=, address=)`), back to its page
    with what it did, or why not."""
    restore = get_object_or_404(Restore.objects.select_related("policy__cluster", "destination_cluster"), pk=pk)
    try:
        act(
            restore=restore,
            actor=request.user,
            confirm=request.POST.get("confirm", ""),
            address=client_address(request),
        )
    except OperationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done(restore))
    return redirect("backups:restore", pk=restore.pk)


@action_required(Action.RESTORE)
def kept_data_remove(request: HttpRequest, pk: int) -> HttpResponse:
    return _typed(request, pk, replace.kept_data_remove, lambda restore: f"Removed {restore.kept_data_directory}.")


@action_required(Action.RESTORE)
def scratch_discard(request: HttpRequest, pk: int) -> HttpResponse:
    return _typed(
        request, pk, scratch.scratch_discard, lambda r: f"Scratch instance of restore #{r.pk} stopped and removed."
    )


def _runbook(situation: str) -> Runbook | None:
    return runbook_load(wizard.RUNBOOKS.get(situation, "data-corruption"))


@action_required(Action.RESTORE)
def restore_drop_kept(request: HttpRequest, pk: int) -> HttpResponse:
    return _typed(request, pk, services.restore_drop_kept, lambda restore: f"Dropped {restore.kept_database}.")


@action_required(Action.RESTORE)
def drill_now(request: HttpRequest, name: str) -> HttpResponse:
    policy = get_object_or_404(BackupPolicy, name=name)
    return operation_response(
        request,
        lambda: wizard.drill_request(policy=policy, actor=request.user, address=client_address(request)),
        queued=lambda op: f"Restore drill of {policy.cluster.name}/{policy.dbname} queued (operation #{op.pk}).",
        back_to="backups:list",
    )


@require_GET
def restores_page(request: HttpRequest) -> HttpResponse:
    restores = selectors.restores_list()
    context = {"restores": restores, "polling": any(restore.is_active for restore in restores)}
    return render_page(request, "backups/restores.html", context, partial="restores")
