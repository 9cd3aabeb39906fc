"""tunix-rt side by side with its predecessor and a floor, on the same PostgreSQL and the same traces.

    .venv/bin/python -m bench.bench_side_by_side --traces 100000 \\
        --predecessor /work/peer/tunix-rt-backend            # quick run
    .venv/bin/python -m bench.bench_side_by_side --predecessor DIR          # 1,000,000 stored traces
    .venv/bin/python -m bench.bench_side_by_side --reuse --only reads,disk  # what is loaded already

The systems, each one process on 127.0.0.1 (ports --port .. --port+2):

* ours: granian serving `tunixrt.wsgi:application` as bin/serve runs it, with one worker
  process of 4 threads (DEBUG=false, token auth, Redis as the cache), database `side_ours`;
* the predecessor (the FastAPI backend of github.com/m-cahill/tunix-rt, a prepared
  checkout with its own `.venv`, see docs/benchmarks.md): `uvicorn
  tunix_rt_backend.app:app --workers 1` (access log off, as granian's is here), database
  `side_pred`; without `--predecessor` its columns read "not installed";
* the floor (bench/floor): the same granian, one worker of 4 threads, serving a Django app with no
  middleware and no auth whose views run one SQL query each (PostgreSQL builds the
  JSON) against ours' database: what the framework, auth and serializers cost.

Loading (skipped with --reuse): the same bench.gen_traces files (numbers from
1,000,000,000, files of up to 250,000) go into ours through `manage.py
import_traces` + `index_traces` (bench_list's set-up), and into the predecessor's
`traces` table (id uuid, created_at, trace_version, payload json: the trace as its
API stores it, `ReasoningTrace.model_dump()`, keys in that order, serialized as
SQLAlchemy's JSON type does) by one COPY: a bulk load, not its API. Then VACUUM
ANALYZE on both. Traces the timed steps add are deleted again afterwards (and
at the start of a run), so every step sees the stored size.

Measured (interleaved A, B, A, B... wherever two systems are compared):

* reads: `--requests` GETs of one trace each (the same random trace numbers on
  every side; ours and the floor by integer id, the predecessor by its uuid) and of
  the first list page of 50 (`/api/traces?limit=50`; the floor's `/traces`), after
  5 warm-ups; p50/p95 ms and response bytes. One http.client connection per
  system, kept alive between requests (granian and uvicorn both keep it).
* ingest: 100 batches of 1,000 new traces (the same traces on both sides) through
  `POST /api/traces/batch` (ours `{"traces": [...]}`, the predecessor a bare JSON
  array), batches alternating between the systems; the rate is traces / the sum of
  that system's request times (bodies are built before timing).
* searchable: ours only, with a real Celery worker (`celery -A tunixrt worker -Q
  default`, concurrency 2 as deployed, Redis db 11) on the same cores: from the
  first byte of 100 batches of 1,000 traces, each carrying a marker word unique to
  the run in its prompt, until `/api/traces/summary?q=<marker>` counts all of them.
  Compared with the predecessor's plain ingest rate of the same run.
* disk: after VACUUM (not FULL) of both tables, pg_total_relation_size per stored
  trace: ours traces_trace (heap, TOAST, every index; search documents included)
  plus the per-trace tables that hold rows, the predecessor's `traces`; and ours
  per column (sum(pg_column_size)) and per index (pg_relation_size).
* memory: peak RSS (VmHWM in /proc/<pid>/status) of ours' one granian worker and
  of the predecessor's uvicorn process, each started fresh, after 10 batches of
  1,000 traces.
* import: `manage.py import_traces` of a 100,000-trace file (wall time of the
  command, Python start-up included) vs a bare COPY of the same file into a table
  of one jsonb column, in ours' database (the ceiling; neither builds search
  documents).
* mlflow (optional peer, `--mlflow-python PY` with mlflow installed): 10,000
  metric values through `mlflow.log_metric` and `log_batch` (1,000 a call) into a
  file store; skipped with a printed line otherwise. Never a dependency here.

Results: bench/out/side_by_side.json and a printed table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import socket
import string
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from bench import common
from bench.gen_traces import Generator, generate

OURS_DB = "side_ours"
PRED_DB = "side_pred"
REDIS_DB = 11
FIRST_NUMBER = 1_000_000_000
FILE_MAX = 250_000
BATCH = 1000
INGEST_BATCHES = 100
MEMORY_BATCHES = 10
IMPORT_COUNT = 100_000
RUN_KEYS = ("steps", "predecessor", "loadavg_before", "loadavg_after", "finished")
STEPS = ("reads", "ingest", "searchable", "disk", "memory", "import", "mlflow")
TARGET_SEARCHABLE_RATIO = 2.0
TARGET_DISK_RATIO = 1.5
TARGET_RSS_MB = 130.0
# Trace numbers of what the timed steps add (disjoint from the stored ones and from each other).
INGEST_START = 3_000_000_000
SEARCHABLE_START = 3_200_000_000
MEMORY_START = 3_400_000_000
IMPORT_START = 3_600_000_000


# --- set-up -------------------------------------------------------------------------------------


def configure(pg: str) -> None:
    """Point bench.common at the `--pg` server and at side_ours."""
    url = urllib.parse.urlsplit(pg)
    if url.scheme not in ("postgres", "postgresql"):
        raise SystemExit(f"--pg must be a postgres:// URL, got {pg!r}")
    common.PG_HOST = url.hostname or "127.0.0.1"
    common.PG_PORT = url.port or 5432
    common.PG_USER = url.username or "postgres"
    if url.password:
        os.environ["PGPASSWORD"] = url.password
    common.BENCH_DB = OURS_DB


def pg_url(db: str, scheme: str = "postgres") -> str:
    password = os.environ.get("PGPASSWORD")
    auth = common.PG_USER + (f":{urllib.parse.quote(password)}" if password else "")
    return f"{scheme}://{auth}@{common.PG_HOST}:{common.PG_PORT}/{db}"


def db_exists(db: str) -> bool:
    return common.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") == "1"  # noqa: S608


def base_files(total: int) -> list[Path]:
    """bench.gen_traces files of the stored traces (cached in bench/out)."""
    paths = []
    start = FIRST_NUMBER
    remaining = total
    seed = 0
    while remaining:
        count = min(FILE_MAX, remaining)
        path = common.OUT / f"traces-{count}-{start}.jsonl"
        if not path.exists():
            common.log(f"generating {path.name}")
            generate(path, count, start=start, seed=seed)
        paths.append(path)
        start += count
        remaining -= count
        seed += 1
    return paths


def pred_id(number: int) -> uuid.UUID:
    """The predecessor's id of trace `number` in the base load (a uuid4-shaped hash: no order)."""
    return uuid.UUID(bytes=hashlib.md5(str(number).encode()).digest(), version=4)  # noqa: S324


def pred_payload(trace: dict[str, Any]) -> dict[str, Any]:
    """The trace as the predecessor stores it: ReasoningTrace.model_dump() (its field order)."""
    return {
        "trace_version": trace["trace_version"],
        "prompt": trace["prompt"],
        "final_answer": trace["final_answer"],
        "steps": [{"i": s["i"], "type": s["type"], "content": s["content"]} for s in trace["steps"]],
        "meta": trace.get("meta"),
    }


def copy_text(value: str) -> str:
    """A value in COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def psql_copy(db: str, sql: str, source: Path | Callable[[IO[str]], None]) -> float:
    """Run a COPY ... FROM STDIN fed from a file or a writer; returns seconds."""
    cmd = ["psql", "-h", common.PG_HOST, "-p", str(common.PG_PORT), "-U", common.PG_USER, "-d", db,
           "-v", "ON_ERROR_STOP=1", "-qc", sql]
    started = time.perf_counter()
    if isinstance(source, Path):
        with open(source, "rb") as f:
            subprocess.run(cmd, stdin=f, check=True, capture_output=True)
    else:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        source(proc.stdin)
        proc.stdin.close()
        if proc.wait():
            raise RuntimeError(f"COPY into {db} failed")
    return time.perf_counter() - started


def load_ours(paths: list[Path]) -> None:
    common.psql(f"DROP DATABASE IF EXISTS {OURS_DB} WITH (FORCE)")
    common.psql(f"CREATE DATABASE {OURS_DB}")
    common.manage("migrate", "--noinput", "-v0")
    started = time.perf_counter()
    for path in paths:
        common.log(f"ours: import_traces {path.name}")
        common.manage("import_traces", str(path), "--quiet-progress")
    common.log(f"ours: imported in {time.perf_counter() - started:.0f} s; index_traces")
    started = time.perf_counter()
    common.manage("index_traces")
    common.log(f"ours: indexed in {time.perf_counter() - started:.0f} s; VACUUM ANALYZE")
    common.psql("CREATE TABLE side_base AS SELECT max(id) AS max_id FROM traces_trace", db=OURS_DB)
    common.psql("VACUUM ANALYZE traces_trace", db=OURS_DB)


def pred_env(pred_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VIRTUAL_ENV"))}
    env.update({
        "DATABASE_URL": pg_url(PRED_DB, "postgresql+asyncpg"),
        "PATH": f"{pred_dir / '.venv' / 'bin'}:{env.get('PATH', '')}",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def load_pred(pred_dir: Path, paths: list[Path]) -> None:
    common.psql(f"DROP DATABASE IF EXISTS {PRED_DB} WITH (FORCE)")
    common.psql(f"CREATE DATABASE {PRED_DB}")
    subprocess.run([str(pred_dir / ".venv" / "bin" / "alembic"), "upgrade", "head"], cwd=pred_dir,
                   env=pred_env(pred_dir), check=True, capture_output=True)
    base = time.time() - 86_400

    def rows(out: IO[str]) -> None:
        number = FIRST_NUMBER
        for path in paths:
            with open(path, "rb") as f:
                for line in f:
                    trace = orjson.loads(line)
                    # SQLAlchemy's JSON type writes json.dumps() text; a json column keeps it as sent.
                    payload = json.dumps(pred_payload(trace))
                    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + (number - FIRST_NUMBER) // 1000))
                    micro = (number - FIRST_NUMBER) % 1000 * 1000
                    out.write(f"{pred_id(number)}\t{created}.{micro:06d}+00\t{trace['trace_version']}\t"
                              f"{copy_text(payload)}\n")
                    number += 1

    common.log("predecessor: COPY into traces")
    seconds = psql_copy(PRED_DB, "COPY traces (id, created_at, trace_version, payload) FROM STDIN", rows)
    common.log(f"predecessor: copied in {seconds:.0f} s; VACUUM ANALYZE")
    common.psql("VACUUM ANALYZE traces", db=PRED_DB)


def trim(stored: int, pred: bool) -> None:
    """Delete what earlier timed steps added, so that each side holds exactly the stored traces.

    Ours: every id above the stored load's highest (kept in side_base at load time).
    The predecessor: every row newer than the load's timestamps (a day in the past).
    """
    ours = common.psql("WITH d AS (DELETE FROM traces_trace WHERE id > (SELECT max_id FROM side_base) "
                       "RETURNING 1) SELECT count(*) FROM d", db=OURS_DB)
    gone = f"ours {ours}"
    theirs = "0"
    if pred:
        theirs = common.psql("WITH d AS (DELETE FROM traces WHERE created_at > now() - interval '12 hours' "
                             "RETURNING 1) SELECT count(*) FROM d", db=PRED_DB)
        gone += f", predecessor {theirs}"
    common.log(f"trimmed the traces earlier steps added ({gone})")
    # Autovacuum is off on this server: without a VACUUM the deleted rows stay in the indexes, at
    # the newest end, where every first page would read past them.
    if ours != "0":
        common.psql("VACUUM (ANALYZE) traces_trace", db=OURS_DB)
    if pred and theirs != "0":
        common.psql("VACUUM (ANALYZE) traces", db=PRED_DB)
    common.psql("DROP TABLE IF EXISTS side_copy_ceiling", db=OURS_DB)
    count = common.trace_count()
    if count != stored:
        raise SystemExit(f"side_ours holds {count:,} traces, not {stored:,}: reload without --reuse")


# --- servers and clients --------------------------------------------------------------------------


def port_free(port: int) -> None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return
    raise RuntimeError(f"something already listens on 127.0.0.1:{port} (a leftover bench server?)")


@contextlib.contextmanager
def uvicorn(pred_dir: Path, port: int) -> Iterator[int]:
    """The predecessor: uvicorn, one worker (no supervisor: the pid serves), access log off."""
    port_free(port)
    logf = open(common.OUT / "uvicorn.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(pred_dir / ".venv" / "bin" / "uvicorn"), "tunix_rt_backend.app:app", "--workers", "1",
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=pred_dir, env=pred_env(pred_dir), stdout=logf, stderr=logf,
    )
    try:
        common.wait_serving(proc, port, "/api/health", "uvicorn", 60)
        yield proc.pid
    finally:
        common.stop(proc, 15)
        logf.close()


# Ours as deployed (bin/serve, the Dockerfile, docker-compose): granian workers of 4 blocking
# threads, which keep connections alive, and Redis as the cache (the API's rate-limit counters
# live there).
OURS_THREADS = 4


def ours_env(**extra: str) -> dict[str, str]:
    return common.app_env(CACHE_URL=f"redis://127.0.0.1:6379/{REDIS_DB}", **extra)


def floor_env() -> dict[str, str]:
    env = common.app_env()
    env["DJANGO_SETTINGS_MODULE"] = "bench.floor.settings"
    env["FLOOR_DATABASE_URL"] = pg_url(OURS_DB)
    return env


def worker_pid(main: int) -> int:
    """The one worker process of a granian main process (its child)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if children := common.worker_pids(main):
            return children[0]
        time.sleep(0.1)
    raise RuntimeError(f"granian {main} has no worker")


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


class Client:
    def __init__(self, port: int, token: str = "") -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.used = time.monotonic()
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        if time.monotonic() - self.used > 2:  # uvicorn drops a keep-alive connection idle for 5 s
            self.conn.close()
        started = time.perf_counter()
        self.conn.request(method, path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        seconds = time.perf_counter() - started
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        self.used = time.monotonic()
        return resp.status, data, seconds


class System:
    """One side of a comparison: a client and how it spells the trace URLs."""

    def __init__(self, name: str, client: Client, detail: Callable[[int], str], page: str,
                 batch: Callable[[list[dict[str, Any]]], bytes]) -> None:
        self.name = name
        self.client = client
        self.detail = detail
        self.page = page
        self.batch = batch


# --- the steps ------------------------------------------------------------------------------------


def ours_ids(numbers: list[int]) -> dict[int, int]:
    """Ours' ids of the given trace numbers (one scan)."""
    wanted = ",".join(str(n) for n in numbers)
    out = common.psql(
        "SELECT split_part(split_part(prompt, ':', 1), ' ', 2), id FROM traces_trace "  # noqa: S608
        f"WHERE split_part(split_part(prompt, ':', 1), ' ', 2) = ANY(string_to_array('{wanted}', ','))",
        db=OURS_DB,
    )
    found: dict[int, int] = {}
    for line in out.splitlines():
        number, pk = line.split("|")
        found[int(number)] = int(pk)
    missing = set(numbers) - set(found)
    if missing:
        raise SystemExit(f"{len(missing)} sampled traces are not in side_ours (e.g. {min(missing)})")
    return found


def reads(systems: list[System], stored: int, requests: int) -> dict[str, Any]:
    rng = random.Random(7)
    numbers = rng.sample(range(FIRST_NUMBER, FIRST_NUMBER + stored), requests + 5)
    ids = ours_ids(numbers)
    result: dict[str, Any] = {"requests": requests}
    for case in ("detail", "list"):
        latencies: dict[str, list[float]] = {s.name: [] for s in systems}
        sizes: dict[str, list[int]] = {s.name: [] for s in systems}
        for i, number in enumerate(numbers):
            order = systems if i % 2 == 0 else systems[::-1]
            for system in order:
                key = ids[number] if system.name != "predecessor" else number
                path = system.detail(key) if case == "detail" else system.page
                status, data, seconds = system.client.request("GET", path)
                assert status == 200, (system.name, path, status, data[:300])
                if i >= 5:  # the first five are warm-ups
                    latencies[system.name].append(seconds)
                    sizes[system.name].append(len(data))
        result[case] = {
            name: {**common.summary_ms(lat), "bytes_p50": sorted(sizes[name])[len(sizes[name]) // 2]}
            for name, lat in latencies.items()
        }
        common.log(f"reads {case}: {json.dumps(result[case])}")
    return result


def batches(start: int, count: int, marker: str = "") -> list[list[dict[str, Any]]]:
    gen = Generator(seed=start)
    out = []
    for b in range(count):
        traces = [gen.trace(start + b * BATCH + i) for i in range(BATCH)]
        if marker:
            for t in traces:
                t["prompt"] = f"{t['prompt']} {marker}"
        out.append(traces)
    return out


def ours_body(traces: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"traces": traces})


def pred_body(traces: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(traces)


def check_created(system: str, status: int, data: bytes) -> None:
    body = orjson.loads(data) if data.startswith(b"{") else {}
    created = body.get("created", body.get("created_count"))
    assert status == 201 and created == BATCH, (system, status, data[:300])


def ingest(systems: list[System], count: int) -> dict[str, Any]:
    traces = batches(INGEST_START, count + 2)
    bodies = {s.name: [s.batch(t) for t in traces] for s in systems}
    del traces
    spent: dict[str, list[float]] = {s.name: [] for s in systems}
    for i in range(count + 2):
        order = systems if i % 2 == 0 else systems[::-1]
        for system in order:
            status, data, seconds = system.client.request("POST", "/api/traces/batch", bodies[system.name][i])
            check_created(system.name, status, data)
            if i >= 2:  # two warm-up batches each
                spent[system.name].append(seconds)
    result = {
        name: {
            "traces": len(lat) * BATCH,
            "seconds": round(sum(lat), 2),
            "traces_per_s": round(len(lat) * BATCH / sum(lat)),
            "request": common.summary_ms(lat),
            "body_mb": round(len(bodies[name][0]) / 1e6, 2),
        }
        for name, lat in spent.items()
    }
    common.log(f"ingest: {json.dumps(result)}")
    return result


@contextlib.contextmanager
def celery_worker() -> Iterator[int]:
    subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], check=True, capture_output=True)
    logf = open(common.OUT / "celery.log", "ab")  # noqa: SIM115 - closed below
    env = ours_env(CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}", CELERY_WORKER_CONCURRENCY="2")
    proc = subprocess.Popen(
        [str(common.ROOT / ".venv" / "bin" / "celery"), "-A", "tunixrt", "worker", "-Q", "default",
         "--concurrency", "2", "--loglevel", "WARNING", "--hostname", f"side-{os.getpid()}@%h"],
        cwd=common.ROOT, env=env, stdout=logf, stderr=logf,
    )
    try:
        time.sleep(8)  # connected and consuming before the clock starts
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited ({proc.returncode}); see {common.OUT / 'celery.log'}")
        yield proc.pid
    finally:
        common.stop(proc, 30)
        logf.close()


def searchable(port: int, token: str, count: int) -> dict[str, Any]:
    marker = "sbs" + "".join(random.choices(string.ascii_lowercase, k=8))
    bodies = [ours_body(t) for t in batches(SEARCHABLE_START, count, marker)]
    total = count * BATCH
    env = ours_env(CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}")
    with celery_worker(), common.web_server(workers=1, port=port, threads=OURS_THREADS, env=env):
        client = Client(port, token)
        started = time.perf_counter()
        for body in bodies:
            status, data, _ = client.request("POST", "/api/traces/batch", body)
            check_created("ours", status, data)
        stored = time.perf_counter() - started
        polls = 0
        while True:
            status, data, _ = client.request("GET", f"/api/traces/summary?q={marker}")
            assert status == 200, (status, data[:300])
            summary = orjson.loads(data)
            polls += 1
            if summary["count"] >= total:
                break
            if time.perf_counter() - started > 1800:
                raise RuntimeError(f"only {summary['count']:,} of {total:,} searchable after 30 min")
            time.sleep(0.25)
        found = time.perf_counter() - started
    # The API's count is exact up to 100,000; check it against the index itself.
    exact = int(common.psql(
        f"SELECT count(*) FROM traces_trace WHERE search_document @@ to_tsquery('english', '{marker}')",  # noqa: S608
        db=OURS_DB,
    ))
    result = {
        "marker": marker, "traces": total, "stored_s": round(stored, 2), "searchable_s": round(found, 2),
        "traces_per_s": round(total / found), "api_count": summary["count"], "index_count": exact,
        "polls": polls,
    }
    common.log(f"searchable: {json.dumps(result)}")
    return result


def index_sizes(table: str, db: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for line in common.psql(
        "SELECT indexrelid::regclass, pg_relation_size(indexrelid) FROM pg_index "  # noqa: S608
        f"WHERE indrelid = '{table}'::regclass ORDER BY 2 DESC", db=db,
    ).splitlines():
        name, size = line.split("|")
        sizes[name] = int(size)
    return sizes


def disk(pred: bool) -> dict[str, Any]:
    common.log("VACUUM (not FULL) both tables before measuring")
    common.psql("VACUUM ANALYZE traces_trace", db=OURS_DB)
    tables = common.psql(
        "SELECT c.relname FROM pg_class c JOIN pg_constraint k ON k.conrelid = c.oid "
        "WHERE k.contype = 'f' AND k.confrelid = 'traces_trace'::regclass", db=OURS_DB,
    ).split()
    count = common.trace_count()
    per_table = {"traces_trace": int(common.psql("SELECT pg_total_relation_size('traces_trace')", db=OURS_DB))}
    for table in sorted(set(tables)):
        rows = int(common.psql(f"SELECT count(*) FROM {table}", db=OURS_DB))  # noqa: S608
        if rows:
            common.psql(f"VACUUM {table}", db=OURS_DB)
            per_table[table] = int(common.psql(f"SELECT pg_total_relation_size('{table}')", db=OURS_DB))
    columns = common.psql(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'traces_trace'::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", db=OURS_DB,
    ).split()
    sums = common.psql(
        "SELECT " + ", ".join(f"coalesce(sum(pg_column_size({c})), 0)" for c in columns)  # noqa: S608
        + " FROM traces_trace", db=OURS_DB,
    ).split("|")
    indexes = index_sizes("traces_trace", OURS_DB)
    heap = common.psql(
        "SELECT pg_relation_size('traces_trace'), coalesce(pg_total_relation_size(reltoastrelid), 0) "
        "FROM pg_class WHERE oid = 'traces_trace'::regclass", db=OURS_DB,
    ).split("|")
    ours_total = sum(per_table.values())
    result: dict[str, Any] = {
        "vacuum": "VACUUM ANALYZE (not FULL) of every measured table, both sides, just before",
        "ours": {
            "traces": count,
            "bytes_per_trace": round(ours_total / count),
            "tables": per_table,
            "heap_bytes_per_trace": round(int(heap[0]) / count),
            "toast_bytes_per_trace": round(int(heap[1]) / count),
            "columns_bytes_per_trace": {c: round(int(s) / count, 1) for c, s in zip(columns, sums, strict=True)},
            "indexes_bytes_per_trace": {name: round(int(size) / count, 1) for name, size in indexes.items()},
        },
    }
    if pred:
        common.psql("VACUUM ANALYZE traces", db=PRED_DB)
        theirs = int(common.psql("SELECT count(*) FROM traces", db=PRED_DB))
        total = int(common.psql("SELECT pg_total_relation_size('traces')", db=PRED_DB))
        pcols = common.psql(
            "SELECT sum(pg_column_size(id)), sum(pg_column_size(created_at)), sum(pg_column_size(trace_version)),"
            " sum(pg_column_size(payload)) FROM traces", db=PRED_DB,
        ).split("|")
        pidx = index_sizes("traces", PRED_DB)
        result["predecessor"] = {
            "traces": theirs,
            "bytes_per_trace": round(total / theirs),
            "columns_bytes_per_trace": {
                c: round(int(s) / theirs, 1)
                for c, s in zip(("id", "created_at", "trace_version", "payload"), pcols, strict=True)
            },
            "indexes_bytes_per_trace": {name: round(int(size) / theirs, 1) for name, size in pidx.items()},
        }
        result["ratio"] = round(result["ours"]["bytes_per_trace"] / result["predecessor"]["bytes_per_trace"], 2)
    common.log(f"disk: {json.dumps(result)}")
    return result


def memory(port: int, token: str, pred_dir: Path | None, pred_port: int) -> dict[str, Any]:
    bodies_traces = batches(MEMORY_START, MEMORY_BATCHES)
    result: dict[str, Any] = {"batches": MEMORY_BATCHES, "batch": BATCH}
    with common.web_server(workers=1, port=port, threads=OURS_THREADS, env=ours_env()) as main:
        pid = worker_pid(main)
        client = Client(port, token)
        client.request("GET", "/api/traces?limit=50")
        before = vm_hwm_mb(pid)
        for traces in bodies_traces:
            status, data, _ = client.request("POST", "/api/traces/batch", ours_body(traces))
            check_created("ours", status, data)
        result["ours"] = {"vm_hwm_mb_before": round(before, 1), "vm_hwm_mb": round(vm_hwm_mb(pid), 1)}
    if pred_dir is not None:
        with uvicorn(pred_dir, pred_port) as pid:
            client = Client(pred_port)
            client.request("GET", "/api/traces?limit=50")
            before = vm_hwm_mb(pid)
            for traces in bodies_traces:
                status, data, _ = client.request("POST", "/api/traces/batch", pred_body(traces))
                check_created("predecessor", status, data)
            result["predecessor"] = {"vm_hwm_mb_before": round(before, 1), "vm_hwm_mb": round(vm_hwm_mb(pid), 1)}
    common.log(f"memory: {json.dumps(result)}")
    return result


def import_rate() -> dict[str, Any]:
    path = common.OUT / f"traces-{IMPORT_COUNT}-{IMPORT_START}.jsonl"
    if not path.exists():
        generate(path, IMPORT_COUNT, start=IMPORT_START, seed=99)
    started = time.perf_counter()
    out = common.manage("import_traces", str(path), "--quiet-progress", capture=True)
    wall = time.perf_counter() - started
    reported = re.search(r"([\d,]+) traces/s", out)
    common.psql("DROP TABLE IF EXISTS side_copy_ceiling; CREATE TABLE side_copy_ceiling (doc jsonb)", db=OURS_DB)
    # CSV with quote and delimiter bytes that never occur in JSON Lines: each line is one value as is.
    copy_s = psql_copy(
        OURS_DB,
        "COPY side_copy_ceiling (doc) FROM STDIN WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')",
        path,
    )
    copied = int(common.psql("SELECT count(*) FROM side_copy_ceiling", db=OURS_DB))
    assert copied == IMPORT_COUNT, copied
    common.psql("DROP TABLE side_copy_ceiling", db=OURS_DB)
    result: dict[str, Any] = {
        "traces": IMPORT_COUNT,
        "import_traces_wall_s": round(wall, 2),
        "import_traces_per_s": round(IMPORT_COUNT / wall),
        "import_traces_reported": reported.group(0) if reported else None,
        "copy_jsonb_s": round(copy_s, 2),
        "copy_jsonb_per_s": round(IMPORT_COUNT / copy_s),
    }
    result["ratio_to_copy"] = round(copy_s / wall, 2)
    common.log(f"import: {json.dumps(result)}")
    return result


MLFLOW_SCRIPT = """
import json, os, tempfile, time
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps its file store in maintenance mode
import mlflow
from mlflow.entities import Metric
n = 10_000
mlflow.set_tracking_uri("file:" + tempfile.mkdtemp())
mlflow.set_experiment("side-by-side")
with mlflow.start_run():
    t0 = time.perf_counter()
    for step in range(n):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    single = time.perf_counter() - t0
    client = mlflow.tracking.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        ms = [Metric("loss2", 1.0 / (s + 1), int(time.time() * 1000), s) for s in range(start, start + 1000)]
        client.log_batch(run_id, metrics=ms)
    batch = time.perf_counter() - t0
print(json.dumps({"mlflow": mlflow.__version__, "values": n, "log_metric_per_s": round(n / single),
                  "log_batch_per_s": round(n / batch)}))
"""


def mlflow_peer(python: str | None) -> dict[str, Any]:
    if not python:
        print("mlflow: skipped (no --mlflow-python given; MLflow is an optional peer, never a dependency)")
        return {"skipped": "no --mlflow-python"}
    probe = subprocess.run([python, "-c", "import mlflow"], capture_output=True, text=True)
    if probe.returncode:
        print(f"mlflow: skipped (mlflow is not installed for {python})")
        return {"skipped": f"mlflow not installed for {python}"}
    out = subprocess.run([python, "-c", MLFLOW_SCRIPT], capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    if out.returncode:
        error = (out.stderr.strip().splitlines() or ["?"])[-1]
        print(f"mlflow: failed ({error})")
        return {"failed": error}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    common.log(f"mlflow: {json.dumps(result)}")
    return result


# --- the run --------------------------------------------------------------------------------------


def fmt(value: Any, unit: str = "") -> str:
    return "not installed" if value is None else f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def table(results: dict[str, Any]) -> None:
    print(f"\nside by side: {results['stored']:,} stored traces; load average {results['loadavg_before']} "
          f"before, {results['loadavg_after']} after")
    if "reads" in results:
        for case in ("detail", "list"):
            r = results["reads"][case]
            pred = r.get("predecessor", {})
            print(f"{case:7s} p50/p95 ms, bytes: ours {r['ours']['p50_ms']}/{r['ours']['p95_ms']} "
                  f"{r['ours']['bytes_p50']:,} B | predecessor "
                  f"{fmt(pred.get('p50_ms'))}/{fmt(pred.get('p95_ms'))} {fmt(pred.get('bytes_p50'), ' B')} | "
                  f"floor {r['floor']['p50_ms']}/{r['floor']['p95_ms']} {r['floor']['bytes_p50']:,} B | "
                  f"ours/pred p50 {ratio(r['ours']['p50_ms'], pred.get('p50_ms'))}, "
                  f"ours/floor p50 {ratio(r['ours']['p50_ms'], r['floor']['p50_ms'])}")
    if "ingest" in results:
        r = results["ingest"]
        pred = r.get("predecessor", {}).get("traces_per_s")
        print(f"ingest  traces/s (1,000 a request): ours {r['ours']['traces_per_s']:,} | predecessor {fmt(pred)} "
              f"| ours/pred {ratio(r['ours']['traces_per_s'], pred)}")
    if "searchable" in results:
        r = results["searchable"]
        pred = results.get("ingest", {}).get("predecessor", {}).get("traces_per_s")
        print(f"searchable traces/s (stored -> found by q, worker on): ours {r['traces_per_s']:,} "
              f"({r['searchable_s']} s for {r['traces']:,}) | vs predecessor's plain ingest "
              f"{ratio(r['traces_per_s'], pred)} (target >= {TARGET_SEARCHABLE_RATIO}x)")
    if "disk" in results:
        r = results["disk"]
        pred = r.get("predecessor", {}).get("bytes_per_trace")
        print(f"disk    bytes/trace (tables + indexes, after VACUUM): ours {r['ours']['bytes_per_trace']:,} | "
              f"predecessor {fmt(pred)} | ours/pred {ratio(r['ours']['bytes_per_trace'], pred)} "
              f"(target <= {TARGET_DISK_RATIO}x)")
        print("        ours per column: " + ", ".join(
            f"{c} {v}" for c, v in r["ours"]["columns_bytes_per_trace"].items()))
        print("        ours per index:  " + ", ".join(
            f"{c} {v}" for c, v in r["ours"]["indexes_bytes_per_trace"].items()))
    if "memory" in results:
        r = results["memory"]
        pred = r.get("predecessor", {}).get("vm_hwm_mb")
        print(f"memory  peak RSS MB over {r['batches']} batches of 1,000: ours worker {r['ours']['vm_hwm_mb']} "
              f"(target < {TARGET_RSS_MB:.0f}) | predecessor {fmt(pred)}")
    if "import" in results:
        r = results["import"]
        print(f"import  {r['traces']:,} traces: import_traces {r['import_traces_per_s']:,}/s | COPY jsonb "
              f"{r['copy_jsonb_per_s']:,}/s | {r['ratio_to_copy']:.2f} of the ceiling")
    if "mlflow" in results and "log_metric_per_s" in results["mlflow"]:
        r = results["mlflow"]
        print(f"mlflow  {r['mlflow']}: log_metric {r['log_metric_per_s']:,}/s, log_batch {r['log_batch_per_s']:,}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--traces", type=int, default=1_000_000, help="stored traces on each side")
    parser.add_argument("--predecessor", type=Path, help="a prepared checkout of the predecessor's backend/")
    parser.add_argument("--reuse", action="store_true", help="keep what side_ours / side_pred hold")
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {','.join(STEPS)}")
    parser.add_argument("--requests", type=int, default=500, help="timed GETs per read case and system")
    parser.add_argument("--batches", type=int, default=INGEST_BATCHES,
                        help="batches of 1,000 for ingest and searchable (100: 100,000 traces)")
    parser.add_argument("--port", type=int, default=8770, help="ours; the predecessor +1, the floor +2")
    parser.add_argument("--mlflow-python", help="a Python interpreter with mlflow installed (optional peer)")
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for a quiet machine")
    args = parser.parse_args()
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(steps) - set(STEPS):
        parser.error(f"unknown steps {sorted(unknown)}; choose from {','.join(STEPS)}")
    if not 1_000 <= args.traces <= 10_000_000 or not 10 <= args.requests <= 100_000 or not 1 <= args.batches <= 1000:
        parser.error("--traces must be 1,000..10,000,000, --requests 10..100,000 and --batches 1..1,000")
    configure(args.pg)
    pred_dir: Path | None = args.predecessor.resolve() if args.predecessor else None
    if pred_dir is not None and not (pred_dir / ".venv" / "bin" / "uvicorn").exists():
        print(f"predecessor: {pred_dir} has no .venv/bin/uvicorn; its columns read 'not installed'")
        pred_dir = None
    if pred_dir is None:
        print("predecessor: not installed (see docs/benchmarks.md, 'Side by side')")
    common.OUT.mkdir(parents=True, exist_ok=True)

    if not args.reuse or not db_exists(OURS_DB):
        paths = base_files(args.traces)
        load_ours(paths)
        if pred_dir is not None:
            load_pred(pred_dir, paths)
    elif pred_dir is not None and not db_exists(PRED_DB):
        load_pred(pred_dir, base_files(args.traces))
    trim(args.traces, pred_dir is not None)
    if pred_dir is not None:
        theirs = int(common.psql("SELECT count(*) FROM traces", db=PRED_DB))
        if theirs != args.traces:
            raise SystemExit(f"side_pred holds {theirs:,} traces, not {args.traces:,}: reload without --reuse")

    token = common.bench_token()
    results: dict[str, Any] = {
        "stored": args.traces, "steps": steps, "predecessor": str(pred_dir) if pred_dir else None,
        "loadavg_before": round(common.wait_quiet(args.wait_quiet), 2),
    }
    port, pred_port, floor_port = args.port, args.port + 1, args.port + 2
    if "disk" in steps:
        results["disk"] = disk(pred_dir is not None)
        if args.reuse:
            # Rows earlier runs' steps added and deleted leave free space a plain VACUUM keeps.
            results["disk"]["note"] = "--reuse: the tables may hold free space from earlier runs' steps"
            common.log("disk: measured on a reused load; a fresh load gives the figure to quote")
    if "reads" in steps or "ingest" in steps:
        with contextlib.ExitStack() as stack:
            stack.enter_context(common.web_server(workers=1, port=port, threads=OURS_THREADS, env=ours_env()))
            systems = [System("ours", Client(port, token), lambda k: f"/api/traces/{k}", "/api/traces?limit=50",
                              ours_body)]
            if pred_dir is not None:
                stack.enter_context(uvicorn(pred_dir, pred_port))
                systems.append(System("predecessor", Client(pred_port), lambda n: f"/api/traces/{pred_id(n)}",
                                      "/api/traces?limit=50", pred_body))
            if "reads" in steps:
                stack.enter_context(common.web_server(workers=1, port=floor_port, threads=OURS_THREADS,
                                                      app="bench.floor.wsgi", env=floor_env()))
                floor = System("floor", Client(floor_port), lambda k: f"/trace/{k}", "/traces", ours_body)
                results["reads"] = reads([*systems, floor], args.traces, args.requests)
            if "ingest" in steps:
                results["ingest"] = ingest(systems, args.batches)
        trim(args.traces, pred_dir is not None)
    if "searchable" in steps:
        results["searchable"] = searchable(port, token, args.batches)
        trim(args.traces, pred_dir is not None)
    if "memory" in steps:
        results["memory"] = memory(port, token, pred_dir, pred_port)
        trim(args.traces, pred_dir is not None)
    if "import" in steps:
        results["import"] = import_rate()
        trim(args.traces, pred_dir is not None)
    if "mlflow" in steps:
        results["mlflow"] = mlflow_peer(args.mlflow_python)
    results["loadavg_after"] = round(os.getloadavg()[0], 2)
    name = "side_by_side.json" if args.traces == 1_000_000 else f"side_by_side-{args.traces}.json"
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.reuse and (common.OUT / name).exists():
        # A run of some steps on the same load replaces those steps of the earlier results;
        # each run's conditions are kept under "runs".
        earlier = json.loads((common.OUT / name).read_text())
        runs = earlier.pop("runs", [{k: earlier.get(k) for k in RUN_KEYS}])
        earlier.update({step: results[step] for step in steps if step in results})
        earlier["runs"] = [*runs, {k: results.get(k) for k in RUN_KEYS}]
        # The printed load averages are this run's (each run's stay under "runs").
        earlier.update({k: results[k] for k in ("loadavg_before", "loadavg_after", "finished")})
        results = earlier
    (common.OUT / name).write_text(json.dumps(results, indent=2))
    table(results)
    print(f"\nresults: {common.OUT / name}")


if __name__ == "__main__":
    main()
