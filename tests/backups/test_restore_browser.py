"""A DBA repairs a damaged database with the restore wizard in Chromium, and a corrupted backup is refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from hadr_portal.backups.models import Restore
from hadr_portal.core.permissions import Role
from tests.backups.conftest import APP_DB, app_sql, backup_of, data_dump, databases
from tests.conftest import make_user, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def start_wizard(page, base: str) -> None:
    page.goto(f"{base}/backups/")
    page.locator("#policy-restore-app").get_by_role("button", name="Restore…").click()
    expect(page.locator("ol.stepper [aria-current=step]")).to_have_text("1. Situation")
    expect(page.locator("#runbook")).to_contain_text("Data corruption, step by step")
    page.get_by_label("Data corruption").check()
    page.get_by_role("button", name="Next: choose the backup").click()
    expect(page.locator("#step-backup")).to_contain_text("suggested")
    page.get_by_role("button", name="Next: choose where to restore").click()
    expect(page.locator("#step-destination")).to_contain_text("safe default")


def test_dba_replaces_a_damaged_database_and_gets_the_backed_up_data_back(
    live_server, page, app_policy, start_worker, infra, scratch_dir, backup_dir, monkeypatch
):
    monkeypatch.setenv("HADR_RESTORE_SCRATCH_DIR", str(scratch_dir))
    backup_dir.chmod(0o755)
    recorded = data_dump(infra)
    backup_of(app_policy)
    app_sql(infra, "DELETE FROM onboarding_events WHERE id % 2 = 0; UPDATE app_users SET email = 'lost' || id")
    assert data_dump(infra) != recorded
    start_worker("ops")
    make_user("dora", Role.DBA)
    sign_in(page, live_server.url, "dora")

    start_wizard(page, live_server.url)
    # going back keeps the choice, going forward again through the stepper
    page.locator("ol.stepper").get_by_role("link", name="1. Situation").click()
    expect(page.get_by_label("Data corruption")).to_be_checked()
    page.get_by_role("button", name="Next: choose the backup").click()
    page.get_by_role("button", name="Next: choose where to restore").click()

    page.get_by_label(f"Replace the production database {APP_DB}").check()
    page.get_by_role("button", name="Next: pre-flight checks").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Type the database's name, {APP_DB}, to replace it.")
    page.get_by_label(f"Replace the production database {APP_DB}").check()
    page.locator("input[name=confirm]").fill(APP_DB)
    page.get_by_role("button", name="Next: pre-flight checks").click()
    expect(page.locator("#step-preflight")).to_contain_text("Checksum re-read and compared", timeout=30000)
    expect(page.locator("#step-preflight")).to_contain_text("safety backup")
    page.get_by_role("button", name=f"Replace {APP_DB} now").click()

    expect(page.locator("#step-summary")).to_contain_text("RTO measured", timeout=90000)
    expect(page.locator("#step-verify")).to_contain_text("amcheck")
    expect(page.locator("#step-verify .badge-failed")).to_have_count(0)
    restore = Restore.objects.get()
    assert restore.status == "verified" and restore.rto_seconds > 0
    assert data_dump(infra) == recorded  # data-only, ordered: what was backed up
    assert next(v for v in restore.verification if v["name"] == "amcheck")["ok"]
    kept = restore.kept_database
    page.locator("#kept input[name=confirm]").fill(kept)
    page.get_by_role("button", name="Drop the old database").click()
    expect(page.locator("#kept")).to_contain_text("was dropped")
    assert databases(infra) == {APP_DB}


def test_a_corrupted_backup_is_refused_in_the_pre_flight(live_server, page, app_policy, backup_dir, infra):
    backup = backup_of(app_policy)
    path = backup_dir / backup.key
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    make_user("dora", Role.DBA)
    sign_in(page, live_server.url, "dora")
    start_wizard(page, live_server.url)
    page.get_by_role("button", name="Next: pre-flight checks").click()
    expect(page.locator("#step-preflight")).to_contain_text("Checksum mismatch", timeout=30000)
    expect(page.get_by_role("alert")).to_contain_text("The restore cannot go ahead.")
    expect(page.get_by_role("button", name="Restore now")).to_have_count(0)
    assert databases(infra) == {APP_DB}
