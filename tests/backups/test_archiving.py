"""The live RPO of WAL archiving, against the session's real primary and pgBackRest: healthy archiving is up with
its window, an archive_command that fails is down at the next evaluation with the WAL and pgBackRest's error,
dropped WAL breaks PITR until a full backup; /metrics, the Databases page and the dashboard show it. Then the
parts without servers: a real pgBackRest log excerpt, idleness and the gaps."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from hadr_portal.adapters.pg.archive import ArchiverStatus
from hadr_portal.adapters.pgbackrest import BackupSet, StanzaInfo, backup
from hadr_portal.adapters.pgbackrest.archive_log import archive_log_parse, archive_log_read
from hadr_portal.backups.archiving import ArchiveState, Gap, archive_state_compute, archive_verdict
from hadr_portal.backups.models import BackupPolicy
from hadr_portal.backups.sections import archiving_section_html
from hadr_portal.backups.stanza import stanza_for
from hadr_portal.core.permissions import Role
from hadr_portal.status import engine
from hadr_portal.status.checkconfig import config_validate
from hadr_portal.status.models import Check
from tests.backups.pitr_fixtures import (
    archive_command_replaced,
    archiver_until,
    pitr_policy,  # noqa: F401 - the fixture
    wal_switched,
)
from tests.infra.plugin import Infrastructure
from tests.status.factories import make_check, make_service

TOKEN = "scrape-token-archiving"


def archive_check(policy: BackupPolicy) -> Check:
    """The archive check as the demo catalog has it; down at the first failed evaluation."""
    service = make_service("demo-db", kind="database", tier=1)
    return make_check(service, "archive", "archive", policy=policy, failures_before_down=1, timeout_seconds=10.0)


def evaluated(check: Check) -> Check:
    engine.checks_run([check.pk])
    check.refresh_from_db()
    return check


def stored(policy: BackupPolicy) -> ArchiveState:
    policy.refresh_from_db()
    state = ArchiveState.from_data(policy.archive_state)
    assert state is not None
    return state


def broken(policy: BackupPolicy) -> str:
    """The policy's archive_command with a stanza that does not exist: pgBackRest refuses every segment."""
    stanza = stanza_for(policy)
    primary = next(node for node in stanza.nodes if node.name == "primary")
    return stanza.archive_command(primary).replace(f"--stanza={stanza.name}", "--stanza=nosuch")


@pytest.mark.slow
def test_healthy_archiving_is_up_and_shown_everywhere(pitr_policy, infra: Infrastructure, client_as, settings):  # noqa: F811
    check = archive_check(pitr_policy)
    before = timezone.now()
    wal_switched(infra)
    archiver_until(infra, lambda status: bool(status.last_archived_time and status.last_archived_time > before))

    check = evaluated(check)
    assert check.state == "up", check.last_message
    assert re.match(r"(archived \d+ s ago|idle, nothing to archive), window from ", check.last_message)
    state = stored(pitr_policy)
    assert state.age_seconds is not None and state.age_seconds < 30 and state.objective_met
    assert state.window_start and state.window_end and state.window_start <= state.window_end
    assert state.last_archived_wal and not state.failing and not state.problem

    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    response = Client().get(reverse("prometheus-metrics"), headers={"Authorization": f"Bearer {TOKEN}"})
    samples = {
        family.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if sample.labels.get("cluster") == "demo" and family.name.startswith(("hadr_wal_", "hadr_recovery_"))
    }
    assert samples["hadr_wal_archive_objective_seconds"] == 30
    assert 0 <= samples["hadr_wal_archive_age_seconds"] < 60
    assert samples["hadr_recovery_window_start"] == state.window_start.timestamp()
    assert samples["hadr_wal_archive_failures"] == state.failed_count

    viewer = client_as(Role.VIEWER)
    for headers in ({}, {"HX-Request": "true"}):
        page = viewer.get(reverse("databases:clusters"), headers=headers).content.decode()
        assert 'id="archiving-demo"' in page and "Live RPO" in page and "Any second from" in page
        assert f"{stanza_for(pitr_policy).command_line('info')}" in page.replace("&#x27;", "'")
    tile = archiving_section_html()
    assert 'id="archive-tile-demo"' in tile and "state-up" in tile and "Any second from" in tile


@pytest.mark.slow
def test_a_failing_archive_command_is_down_at_the_next_evaluation(pitr_policy, infra: Infrastructure):  # noqa: F811
    check = archive_check(pitr_policy)
    with archive_command_replaced(infra, broken(pitr_policy)):
        wal_switched(infra)
        failing = archiver_until(infra, lambda status: status.failing)
        check = evaluated(check)
        assert check.state == "down"
        assert failing.last_failed_wal in check.last_message
        assert "unable to find a valid repository" in check.last_message  # pgBackRest's words, from its log
        state = stored(pitr_policy)
        assert state.failing and not state.objective_met and state.last_failed_wal == failing.last_failed_wal
        assert state.error.startswith("[103]")
    assert evaluated(check).state == "up", check.last_message  # archived again once the command is put back


@pytest.mark.slow
def test_dropped_wal_breaks_pitr_until_the_next_full_backup(pitr_policy, infra: Infrastructure):  # noqa: F811
    stanza = stanza_for(pitr_policy)
    check = archive_check(pitr_policy)
    started = datetime.now().astimezone() - timedelta(seconds=1)
    BackupPolicy.objects.filter(pk=pitr_policy.pk).update(archive_push_queue_max="16MiB")  # one segment
    pitr_policy.refresh_from_db()
    try:
        stanza_for(pitr_policy).write()  # the option is in the file archive-push reads
        with archive_command_replaced(infra, broken(pitr_policy)):
            deadline = time.monotonic() + 20
            while not [at for at, _ in archive_log_read(stanza.home / "log").drops if at >= started]:
                assert time.monotonic() < deadline, "pgBackRest dropped nothing"
                wal_switched(infra)
                time.sleep(0.5)
    finally:
        BackupPolicy.objects.filter(pk=pitr_policy.pk).update(archive_push_queue_max="")
        pitr_policy.refresh_from_db()
        stanza_for(pitr_policy).write()

    check = evaluated(check)
    assert check.state == "degraded", check.last_message
    assert check.last_message.startswith("PITR broken from ") and "until the next full backup" in check.last_message
    state = stored(pitr_policy)
    assert state.wal_dropped and state.pitr_broken_from and state.window_end == state.pitr_broken_from

    mender = backup(stanza, type="full", repo=1).sets(1)[-1]  # a restore from it needs no WAL from before the drop
    check = evaluated(check)
    assert check.state == "up", check.last_message
    assert "PITR impossible between" in check.last_message
    state = stored(pitr_policy)
    assert not state.wal_dropped and state.gaps[-1].end == mender.stopped_at


def test_an_archive_check_names_a_pgbackrest_policy(demo_cluster, backup_dir):
    from hadr_portal.backups.models import StorageTarget

    storage = StorageTarget.objects.create(name="plain", kind="local", config={"path": str(backup_dir)})
    BackupPolicy.objects.create(name="dumps", cluster=demo_cluster, dbname="onboarding", storage=storage)
    with pytest.raises(ValidationError, match="name a pgBackRest policy"):
        config_validate("archive", {"policy": "dumps"})
    with pytest.raises(ValidationError, match="No backup policy named"):
        config_validate("archive", {"policy": "nosuch"})
    with pytest.raises(ValidationError, match="Required"):
        config_validate("archive", {})


# --- without servers: a real log, idleness, gaps ------------------------------------------------------------

# What pgBackRest 2.45 wrote under archive-async: a push, a run refused (mistyped --stanza), a run that dropped WAL.
LOG = """-------------------PROCESS START-------------------
2026-12-07 00:57:21.595 P00   INFO: archive-push:async command begin 2.45: [/srv/pg/pg_wal] --archive-async --stanza=demo
2026-12-07 00:57:21.596 P00   INFO: push 1 WAL file(s) to archive: 000000010000000000000001
2026-12-07 00:57:21.808 P00   INFO: archive-push:async command end: completed successfully (213ms)

-------------------PROCESS START-------------------
2026-12-07 00:59:15.904 P00   INFO: archive-push:async command begin 2.45: [/srv/pg/pg_wal] --archive-async --stanza=nosuch
2026-12-07 00:59:15.904 P00   INFO: push 1 WAL file(s) to archive: 000000010000000000000003
2026-12-07 00:59:15.906 P00  ERROR: [103]: unable to find a valid repository:
                                    repo1: [FileMissingError] unable to load info file '/srv/repo/archive/nosuch/archive.info' or '/srv/repo/archive/nosuch/archive.info.copy':
                                    FileMissingError: unable to open missing file '/srv/repo/archive/nosuch/archive.info' for read
                                    HINT: archive.info cannot be opened but is required to push/get WAL segments.
                                    HINT: is archive_command configured correctly in postgresql.conf?
2026-12-07 00:59:15.906 P00   INFO: archive-push:async command end: aborted with exception [103]

-------------------PROCESS START-------------------
2026-12-07 00:59:53.560 P00   INFO: archive-push:async command begin 2.45: [/srv/pg/pg_wal] --archive-async --stanza=nosuch
2026-12-07 00:59:53.560 P00   INFO: push 3 WAL file(s) to archive: 000000010000000000000005...000000010000000000000007
2026-12-07 00:59:53.561 P00   WARN: dropped WAL file '000000010000000000000005' because archive queue exceeded 16MB
2026-12-07 00:59:53.561 P00   WARN: dropped WAL file '000000010000000000000006' because archive queue exceeded 16MB
2026-12-07 00:59:53.562 P00   INFO: archive-push:async command end: completed successfully (2ms)
"""


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").astimezone()


def test_a_real_log_gives_the_pushes_the_error_and_the_drops(tmp_path: Path):
    log = archive_log_parse(LOG)
    assert log.pushed == [local("2026-12-07 00:57:21.808")]  # the run that dropped WAL pushed nothing
    assert len(log.failures) == 1 and log.failures[0].at == local("2026-12-07 00:59:15.906")
    error = log.failures[0].text
    assert error.startswith("[103]: unable to find a valid repository: repo1: [FileMissingError]")
    assert "HINT" not in error
    assert log.drops == [
        (local("2026-12-07 00:59:53.561"), "000000010000000000000005"),
        (local("2026-12-07 00:59:53.561"), "000000010000000000000006"),
    ]
    (tmp_path / "demo-archive-push-async.log").write_text(LOG)
    (tmp_path / "demo-backup.log").write_text("2026-12-07 00:59:53.561 P00  ERROR: [055]: not an archive log\n")
    read = archive_log_read(tmp_path)
    assert read.drops == log.drops and read.failures == log.failures  # only archive-push logs are read


def status(**fields) -> ArchiverStatus:  # type: ignore[no-untyped-def]
    now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    values = {
        "archive_mode": "on",
        "archive_command": "pgbackrest archive-push %p",
        "archive_timeout": 10,
        "in_recovery": False,
        "archived_count": 7,
        "last_archived_wal": "000000010000000000000007",
        "last_archived_time": now - timedelta(seconds=50),
        "failed_count": 0,
        "last_failed_wal": "",
        "last_failed_time": None,
        "current_wal": "000000010000000000000008",
        "now": now,
        "current_wal_bytes": 96,  # the page header and a snapshot of running transactions: nothing else
        "closed_wal": "000000010000000000000007",
    }
    return ArchiverStatus(**(values | fields))


def full_set(label: str, started: datetime) -> BackupSet:
    return BackupSet(
        label, "full", 1, started, started + timedelta(seconds=3), "", "", "", "", None, (), 0, 0, 0, 0, False
    )


def stanza_info(*sets: BackupSet) -> StanzaInfo:
    return StanzaInfo("demo", 0, "ok", False, None, None, (), (), sets, 1, "15")


def compute(**fields):  # type: ignore[no-untyped-def]
    values = {"now": datetime(2026, 12, 7, 1, 0, tzinfo=UTC), "objective_seconds": 30, "status": status()}
    values |= {
        "info": stanza_info(full_set("F1", datetime(2026, 12, 6, 2, 0, tzinfo=UTC))),
        "log": archive_log_parse(""),
    }
    return archive_state_compute(**(values | fields))


def test_an_idle_primary_breaks_no_objective_but_written_wal_ages():
    idle = compute()
    assert idle.idle and idle.age_seconds == 0 and idle.objective_met
    assert idle.window_end == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # nothing written since: up to now
    busy = compute(status=status(current_wal_bytes=5944))
    assert not busy.idle and busy.age_seconds == 50 and not busy.objective_met
    assert archive_verdict(busy) == ("down", "newest WAL archived 50 s ago, objective 30 s")
    behind = compute(status=status(closed_wal="000000010000000000000008", current_wal_bytes=0))
    assert not behind.idle  # the complete segment before is not archived yet


def test_a_drop_is_a_gap_from_the_last_push_until_a_full_set_started_after_it():
    log = archive_log_parse(LOG)
    drop = local("2026-12-07 00:59:53.561")
    state = compute(log=log, status=status(last_archived_time=drop))
    assert state.wal_dropped and state.pitr_broken_from == local("2026-12-07 00:57:21.808")
    assert state.window_end == state.pitr_broken_from
    assert [(gap.first_wal, gap.last_wal, gap.end) for gap in state.gaps] == [
        ("000000010000000000000005", "000000010000000000000006", None)
    ]
    assert archive_verdict(state)[0] == "degraded"

    # the log is gone (rotated, or the tail no longer reaches it): the stored state remembers, a new full mends
    mender = full_set("F2", drop + timedelta(minutes=5))
    sets = stanza_info(full_set("F1", datetime(2026, 12, 6, 2, 0, tzinfo=UTC)), mender)
    later = compute(info=sets, previous=ArchiveState.from_data(state.as_data()))
    assert not later.wal_dropped and later.gaps == (
        Gap(state.gaps[0].start, drop, mender.stopped_at, "000000010000000000000005", "000000010000000000000006"),
    )
    outcome, message = archive_verdict(later)
    assert outcome == "up" and "PITR impossible between" in message


def test_what_cannot_be_read_is_a_problem_not_an_exception():
    state = compute(status=None, info=None, problems=("no node of cluster demo answers as primary (primary: refused)",))
    assert state.age_seconds is None and not state.objective_met and state.window_start is None
    assert archive_verdict(state) == ("down", "no node of cluster demo answers as primary (primary: refused)")
    assert ArchiveState.from_data({}) is None and ArchiveState.from_data({"checked_at": "garbage"}) is None
