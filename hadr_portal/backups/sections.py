"""What the backups app shows on other apps' pages: the WAL archiving and scratch-instance panels of a cluster's
card (Databases page) and the dashboard's archiving tiles. Both read the state the `archive` checks stored on the policy, never the
servers (archiving.py); times are `<time>` elements the browser shows in the reader's zone and "x ago"."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string

from hadr_portal.databases.models import Cluster

from .archiving import ArchiveState, archive_state_of, archive_states, archive_verdict
from .models import BackupPolicy
from .scratch import scratch_instances
from .stanza import StanzaProblem, pgbackrest_policy, stanza_for


def _row(policy: BackupPolicy, state: ArchiveState | None) -> dict[str, Any]:
    outcome, message = archive_verdict(state) if state else ("unknown", "not measured yet")
    return {"policy": policy, "state": state, "outcome": outcome, "message": message}


def archive_panel_html(cluster: Cluster, request: HttpRequest) -> str:
    """The cluster's live RPO, archive failures, recoverable window and gaps, and the command to see them by hand;
    nothing for a cluster without a pgBackRest policy."""
    policy = pgbackrest_policy(cluster.pk)
    if policy is None:
        return ""
    try:
        stanza = stanza_for(policy)
        command, run_as = stanza.command_line("info"), stanza.run_as
    except StanzaProblem:
        command, run_as = "", ""
    context = _row(policy, archive_state_of(policy)) | {"cluster": cluster, "command": command, "run_as": run_as}
    return render_to_string("backups/_archive_panel.html", context, request=request)


def scratch_panel_html(cluster: Cluster, request: HttpRequest) -> str:
    """Every scratch instance of the cluster the portal started and has not removed (point-in-time restores waiting
    for a decision, drills running), with its port, point and time to live: none outlives the portal's knowledge."""
    instances = [restore for restore in scratch_instances() if restore.policy.cluster_id == cluster.pk]
    if not instances:
        return ""
    return render_to_string("backups/_scratch_panel.html", {"instances": instances}, request=request)


def archiving_section_html() -> str:
    """Dashboard: per pgBackRest cluster, the archive's age against its objective and the recoverable window.
    Shared and cached: the check's state changes bump the dashboard's version (archiving._store)."""
    rows = [_row(policy, state) for policy, state in archive_states()]
    if not rows:
        return ""
    return render_to_string("backups/_archiving_section.html", {"rows": rows})
