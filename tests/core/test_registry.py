"""The registries the apps fill in ready(): what beat runs, which kinds of operation exist, what the dashboard
shows — and the Celery app every process sends tasks through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from hadr_portal.celery import schedule_periodic_tasks
from hadr_portal.core import registry
from hadr_portal.core.registry import DashboardSection, PeriodicTask, Setting, Store

ROOT = Path(__file__).resolve().parents[2]

# What beat runs: (name, task, every, queue, expires), with the settings below.
BEAT_SCHEDULE = [
    ("reap stale operations", "hadr_portal.core.tasks.operations_reap", 7.0, "default", None),
    ("send the outbox", "hadr_portal.core.tasks.outbox_drain", 5.0, "default", 5.0),
    ("forget sent outbox messages", "hadr_portal.core.tasks.outbox_prune", 3600.0, "default", None),
    ("write probe", "hadr_portal.databases.tasks.write_probe", 2.0, "checks", 2.0),
    ("queue scheduled switchover drills", "hadr_portal.databases.tasks.switchover_drills", 30.0, "default", 30.0),
    ("run due health checks", "hadr_portal.status.tasks.checks_tick", 3.0, "checks", 3.0),
    ("roll up and prune check results", "hadr_portal.status.tasks.results_rollup", 60.0, "default", None),
    ("beat heartbeat", "hadr_portal.status.tasks.beat_heartbeat", 60.0, "default", None),
    ("queue scheduled restart drills", "hadr_portal.status.tasks.restart_drills", 30.0, "default", 30.0),
    ("queue scheduled backups", "hadr_portal.backups.tasks.backups_schedule", 30.0, "default", 30.0),
    ("queue scheduled restore drills", "hadr_portal.backups.tasks.drills_schedule", 30.0, "default", 30.0),
    ("prune backups by retention", "hadr_portal.backups.tasks.backups_prune", 3600.0, "default", None),
    ("marker rows for point-in-time drills", "hadr_portal.backups.tasks.markers_write", 60.0, "default", 30.0),
    ("scratch instances past their time", "hadr_portal.backups.tasks.scratch_expire", 60.0, "default", None),
    ("pgBackRest sets as info lists them", "hadr_portal.backups.tasks.sets_sync", 300.0, "default", 300.0),
    ("collect due funnels on their replicas", "hadr_portal.metrics.tasks.funnels_collect", 30.0, "default", 30.0),
    ("sample managed database sizes", "hadr_portal.metrics.tasks.database_sizes_sample", 900.0, "default", None),
    ("prune metrics history and logged errors", "hadr_portal.metrics.tasks.metrics_prune", 3600.0, "default", None),
    ("escalate unacknowledged incidents", "hadr_portal.incidents.tasks.escalations_remind", 60.0, "default", 60.0),
]


def test_the_beat_schedule_is_what_the_apps_registered_with_the_settings_of_the_moment(settings):
    settings.OPERATION_REAPER_INTERVAL = 7
    settings.CHECK_TICK_SECONDS = 3
    settings.DB_SIZE_INTERVAL = 900
    settings.OUTBOX_DRAIN_SECONDS = 5
    settings.WRITE_PROBE_SECONDS = 2
    app = Celery("schedule-test", set_as_current=False)
    schedule_periodic_tasks(app)
    built = [
        (name, entry["task"], entry["schedule"], entry["options"]["queue"], entry["options"].get("expires"))
        for name, entry in app.conf.beat_schedule.items()
    ]
    assert sorted(built) == sorted(BEAT_SCHEDULE)
    assert all(isinstance(every, float) for _, _, every, _, _ in built)


def test_every_task_beat_sends_exists():
    from hadr_portal.celery import app

    app.loader.import_default_modules()
    assert {task.task for task in registry.periodic_tasks} <= set(app.tasks)


def test_the_apps_register_their_kinds_of_operation_and_dashboard_sections():
    assert set(registry.operation_kinds.names()) >= {
        "backup",
        "restore",
        "restore_drill",
        "failover",
        "rebuild_replica",
        "connectivity_check",
        "restart_service",
    }
    assert registry.operation_kinds["restore_drill"].label == "Restore drill"
    # the service tiles first, then the sections below them in the order the page has always shown them
    assert registry.dashboard_sections.names() == [
        "services",
        "clusters",
        "archiving",
        "conversion",
        "incidents",
        "readiness",
    ]
    # WAL archiving and scratch instances on the Databases page, from backups
    assert registry.cluster_panels.names() == ["archiving", "scratch"]


def test_a_second_item_under_a_taken_name_is_refused_but_the_same_one_again_is_not():
    store: Store[PeriodicTask] = Store("periodic tasks")
    tick = PeriodicTask("tick", "x.tasks.tick", Setting("CHECK_TICK_SECONDS"), expires=Setting("CHECK_TICK_SECONDS"))
    store.register(tick)
    # apps made ready twice build equal items again (a setting is compared by its name)
    store.register(
        PeriodicTask("tick", "x.tasks.tick", Setting("CHECK_TICK_SECONDS"), expires=Setting("CHECK_TICK_SECONDS"))
    )
    with pytest.raises(ValueError, match="Two periodic tasks named 'tick'"):
        store.register(PeriodicTask("tick", "x.tasks.other", 5.0))
    assert len(store) == 1


def test_sections_come_in_their_order_whatever_the_order_they_were_registered_in():
    store: Store[DashboardSection] = Store("dashboard sections", key=lambda section: section.order)
    store.register(DashboardSection("below", 20, lambda: "b"))
    store.register(DashboardSection("above", 10, lambda: "a"))
    assert store.names() == ["above", "below"]


def test_a_section_with_buttons_says_which_permission_they_need():
    with pytest.raises(ValueError, match="go together"):
        DashboardSection("tiles", 10, lambda: "", buttons_need="restart_service")
    with pytest.raises(ValueError, match="go together"):
        DashboardSection("tiles", 10, lambda: "", render_with_buttons=lambda: "")


def test_the_web_process_sends_tasks_through_the_portals_celery_app():
    """A request queues work by task name on Celery's current app: in a process that only set Django up (as the
    web server does), that must be the portal's app with its broker, not Celery's default one."""
    probe = (
        "import hadr_portal.wsgi\n"
        "from celery import current_app\n"
        "from django.conf import settings\n"
        "print(current_app.main, current_app.conf.broker_url == settings.CELERY_BROKER_URL)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split()[-2:] == ["hadr_portal", "True"]
