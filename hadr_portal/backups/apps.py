from __future__ import annotations

from django.apps import AppConfig

from hadr_portal.core import registry
from hadr_portal.core.registry import ClusterPanel, DashboardSection, PeriodicTask, Setting


class BackupsConfig(AppConfig):
    """Backup policies, backups, retention, restores and restore drills."""

    name = "hadr_portal.backups"
    label = "backups"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - a rebuilt node's archiving
        from .backup import BACKUP
        from .catalog import CATALOG_SECTIONS
        from .copyback import COPY_BACK
        from .replace import CLUSTER_REPLACE
        from .restores import DRILL, RESTORE
        from .sections import archive_panel_html, archiving_section_html, scratch_panel_html

        for kind in (BACKUP, RESTORE, DRILL, COPY_BACK, CLUSTER_REPLACE):
            registry.operation_kinds.register(kind)
        for section in CATALOG_SECTIONS:
            registry.catalog_sections.register(section)
        # WAL archiving (the live RPO) on the Databases page and the dashboard
        registry.cluster_panels.register(ClusterPanel(name="archiving", order=10, render=archive_panel_html))
        registry.cluster_panels.register(ClusterPanel(name="scratch", order=20, render=scratch_panel_html))
        registry.dashboard_sections.register(
            DashboardSection(name="archiving", order=25, render=archiving_section_html)
        )
        for task in (
            # A scheduling pass that waited longer than its period is dropped: the next one queues the same runs.
            PeriodicTask("queue scheduled backups", "hadr_portal.backups.tasks.backups_schedule", 30.0, expires=30.0),
            PeriodicTask(
                "queue scheduled restore drills", "hadr_portal.backups.tasks.drills_schedule", 30.0, expires=30.0
            ),
            PeriodicTask("prune backups by retention", "hadr_portal.backups.tasks.backups_prune", 3600.0),
            PeriodicTask(
                "marker rows for point-in-time drills",
                "hadr_portal.backups.tasks.markers_write",
                Setting("PITR_MARKER_SECONDS"),
                expires=30.0,
            ),
            PeriodicTask("scratch instances past their time", "hadr_portal.backups.tasks.scratch_expire", 60.0),
            # sets taken or expired by hand with pgbackrest appear in (and leave) the portal's table
            PeriodicTask(
                "pgBackRest sets as info lists them", "hadr_portal.backups.tasks.sets_sync", 300.0, expires=300.0
            ),
        ):
            registry.periodic_tasks.register(task)
