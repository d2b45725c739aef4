"""A DBA backs up from the browser and watches it through to a good backup."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from hadr_portal.backups.models import Backup, BackupPolicy, StorageTarget
from hadr_portal.core.permissions import Role
from tests.conftest import make_user, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dba_backs_up_now_and_sees_size_and_checksum(live_server, page, demo_cluster, start_worker, tmp_path):
    tmp_path.chmod(0o755)
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(tmp_path)})
    BackupPolicy.objects.create(name="demo-onboarding", cluster=demo_cluster, dbname="onboarding", storage=storage)
    start_worker("ops")
    make_user("dora", Role.DBA)
    sign_in(page, live_server.url, "dora")
    page.get_by_role("link", name="Backups").click()
    expect(page.locator("#policy-demo-onboarding")).to_contain_text("no good backup yet")
    page.get_by_role("button", name="Back up now").click()
    expect(page.locator(".operation-progress .badge")).to_have_text("Succeeded", timeout=30000)
    backup = Backup.objects.get()
    page.get_by_role("link", name="Backups").click()
    row = page.locator("#history tr", has_text="Good")
    expect(row).to_contain_text(backup.sha256[:10])
    expect(page.locator("#policy-demo-onboarding")).to_contain_text("last good backup")
    row.get_by_role("link").first.click()
    expect(page.locator("dl.facts")).to_contain_text(backup.sha256)
    expect(page.get_by_role("link", name="Download")).to_be_visible()
