"""docker-compose.yml runs the same processes as `make run` (no Docker engine here: checked statically)."""

from __future__ import annotations

from pathlib import Path

import yaml

from scripts.localenv import PROCESSES

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_declares_every_process_of_the_local_environment():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    expected = {"portal-db", "demo-primary", "demo-replica", "redis", *PROCESSES}
    assert expected <= set(services), expected - set(services)
    for name in ("worker-checks", "worker-ops", "worker-default"):
        command = services[name]["command"]
        assert command[:4] == ["celery", "-A", "hadr_portal", "worker"]
        assert command[command.index("-Q") + 1] == name.removeprefix("worker-")
    assert services["beat"]["command"][3] == "beat"
    assert services["demo-app"]["command"] == ["python", "-m", "demo.onboarding"]
    for name in PROCESSES:
        env = services[name]["environment"]
        if name != "demo-app":
            assert {"HADR_SECRET_KEY", "HADR_DATABASE_URL", "HADR_REDIS_URL"} <= set(env)
    for name in ("worker-ops", "web"):  # backups are written by the ops worker and downloaded through web
        assert "backups:/var/backups/hadr" in services[name]["volumes"]
        assert services[name]["environment"]["HADR_BACKUP_DIR"] == "/var/backups/hadr"
    # pgBackRest's stanzas are written by the ops worker and read by archive_command in the database containers;
    # a local storage target's repository (<path>/pgbackrest) is in the backups volume both mount
    for name in ("worker-ops", "demo-primary", "demo-replica"):
        assert {"pgbackrest:/var/lib/hadr/pgbackrest", "backups:/var/backups/hadr"} <= set(services[name]["volumes"])
    assert services["worker-ops"]["environment"]["HADR_PGBACKREST_DIR"] == "/var/lib/hadr/pgbackrest"
    init_script = services["demo-primary"]["volumes"][1].split(":")[0]
    assert (ROOT / init_script).is_file()
