#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks, then the Python virtual environment.
#   scripts/bootstrap.sh           runtime (make run)
#   scripts/bootstrap.sh --dev     plus test tools and Chromium (make test)
# Never upgrades an installed PostgreSQL server (it may be running a cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PG_BIN="${HADR_PG_BIN:-/usr/lib/postgresql/15/bin}"
PYTHON="${PYTHON:-python3}"

SUDO=""
if [[ $EUID -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; fi
fi

missing=()
[[ -x "$PG_BIN/postgres" && -x "$PG_BIN/pg_basebackup" ]] || missing+=(postgresql-15)
[[ -x "$PG_BIN/psql" ]] || missing+=(postgresql-client-15)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v runuser >/dev/null || missing+=(util-linux)
# physical backups, WAL archiving and point-in-time recovery (the demo cluster's stanza)
command -v pgbackrest >/dev/null || missing+=(pgbackrest)
# automatic failover's engines: the demo's high-availability cluster (etcd + two Patroni nodes), tests included
[[ -x /usr/bin/patroni ]] || missing+=(patroni)
command -v etcd >/dev/null || missing+=(etcd-server)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [[ $DEV -eq 1 ]]; then
  command -v chromium >/dev/null || missing+=(chromium)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  command -v promtool >/dev/null || missing+=(prometheus)
fi

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "error: missing ${missing[*]} and this is not a Debian/Ubuntu system; install them by hand." >&2
    exit 1
  fi
  if [[ $EUID -ne 0 && -z "$SUDO" ]]; then
    echo "error: missing ${missing[*]}; run as root or install sudo." >&2
    exit 1
  fi
  echo "==> Installing system packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade "${missing[@]}" >/dev/null
fi

# The unprivileged account that restart commands, node controllers and post-failover hooks run as when the
# workers run as root (HADR_COMMAND_USER): no login shell, its own home (e.g. for an SSH key), no password.
COMMAND_USER="${HADR_COMMAND_USER:-hadr-exec}"
if ! getent passwd "$COMMAND_USER" >/dev/null; then
  if [[ $EUID -eq 0 || -n "$SUDO" ]]; then
    echo "==> Creating the command user $COMMAND_USER (HADR_COMMAND_USER)"
    $SUDO useradd --system --user-group --shell /usr/sbin/nologin \
      --home-dir "/var/lib/$COMMAND_USER" --create-home "$COMMAND_USER"
    $SUDO chmod 700 "/var/lib/$COMMAND_USER"
  else
    echo "note: no command user $COMMAND_USER (HADR_COMMAND_USER): only needed when the workers run as root."
  fi
fi

REQS=requirements.txt
[[ $DEV -eq 1 ]] && REQS=requirements-dev.txt
STAMP=".venv/.installed-$(cat requirements.txt "$REQS" | sha256sum | cut -c1-16)"
if [[ ! -x .venv/bin/python ]]; then
  echo "==> Creating .venv"
  "$PYTHON" -m venv .venv
fi
if [[ ! -f "$STAMP" ]]; then
  echo "==> Installing Python requirements ($REQS)"
  .venv/bin/pip install -q --disable-pip-version-check -r "$REQS"
  touch "$STAMP"
fi
