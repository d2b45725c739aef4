"""Backup benchmarks (run by bench/run.py against the local environment).

backups
    A generated database `hadr_bench` on the demo primary (>= 1 GB: an `events` table with uuids,
    timestamps, hex and word text of varied lengths, jsonb with random numbers, numeric amounts;
    the custom-format dump compresses ~2.5x against a plain one, ~3x against the database size).
    Our backup operation runs in a child process, as the `ops` worker runs it: request, atomic
    claim, heartbeat, stream to storage while hashing, re-read verification, manifest, `good`.
    Side by side in the same run, each at least twice (median), against:

      logical -> local    pg_dump -Fc -f FILE
      logical -> S3       pg_dump -Fc | boto3 upload_fileobj (what `aws s3 cp - s3://...` does),
                          both to the same moto server
      physical -> local   pg_basebackup -D DIR -Ft -X fetch -c fast, uncompressed and with lz4
      reference peer      pgbackrest backup --type=full (lz4, process-max=2) of the same cluster

    Peak RSS of our backup process, also on a ~100 MB database: it must not grow with size.

The children: `python -m bench.backup_bench ours POLICY` runs one of our backups in this process
and prints its measurements as JSON; `python -m bench.backup_bench s3-upload ENDPOINT BUCKET KEY`
uploads its stdin with boto3's stock managed upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("HADR_PG_BIN", "/usr/lib/postgresql/15/bin"))
BENCH_PREFIX = "bench-"
OUT_DIR = ROOT / ".run" / "bench-backups"
PGBACKREST_DIR = Path(tempfile.gettempdir()) / "hadr-pgbackrest"

BIG_DB, BIG_ROWS = "hadr_bench", 2_800_000  # ~1.25 GB
SMALL_DB, SMALL_ROWS = "hadr_bench_small", 240_000  # ~105 MB
CHUNK_ROWS = 400_000
DATA_VERSION = "hadr-bench events v1"  # change it when the generator changes: the data is made anew

S3_BUCKET = "hadr-bench"
S3_KEY_ENV, S3_SECRET_ENV = "HADR_BENCH_S3_KEY", "HADR_BENCH_S3_SECRET"
S3_REGION = "us-east-1"

EVENTS_DDL = """
CREATE TABLE events (
    id bigint PRIMARY KEY,
    event_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    account text NOT NULL,
    kind text NOT NULL,
    message text NOT NULL,
    payload jsonb NOT NULL,
    amount numeric(12, 2) NOT NULL
)
"""
# Half the messages are hex of varied length (compresses ~2x), half a few words with numbers
# (~4x); uuids, timestamps, IP addresses, coordinates and amounts are random.
EVENTS_INSERT = """
INSERT INTO events
SELECT g,
       gen_random_uuid(),
       timestamptz '2024-01-01' + random() * interval '700 days',
       'acct-' || (random() * 200000)::int,
       (ARRAY['login', 'logout', 'purchase', 'refund', 'view', 'search', 'signup', 'update_profile',
              'password_reset', 'export'])[1 + (random() * 9)::int],
       CASE WHEN random() < 0.5
         THEN substr(repeat(md5(random()::text), 1 + (random() * 3)::int), 1, 16 + (random() * 100)::int)
         ELSE array_to_string(ARRAY(
             SELECT (ARRAY['order', 'shipped', 'customer', 'payment', 'failed', 'retry', 'address', 'warehouse',
                           'delayed', 'invoice', 'cart', 'item', 'sku', 'discount', 'coupon', 'session', 'device',
                           'mobile', 'desktop', 'region'])[1 + (random() * 19)::int] || (random() * 999)::int
             FROM generate_series(1, 3 + (g %% 12))), ' ')
       END,
       jsonb_build_object(
           'amount', round((random() * 10000)::numeric, 2),
           'qty', (random() * 50)::int,
           'ip', (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int
                 || '.' || (random() * 255)::int,
           'lat', random() * 180 - 90,
           'lon', random() * 360 - 180,
           'trace', md5(random()::text),
           'tags', jsonb_build_array((ARRAY['a', 'b', 'vip', 'new', 'eu', 'us', 'apac'])[1 + (random() * 6)::int],
                                     (random() * 1000)::int)),
       round((random() * 100000)::numeric, 2)
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""


# --- the demo primary and the data ---------------------------------------------------------------


def primary(dbname: str = "postgres") -> Any:
    """The demo cluster's primary as the portal knows it (the node our backups go to)."""
    from hadr_portal.adapters.pg.connection import PgConninfo
    from hadr_portal.databases.models import Cluster, Purpose

    nodes = list(Cluster.objects.get(name="demo").nodes.all())
    node = next((n for n in nodes if n.role == "primary"), None) or nodes[0]
    address = node.address(Purpose.BACKUP)  # the role our backups connect as
    return PgConninfo(host=address.host, port=address.port, user=address.user, password=address.password, dbname=dbname)


def connect(dbname: str) -> Any:
    import psycopg

    target = primary(dbname)
    return psycopg.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    )


def ensure_database(dbname: str, rows: int) -> int:
    """Create `dbname` with `rows` generated events unless it already holds exactly that; its size in bytes."""
    import psycopg
    from psycopg import sql

    with connect("postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    marker = f"{DATA_VERSION}, {rows} rows"
    with connect(dbname) as conn:
        found = conn.execute("SELECT obj_description(to_regclass('public.events'), 'pg_class')").fetchone()
        if not found or found[0] != marker:
            print(f"  generating {dbname}: {rows:,} events (once; later runs reuse it)...", flush=True)
            started = time.perf_counter()
            conn.execute("DROP TABLE IF EXISTS events")
            conn.execute(EVENTS_DDL)
            for first in range(1, rows + 1, CHUNK_ROWS):
                conn.execute(EVENTS_INSERT, {"first": first, "last": min(rows, first + CHUNK_ROWS - 1)})
            # Frozen, hinted and checkpointed now, so that no measured backup pays for it.
            conn.execute("VACUUM (FREEZE, ANALYZE) events")
            conn.execute("CHECKPOINT")
            conn.execute(sql.SQL("COMMENT ON TABLE events IS {}").format(sql.Literal(marker)))
            print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert size is not None
        return int(size[0])


def cluster_facts() -> tuple[int, Path]:
    """Bytes of all databases of the primary, and its data directory."""
    with connect("postgres") as conn:
        total = conn.execute("SELECT sum(pg_database_size(datname))::bigint FROM pg_database").fetchone()
        data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()
    assert total is not None and data_dir is not None
    return int(total[0]), Path(data_dir[0])


def warm_page_cache(data_dir: Path) -> None:
    """Read the data directory once, so that the first measured backup does not read from disk."""
    buffer = bytearray(8 * 1024 * 1024)
    for path in sorted(data_dir.rglob("*")):
        with contextlib.suppress(OSError), open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


# --- our side: the backup operation in a child process ---------------------------------------------


def policy_create(
    name: str, *, dbname: str, engine: str, storage_kind: str, config: dict[str, Any], compress: str = ""
) -> None:
    from hadr_portal.backups.models import BackupPolicy, StorageTarget
    from hadr_portal.databases.models import Cluster

    storage = StorageTarget.objects.create(name=name, kind=storage_kind, config=config)
    BackupPolicy.objects.create(
        name=name,
        cluster=Cluster.objects.get(name="demo"),
        dbname=dbname,
        engine=engine,
        compress=compress,
        storage=storage,
        enabled=False,  # never queued by the running beat
    )


def bench_rows_cleanup() -> None:
    """Remove the benchmark's policies, storage targets and backups (objects first, then rows)."""
    from django.utils import timezone

    from hadr_portal.backups.models import Backup, BackupPolicy, StorageTarget
    from hadr_portal.backups.storage import storage_for
    from hadr_portal.core.models import Operation

    for target in StorageTarget.objects.filter(name__startswith=BENCH_PREFIX):
        with contextlib.suppress(Exception):  # a moto server of an earlier run is gone with its objects
            storage = storage_for(target)
            for item in storage.list(""):
                storage.delete(item.key)
    # A benchmark child killed mid-backup would leave its operation active and block the next run.
    Operation.objects.filter(target__startswith=f"backup:{BENCH_PREFIX}", status__in=Operation.ACTIVE).update(
        status=Operation.Status.FAILED, finished_at=timezone.now(), error="abandoned benchmark run"
    )
    Backup.objects.filter(policy__name__startswith=BENCH_PREFIX).delete()
    BackupPolicy.objects.filter(name__startswith=BENCH_PREFIX).delete()
    StorageTarget.objects.filter(name__startswith=BENCH_PREFIX).delete()


def ours(policy_name: str) -> dict[str, Any]:
    """One backup by our operation, in a child process; its measurements. Its objects and row are removed."""
    from hadr_portal.backups.models import Backup, BackupPolicy
    from hadr_portal.backups.storage import storage_for

    result = subprocess.run(
        [sys.executable, "-m", "bench.backup_bench", "ours", policy_name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise SystemExit(f"our backup ({policy_name}) crashed:\n{result.stderr.strip()[-3000:]}")
    measured: dict[str, Any] = json.loads(lines[-1])
    if measured["status"] != "succeeded":
        raise SystemExit(f"our backup ({policy_name}) {measured['status']}: {measured['error']}")
    storage = storage_for(BackupPolicy.objects.get(name=policy_name).storage)
    for item in storage.list(""):
        storage.delete(item.key)
    Backup.objects.filter(policy__name=policy_name).delete()
    return measured


def _peak_rss_mb() -> float:
    """This process's peak RSS since it started its program. Not ru_maxrss: Linux carries that over
    from the parent through fork and exec, so a child would report the bench process's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def child_ours(policy_name: str) -> None:
    """In the child: request and run one backup here, as the `ops` worker would; JSON on stdout."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hadr_portal.settings")
    import django

    django.setup()
    from hadr_portal.backups import services
    from hadr_portal.backups.models import Backup, BackupPolicy
    from hadr_portal.core import operations
    from hadr_portal.core.models import OperationLogLine

    policy = BackupPolicy.objects.select_related("cluster", "storage").get(name=policy_name)
    if policy.storage.kind == "s3":
        import boto3  # noqa: F401 - loaded before the baseline, as in a worker that has made S3 backups

    # This process is the worker: the request must not also go to Redis, where the running `ops`
    # worker would claim it first.
    operations._enqueue = lambda operation_id, queue: None
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    operation = services.backup_request(policy=policy, actor=None)
    finished = operations.operation_execute(operation_id=operation.pk)
    seconds = time.perf_counter() - started
    assert finished is not None
    at = {}
    for line in OperationLogLine.objects.filter(operation_id=operation.pk).order_by("at", "id"):
        for word in ("Streaming", "Stored", "Verified"):
            if line.message.startswith(word):
                at[word] = line.at
    backup = Backup.objects.filter(operation_id=operation.pk).first()
    verify = (at["Verified"] - at["Stored"]).total_seconds() if {"Stored", "Verified"} <= at.keys() else None
    stream = (at["Stored"] - at["Streaming"]).total_seconds() if {"Streaming", "Stored"} <= at.keys() else None
    print(
        json.dumps(
            {
                "status": finished.status,
                "error": finished.error,
                "seconds": seconds,
                "stream_seconds": stream,
                "verify_seconds": verify,
                "size": backup.size if backup else None,
                "peak_rss_mb": _peak_rss_mb(),
                "baseline_rss_mb": baseline,
            }
        )
    )


# --- the stock side --------------------------------------------------------------------------------


def pg_env() -> dict[str, str]:
    target = primary()
    return {**os.environ, "PGPASSWORD": target.password, "PGCONNECT_TIMEOUT": "10", "LC_ALL": "C"}


def pg_args() -> list[str]:
    target = primary()
    return ["-h", target.host, "-p", str(target.port), "-U", target.user, "-w"]


def timed(argv: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])}... failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return seconds


def tree_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def stock_pg_dump(dbname: str) -> dict[str, Any]:
    out = OUT_DIR / "stock" / f"{dbname}.dump"
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = timed([str(PG_BIN / "pg_dump"), "-Fc", *pg_args(), "-f", str(out), dbname], env=pg_env())
    size = tree_size(out)
    out.unlink()
    return {"seconds": seconds, "size": size}


def stock_pg_dump_s3(dbname: str, endpoint: str) -> dict[str, Any]:
    """pg_dump -Fc piped into boto3's managed upload (default TransferConfig), like `aws s3 cp -`."""
    s3 = s3_client(endpoint)
    key = f"stock/{dbname}.dump"
    argv, env = [str(PG_BIN / "pg_dump"), "-Fc", *pg_args(), dbname], pg_env()
    started = time.perf_counter()
    dump = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert dump.stdout is not None
    upload = subprocess.Popen(
        [sys.executable, "-m", "bench.backup_bench", "s3-upload", endpoint, S3_BUCKET, key],
        stdin=dump.stdout,
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    dump.stdout.close()  # the uploader holds the only read end
    _, upload_err = upload.communicate()
    _, dump_err = dump.communicate()
    seconds = time.perf_counter() - started
    if dump.returncode or upload.returncode:
        raise SystemExit(
            f"pg_dump | s3-upload failed: {(dump_err or b'').decode()[-1000:]} {upload_err.decode()[-2000:]}"
        )
    size = int(s3.head_object(Bucket=S3_BUCKET, Key=key)["ContentLength"])
    s3.delete_object(Bucket=S3_BUCKET, Key=key)
    return {"seconds": seconds, "size": size}


def stock_pg_basebackup(compress: str | None) -> dict[str, Any]:
    out = OUT_DIR / "stock" / "basebackup"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(PG_BIN / "pg_basebackup"), *pg_args(), "-D", str(out), "-Ft", "-X", "fetch", "-c", "fast"]
    seconds = timed(argv + ([f"--compress={compress}"] if compress else []), env=pg_env())
    size = tree_size(out)
    shutil.rmtree(out)
    return {"seconds": seconds, "size": size}


def child_s3_upload(endpoint: str, bucket: str, key: str) -> None:
    s3_client(endpoint).upload_fileobj(sys.stdin.buffer, bucket, key)


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ[S3_KEY_ENV],
        aws_secret_access_key=os.environ[S3_SECRET_ENV],
        region_name=S3_REGION,
    )


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server in its own process (not sharing a GIL with either side); its endpoint URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the moto server did not start (is moto[server] installed? make install-dev)")
            time.sleep(0.1)
        os.environ.setdefault(S3_KEY_ENV, "bench")
        os.environ.setdefault(S3_SECRET_ENV, "bench-secret")
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint).create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- pgbackrest, the reference peer ------------------------------------------------------------------


def pgbackrest_backup(data_dir: Path) -> dict[str, Any]:
    """`pgbackrest backup --type=full` of the demo primary into a throwaway repository.

    Archiving is not configured on the demo primary and is left so: archive-check=n (the backup
    does not wait for its WAL to be archived: fine for measuring, not a restorable-by-itself backup).
    pgbackrest reaches the server over TCP through PGHOST/PGPASSWORD (the demo has no socket).
    """
    target = primary()
    shutil.rmtree(PGBACKREST_DIR, ignore_errors=True)
    for sub in ("repo", "log", "lock"):
        (PGBACKREST_DIR / sub).mkdir(parents=True)
    config = PGBACKREST_DIR / "pgbackrest.conf"
    config.write_text(
        "[global]\n"
        f"repo1-path={PGBACKREST_DIR / 'repo'}\n"
        f"log-path={PGBACKREST_DIR / 'log'}\n"
        f"lock-path={PGBACKREST_DIR / 'lock'}\n"
        "repo1-retention-full=1\n"
        "compress-type=lz4\n"
        "process-max=2\n"
        "start-fast=y\n"
        "archive-check=n\n"
        "log-level-console=warn\n"
        "log-level-file=off\n"
        "\n[bench]\n"
        f"pg1-path={data_dir}\n"
        f"pg1-port={target.port}\n"
        f"pg1-user={target.user}\n"
    )
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in [PGBACKREST_DIR, *PGBACKREST_DIR.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    env = {**pg_env(), "PGHOST": target.host}
    base = [*as_postgres, "pgbackrest", f"--config={config}", "--stanza=bench"]
    timed([*base, "stanza-create"], env=env, cwd="/")
    seconds = timed([*base, "backup", "--type=full"], env=env, cwd="/")
    size = tree_size(PGBACKREST_DIR / "repo" / "backup")
    shutil.rmtree(PGBACKREST_DIR)
    return {"seconds": seconds, "size": size}


# --- the whole benchmark ------------------------------------------------------------------------------


def side_by_side(
    rounds: int, ours_fn: Callable[[], dict[str, Any]], stock_fn: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Each side `rounds` times, alternating which goes first; medians."""
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for i in range(rounds):
        if i % 2 == 0:
            mine.append(settled(ours_fn))
            theirs.append(settled(stock_fn))
        else:
            theirs.append(settled(stock_fn))
            mine.append(settled(ours_fn))
    return {"ours": medians(mine), "stock": medians(theirs), "ours_runs": mine, "stock_runs": theirs}


def settled(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement after writing back all dirty pages: no run pays for the one before."""
    os.sync()
    return fn()


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [key for key, value in runs[0].items() if isinstance(value, int | float) and not isinstance(value, bool)]
    return {key: statistics.median(run[key] for run in runs if run.get(key) is not None) for key in keys}


def backups_bench(rounds: int = 2) -> dict[str, Any]:
    from hadr_portal.adapters.pg.backup import backup_stream

    if not shutil.which("pgbackrest"):
        print("  pgbackrest is not installed (apt-get install pgbackrest): its row will be skipped", flush=True)
    print("  preparing data on the demo primary...", flush=True)
    big = ensure_database(BIG_DB, BIG_ROWS)
    small = ensure_database(SMALL_DB, SMALL_ROWS)
    cluster_size, data_dir = cluster_facts()
    with contextlib.suppress(OSError):
        warm_page_cache(data_dir)
    results: dict[str, Any] = {"big": big, "small": small, "cluster": cluster_size, "rounds": rounds}

    bench_rows_cleanup()
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    try:
        print("  logical backups to local storage...", flush=True)
        for name, dbname in (("bench-logical", BIG_DB), ("bench-logical-small", SMALL_DB)):
            policy_create(
                name, dbname=dbname, engine="pg_dump", storage_kind="local", config={"path": str(OUT_DIR / name)}
            )
        results["logical_local"] = side_by_side(rounds, lambda: ours("bench-logical"), lambda: stock_pg_dump(BIG_DB))
        results["logical_local_small"] = side_by_side(
            rounds, lambda: ours("bench-logical-small"), lambda: stock_pg_dump(SMALL_DB)
        )

        print("  logical backups to S3 (moto server)...", flush=True)
        with moto_server() as endpoint:
            s3_config = {
                "bucket": S3_BUCKET,
                "prefix": "hadr",
                "endpoint_url": endpoint,
                "region": S3_REGION,
                "access_key_env": S3_KEY_ENV,
                "secret_key_env": S3_SECRET_ENV,
            }
            for name, dbname in (("bench-logical-s3", BIG_DB), ("bench-logical-s3-small", SMALL_DB)):
                policy_create(name, dbname=dbname, engine="pg_dump", storage_kind="s3", config=s3_config)
            results["logical_s3"] = side_by_side(
                rounds, lambda: ours("bench-logical-s3"), lambda: stock_pg_dump_s3(BIG_DB, endpoint)
            )
            results["logical_s3_small"] = side_by_side(
                rounds, lambda: ours("bench-logical-s3-small"), lambda: stock_pg_dump_s3(SMALL_DB, endpoint)
            )
            bench_rows_cleanup()  # the S3 objects go while the server is still there

        print("  physical backups to local storage...", flush=True)
        for name, compress in (("bench-physical", ""), ("bench-physical-lz4", "lz4")):
            policy_create(
                name,
                dbname="postgres",
                engine="pg_basebackup",
                storage_kind="local",
                config={"path": str(OUT_DIR / name)},
                compress=compress,
            )
        results["physical"] = side_by_side(rounds, lambda: ours("bench-physical"), lambda: stock_pg_basebackup(None))
        results["physical_lz4"] = side_by_side(
            rounds, lambda: ours("bench-physical-lz4"), lambda: stock_pg_basebackup("lz4")
        )
        try:
            with backup_stream(primary(), engine="pg_basebackup", compress="server-lz4"):
                pass
            results["server_lz4"] = "accepted"
        except ValueError as exc:
            results["server_lz4"] = str(exc).split(":")[0]

        if shutil.which("pgbackrest"):
            print("  pgbackrest...", flush=True)
            results["pgbackrest"] = medians([settled(lambda: pgbackrest_backup(data_dir)) for _ in range(rounds)])
            version = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, check=False)
            results["pgbackrest_version"] = version.stdout.strip() or "pgbackrest"
    finally:
        bench_rows_cleanup()
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        shutil.rmtree(PGBACKREST_DIR, ignore_errors=True)
    return results


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "ours":
        child_ours(*args)
    elif command == "s3-upload":
        child_s3_upload(*args)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
