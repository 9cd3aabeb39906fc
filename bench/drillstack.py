"""The production-like stack the fault drill (bench/drill.py) runs against, and the tools it needs.

A dedicated database (`tunixrt_bench_drill`) on the PostgreSQL server of
`--pg-url`, the Redis of `--redis-url`, the granian web server (2 workers × 4
threads, with bin/serve's flags) on 127.0.0.1, a Celery worker and beat (embedded with `--beat`, as
bin/serve does, or a separate process), all with DEBUG=false. Every process
started here is tracked by pid and stopped by pid; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.common import OUT, PY, ROOT, app_env, log, web_command

DB_NAME = "tunixrt_bench_drill"
CELERY = str(ROOT / ".venv" / "bin" / "celery")
VAR = Path(tempfile.gettempdir()) / "tunixrt-drill-var"
# Kept between drills: a warm XLA compile cache takes ~10 s off every training child's start.
JAX_CACHE = Path(tempfile.gettempdir()) / "tunixrt-drill-jax-cache"
LOGS = OUT / "drill-logs"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The shared data sets sit beside the checkout (/work/shared), whether it is /work/main or a worktree below /work/wt.
DATA = next(
    (p / "shared" / "data" / "tunix-rt" for p in ROOT.parents if (p / "shared" / "data" / "tunix-rt").is_dir()),
    ROOT.parent / "shared" / "data" / "tunix-rt",
)


def local_url(url: str, what: str) -> str:
    """The URL itself, if it points at this machine (the drill only ever talks to 127.0.0.1)."""
    host = urlsplit(url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"{what} must point at 127.0.0.1, got {url!r}.")
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def sh(command: str, timeout: float = 60) -> tuple[int, str]:
    """Run a service command (restart PostgreSQL, stop Redis, …) in a shell; its exit code and output."""
    try:
        # The commands come from the drill's own options (defaults for this machine's services).
        proc = subprocess.run(  # noqa: S602
            command, shell=True, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()[-500:]


class Db:
    """Short-lived connections to the drill database (each survives a PostgreSQL restart on its own)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, connect_timeout=3, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None


def recreate_database(server_url: str) -> None:
    assert DB_NAME.startswith("tunixrt_bench")
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


# /proc helpers: the worker's process tree, found before it is killed (orphans lose their parent link).


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a live process, None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), fields[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    return _stat(pid) is not None


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def find_processes(pattern: str, under: int) -> list[int]:
    """Live descendants of `under` whose command line contains `pattern`."""
    return [pid for pid in descendants(under) if pattern in cmdline(pid)]


def sigkill(pids: list[int], wait_s: float = 10) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


@dataclass
class Proc:
    """One long-running process of the stack, started in its own session (Ctrl-C reaches only the drill)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    tree_seen: set[int] = field(default_factory=set)

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        with (LOGS / f"{self.name}.log").open("ab") as out:
            out.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def tree(self) -> list[int]:
        """The process and every descendant now (remembered, so orphans can be found and killed later)."""
        if not self.running():
            return []
        pids = [self.pid, *descendants(self.pid)]
        self.tree_seen.update(pids)
        return pids

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL to whatever of its tree is left."""
        pids = self.tree()
        if self.running():
            assert self.popen is not None
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
        self.reap_orphans(pids)

    def reap_orphans(self, extra: Iterable[int] = ()) -> list[str]:
        """SIGKILL every process of its tree still alive; their command lines."""
        left = [p for p in {*self.tree_seen, *extra} if alive(p) and cmdline(p)]
        names = [f"{p}: {cmdline(p)[:120]}" for p in left]
        sigkill(left)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        self.tree_seen.clear()
        return names


class Stack:
    """The web server (granian) + Celery worker (+ beat) on the drill database and Redis."""

    def __init__(self, pg_url: str, redis_url: str, port: int, beat: str, server_env: dict[str, str]) -> None:
        self.port = port
        self.db_url = with_database(pg_url, DB_NAME)
        self.db = Db(self.db_url)
        self.env = app_env(
            DATABASE_URL=self.db_url,
            CELERY_BROKER_URL=redis_url,
            TUNIXRT_VAR_DIR=str(VAR),
            RUNS_DIR=str(VAR / "runs"),
            JAX_CACHE_DIR=str(JAX_CACHE),
            LOG_LEVEL="info",
            LOG_FORMAT="text",
            # Short enough that a dead worker's jobs are reaped within the drill.
            RUN_HEARTBEAT_SECONDS="2",
            RUN_STALE_SECONDS="15",
            JOB_REQUEUE_SECONDS="30",
            # A build of more than 100 traces goes to the worker (the drill database is small).
            DATASET_INLINE_MAX="100",
            CELERY_WORKER_CONCURRENCY="3",
            # The drill's writers must never be throttled (names of the throttling settings; unknown ones are ignored).
            API_THROTTLE_USER="off",
            API_THROTTLE_ANON="off",
            **server_env,
        )
        schedule = str(VAR / "celerybeat-schedule")
        worker = [CELERY, "-A", "tunixrt", "worker", "--loglevel=INFO", "--hostname", "drill@%h"]
        self.beat: Proc | None = None
        if beat == "embedded":
            worker += ["--beat", "--schedule", schedule]
        else:
            self.beat = Proc("beat", [CELERY, "-A", "tunixrt", "beat", "--loglevel=INFO", "--schedule", schedule],
                             self.env)
        self.worker = Proc("worker", worker, self.env)
        self.web = Proc(
            "web",
            [*web_command(port, workers=2), "--access-log"],
            {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(VAR / "prometheus")},
        )
        self.token = ""

    def manage(self, *args: str, capture: bool = False) -> str:
        proc = subprocess.run(
            [PY, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.env, check=True,
            capture_output=True, text=True, timeout=300,
        )
        return proc.stdout if capture else ""

    def setup(self, server_url: str) -> None:
        """A fresh, migrated database with a superuser and its token, 550 traces, a dataset and an eval set."""
        recreate_database(server_url)
        for sub in ("runs", "prometheus"):
            path = VAR / sub
            if path.exists():
                subprocess.run(["rm", "-rf", str(path)], check=True)
        (VAR / "prometheus").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (VAR / "celerybeat-schedule").unlink()
        self.manage("migrate", "--noinput", "-v0")
        self.manage("shell", "-c", (
            "from django.contrib.auth import get_user_model\n"
            "u, _ = get_user_model().objects.get_or_create(username='drill')\n"
            "u.is_staff = u.is_superuser = True\n"
            "u.save()\n"
        ))
        # drf_create_token -r prints the key both with plain and with hashed tokens.
        out = self.manage("drf_create_token", "-r", "drill", capture=True)
        match = re.search(r"Generated token (\S+) for user", out)
        if not match:
            raise RuntimeError(f"no token in {out!r}")
        self.token = match.group(1)
        self.manage("import_traces", str(DATA / "dev-reasoning-v2.jsonl"), "--quiet-progress")
        self.manage("build_dataset", "drill", "--limit", "400", "--validation-fraction", "0.1")
        # An evaluation long enough (400 items) that the worker can be killed with part of it answered.
        items = [json.loads(line) for line in (DATA / "eval_v2.jsonl").read_text().splitlines() if line.strip()]
        long_set = VAR / "drill-eval.jsonl"
        long_set.write_text("".join(
            json.dumps({**item, "id": f"{item['id']}-{copy}"}) + "\n" for copy in range(4) for item in items
        ))
        self.manage("import_evalset", str(long_set), "--name", "drill-eval")

    def start(self) -> None:
        self.web.start()
        self.start_worker()
        deadline = time.monotonic() + 60
        while True:
            status, _ = self.api("GET", "/api/traces?limit=1")
            if status == 200:
                break
            if not self.web.running() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server (granian) did not come up; see {LOGS / 'web.log'}")
            time.sleep(0.3)

    def start_worker(self, wait_s: float = 90) -> float:
        """Start the worker (and a separate beat if configured and not running); seconds until it is ready."""
        t0 = time.monotonic()
        started = self.db.value("SELECT now()")
        self.worker.start()
        if self.beat is not None and not self.beat.running():
            self.beat.start()
        # Ready when its heartbeat row is written after this start (the worker_ready signal).
        while time.monotonic() - t0 < wait_s:
            if not self.worker.running():
                raise RuntimeError(f"the worker exited at start; see {LOGS / 'worker.log'}")
            seen = self.db.value("SELECT max(started_at) FROM tunixrt_workerheartbeat")
            if seen is not None and seen >= started:
                return time.monotonic() - t0
            time.sleep(0.3)
        raise RuntimeError(f"the worker was not ready within {wait_s} s; see {LOGS / 'worker.log'}")

    def stop(self) -> None:
        for proc in (self.web, self.worker, self.beat):
            if proc is not None:
                proc.stop()

    def api(self, method: str, path: str, body: Any = None, timeout: float = 15) -> tuple[int, Any]:
        """One API call with the drill's token; (status, JSON body), or (0, error name) if it never answered."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            return 0, type(exc).__name__
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw[:200].decode(errors="replace")


@dataclass
class Services:
    """How to break and mend PostgreSQL and Redis (shell commands; `{port}` is the service's port)."""

    pg_url: str
    redis_url: str
    pg_restart: str
    pg_stop: str
    pg_start: str
    redis_stop: str
    redis_start: str

    def fmt(self, command: str, url: str) -> str:
        return command.replace("{port}", str(urlsplit(url).port or 0))

    def restart_pg(self) -> tuple[int, str]:
        return sh(self.fmt(self.pg_restart, self.pg_url), timeout=120)

    def stop_pg(self) -> tuple[int, str]:
        return sh(self.fmt(self.pg_stop, self.pg_url), timeout=120)

    def start_pg(self) -> tuple[int, str]:
        return sh(self.fmt(self.pg_start, self.pg_url), timeout=120)

    def stop_redis(self) -> tuple[int, str]:
        return sh(self.fmt(self.redis_stop, self.redis_url), timeout=30)

    def start_redis(self) -> tuple[int, str]:
        return sh(self.fmt(self.redis_start, self.redis_url), timeout=30)

    def redis_up(self) -> bool:
        port = urlsplit(self.redis_url).port or 6379
        return sh(f"redis-cli -h 127.0.0.1 -p {port} ping", timeout=5)[1].strip() == "PONG"

    def pg_up(self) -> bool:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(with_database(self.pg_url, "postgres"), connect_timeout=2) as conn,
        ):
            conn.execute("SELECT 1")
            return True
        return False


def wait_until(check: Callable[[], bool], timeout_s: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        try:
            if check():
                return True
        except psycopg.Error:
            pass  # the database is down for a moment: keep looking until the deadline
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@contextlib.contextmanager
def stack_running(stack: Stack) -> Iterator[Stack]:
    try:
        stack.start()
        yield stack
    finally:
        log("stopping the stack")
        stack.stop()


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
