"""docker-compose.yml runs the same processes as `make up` (no Docker engine here: checked statically, and the
Patroni members' settings read by the installed Patroni's own configuration loader)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hadr_portal.demo import patroni as demo
from scripts.localenv import PROCESSES

ROOT = Path(__file__).resolve().parent.parent
PATRONI_MEMBERS = ("ha1", "ha2")
# compose's substitutions: ${NAME}, ${NAME:-default}, ${NAME:?error}
VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")
# what Patroni makes of its file and the PATRONI_* variables, and the variables it left unread
PATRONI_CONFIG = """
import json, os, sys
from patroni.config import Config
config = Config(sys.argv[1], validator=None)
left = sorted(name for name in os.environ if name.startswith("PATRONI_"))
print(json.dumps({"config": config.copy(), "left": left}, default=str))
"""


def compose_services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def required_variable(value: str) -> str:
    """The variable `value` is, when compose refuses to start without it ("" otherwise)."""
    match = VARIABLE.fullmatch(value)
    return match.group(1) if match and match.group(2) == "?" else ""


def interpolated(value: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, kind, argument = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {argument}")
        return argument or ""

    return VARIABLE.sub(one, value)


def test_compose_file_declares_every_process_of_the_local_environment():
    services = compose_services()
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


def test_patroni_cluster_is_an_etcd_and_two_members():
    services = compose_services()
    etcd = services["etcd"]
    assert etcd["image"] == "quay.io/coreos/etcd:v3.4.23"
    assert etcd["healthcheck"]["test"][-2:] == ["endpoint", "health"]
    assert "etcd:/etcd-data" in etcd["volumes"]
    dockerfile = (ROOT / "deploy/patroni/Dockerfile").read_text()
    # Debian bookworm's Patroni 3.0.2 (the timings' release), not the newer one apt.postgresql.org has
    assert "FROM postgres:15-bookworm" in dockerfile
    assert "patroni/bookworm python3-etcd" in dockerfile
    for name in PATRONI_MEMBERS:
        service = services[name]
        env = service["environment"]
        assert service["build"] == "deploy/patroni"
        assert env["PATRONI_NAME"] == name
        assert env["PATRONI_SCOPE"] == "demo-ha"
        assert env["PATRONI_ETCD3_HOSTS"] == "etcd:2379"
        assert env["PATRONI_RESTAPI_CONNECT_ADDRESS"] == f"{name}:8008"
        assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{name}:5432"
        assert service["depends_on"] == {"etcd": {"condition": "service_healthy"}}
        assert "http://127.0.0.1:8008/health" in " ".join(service["healthcheck"]["test"])
        # its own data volume, the data directory inside it (a reinitialize removes and re-creates that)
        assert f"{name}:/var/lib/postgresql/data" in service["volumes"]
        assert env["PATRONI_POSTGRESQL_DATA_DIR"].startswith("/var/lib/postgresql/data/")
        for volume in service["volumes"][1:]:
            source, target, mode = volume.split(":")
            assert (ROOT / source).is_file() and target.startswith("/etc/patroni/") and mode == "ro"


def test_patroni_members_have_the_demo_settings():
    settings = yaml.safe_load((ROOT / "deploy/patroni/patroni.yml").read_text())
    dcs = settings["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (demo.TTL, demo.LOOP_WAIT, demo.RETRY_TIMEOUT)
    assert dcs["maximum_lag_on_failover"] == demo.MAXIMUM_LAG_ON_FAILOVER
    assert dcs["postgresql"]["use_pg_rewind"] is True and dcs["postgresql"]["use_slots"] is True
    assert settings["postgresql"]["bin_dir"] == demo.PG_BIN_DIR
    # passwords for every connection over the network, and only from the compose network
    for line in settings["postgresql"]["pg_hba"]:
        kind, *_, address, method = line.split()
        assert kind == "local" or (method == "scram-sha-256" and address in ("samenet", "127.0.0.1/32")), line
    script = settings["bootstrap"]["post_bootstrap"].split()[-1]
    assert f"./deploy/patroni/post-bootstrap.sh:{script}:ro" in compose_services()["ha1"]["volumes"]


def test_patroni_rest_api_requires_a_password_the_portal_has():
    services = compose_services()
    patroni_env = services["ha1"]["environment"]
    assert required_variable(patroni_env["PATRONI_RESTAPI_PASSWORD"]) == "HADR_PATRONI_REST_PASSWORD"
    for secret in ("SUPERUSER_PASSWORD", "REWIND_PASSWORD", "REPLICATION_PASSWORD"):
        assert required_variable(patroni_env[f"PATRONI_{secret}"]), secret
    urls = ",".join(
        f"http://{services[name]['environment']['PATRONI_RESTAPI_CONNECT_ADDRESS']}" for name in PATRONI_MEMBERS
    )
    nodes = ",".join(
        f"{name}={services[name]['environment']['PATRONI_POSTGRESQL_CONNECT_ADDRESS']}" for name in PATRONI_MEMBERS
    )
    for name in set(PROCESSES) - {"demo-app"}:
        env = services[name]["environment"]
        assert env["HADR_DEMO_HA_PATRONI_URLS"] == urls
        assert env["HADR_DEMO_HA_NODES"] == nodes
        assert env["HADR_PATRONI_REST_USER"] == patroni_env["PATRONI_RESTAPI_USERNAME"]
        assert env["HADR_PATRONI_REST_PASSWORD"] == patroni_env["PATRONI_RESTAPI_PASSWORD"]


def test_only_the_portal_and_the_demo_application_are_published_on_loopback():
    services = compose_services()
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(published) == {"web", "demo-app"}
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)
    assert not any("network_mode" in service for service in services.values())


def test_patroni_reads_each_members_settings_from_its_file_and_variables():
    """The installed Patroni (the Debian package the image installs) loads patroni.yml with the member's
    variables as compose gives them: every PATRONI_* name is one it knows."""
    for name in PATRONI_MEMBERS:
        raw = compose_services()[name]["environment"]
        required = {required_variable(value) for value in raw.values()} - {""}
        secrets = {variable: f"{variable.lower()}-value" for variable in required}
        env = {key: interpolated(value, secrets) for key, value in raw.items()}
        answer = subprocess.run(
            [demo.SYSTEM_PYTHON, "-c", PATRONI_CONFIG, str(ROOT / "deploy/patroni/patroni.yml")],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            check=True,
        )
        loaded = json.loads(answer.stdout)
        config = loaded["config"]
        assert loaded["left"] == []
        assert "users" not in config["bootstrap"]  # a misspelt PATRONI_<X>_PASSWORD would become a user to create
        assert (config["name"], config["scope"], config["etcd3"]["hosts"]) == (name, "demo-ha", ["etcd:2379"])
        assert config["restapi"]["listen"] == "0.0.0.0:8008"
        assert config["restapi"]["connect_address"] == f"{name}:8008"
        assert config["restapi"]["authentication"] == {
            "username": "patroni",
            "password": secrets["HADR_PATRONI_REST_PASSWORD"],
        }
        postgresql = config["postgresql"]
        assert (postgresql["listen"], postgresql["connect_address"]) == ("0.0.0.0:5432", f"{name}:5432")
        assert postgresql["data_dir"] == env["PATRONI_POSTGRESQL_DATA_DIR"]
        authentication = postgresql["authentication"]
        assert {role: entry["username"] for role, entry in authentication.items()} == {
            "superuser": "postgres",
            "rewind": "postgres",
            "replication": "replicator",
        }
        assert authentication["replication"]["password"] == secrets["HADR_DEMO_HA_REPLICATION_PASSWORD"]
        assert config["bootstrap"]["dcs"]["ttl"] == demo.TTL
