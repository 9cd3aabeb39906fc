"""Shared plumbing for the benchmarks: the bench database, the server, timing helpers.

Everything runs against a dedicated PostgreSQL database, `tunixrt_bench`
(the 1M-trace data set of bench_list; bench_api adds to it) or, for
bench_import, which needs an empty database for every run,
`tunixrt_bench_import`; and a granian web server (as bin/serve runs it) on
127.0.0.1:8765 by default. No other database is touched (`BENCH_DB` must start
with `tunixrt_bench`, or `side_` for bench_side_by_side).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = str(ROOT / ".venv" / "bin" / "python")
GRANIAN = str(ROOT / ".venv" / "bin" / "granian")
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
BENCH_DB = os.environ.get("BENCH_DB", "tunixrt_bench")
BENCH_PORT = int(os.environ.get("BENCH_PORT", "8765"))
BENCH_USER = "bench"
# Databases the benchmarks must never touch (the test suite and the dev server use them).
PROTECTED = {"test", "test_test", "tunixrt_dev", "postgres", "template0", "template1"}
# The only database names a benchmark may point the app at (bench_side_by_side uses side_*).
BENCH_PREFIXES = ("tunixrt_bench", "side_")


def app_env(**extra: str) -> dict[str, str]:
    """The environment of a realistic deployment pointed at the bench database."""
    assert BENCH_DB not in PROTECTED and BENCH_DB.startswith(BENCH_PREFIXES), BENCH_DB
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{BENCH_DB}",
            "DEBUG": "false",
            "SECRET_KEY": "bench-secret-key-not-for-production-" + "x" * 30,
            "SECURE_SSL_REDIRECT": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "TUNIXRT_ENV_FILE": "/dev/null",
            "TUNIXRT_VAR_DIR": str(Path(tempfile.gettempdir()) / "tunixrt-bench-var"),
            "LOG_LEVEL": "warning",
            "CELERY_BROKER_URL": "memory://",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(extra)
    return env


def psql(sql: str, db: str = "postgres") -> str:
    assert db not in PROTECTED - {"postgres"}, db
    out = subprocess.run(
        ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", db, "-v", "ON_ERROR_STOP=1",
         "-Atqc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def manage(*args: str, capture: bool = False, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [PY, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env or app_env(),
        check=True,
        capture_output=capture,
        text=True,
    )
    return proc.stdout if capture else ""


def reset_db() -> None:
    """Drop and re-create `tunixrt_bench`, then migrate it (schema + GIN indexes)."""
    psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {BENCH_DB}")
    manage("migrate", "--noinput", "-v0")


def db_exists() -> bool:
    return psql(f"SELECT 1 FROM pg_database WHERE datname = '{BENCH_DB}'") == "1"  # noqa: S608


def bench_token() -> str:
    """A new API token of the `bench` user (created on first use); tokens are stored hashed, so each run issues one.

    The user is a member (capturing traces needs that role; a user in no role group is a viewer).
    """
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from tunixrt.models import ApiToken\n"
        "from tunixrt.roles import Role, grant\n"
        f"u, _ = get_user_model().objects.get_or_create(username={BENCH_USER!r})\n"
        "grant(u, Role.MEMBER)\n"
        "print(ApiToken.objects.issue(u))\n"
    )
    return manage("shell", "-c", code, capture=True).strip().splitlines()[-1]


def bench_session() -> str:
    """A logged-in session key of the `bench` user, for the pages."""
    code = (
        "from importlib import import_module\n"
        "from django.conf import settings\n"
        "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model\n"
        f"u, _ = get_user_model().objects.get_or_create(username={BENCH_USER!r})\n"
        "s = import_module(settings.SESSION_ENGINE).SessionStore()\n"
        "s[SESSION_KEY] = str(u.pk)\n"
        "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "s[HASH_SESSION_KEY] = u.get_session_auth_hash()\n"
        "s.save()\n"
        "print(s.session_key)\n"
    )
    return manage("shell", "-c", code, capture=True).strip().splitlines()[-1]


def trace_count() -> int:
    return int(psql("SELECT count(*) FROM traces_trace", db=BENCH_DB))


def vacuum_analyze() -> None:
    psql("VACUUM ANALYZE traces_trace", db=BENCH_DB)


def web_command(port: int, workers: int = 1, threads: int = 4, app: str = "tunixrt.wsgi") -> list[str]:
    """granian serving `app` on 127.0.0.1:`port` with bin/serve's flags: `workers` processes of
    `threads` blocking threads, HTTP/1 with keep-alive, a dead worker started again. `app` is a
    module with an `application` (or `module:callable`)."""
    target = app if ":" in app else f"{app}:application"
    return [GRANIAN, "--interface", "wsgi", target, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--blocking-threads", str(threads), "--http", "1", "--no-ws",
            "--respawn-failed-workers", "--workers-kill-timeout", "5"]


@contextlib.contextmanager
def web_server(
    workers: int = 1,
    port: int = BENCH_PORT,
    threads: int = 4,
    app: str = "tunixrt.wsgi",
    env: dict[str, str] | None = None,
) -> Iterator[int]:
    """`web_command` running, without an access log; yields the main process's pid (the
    workers are its children).

    `env` replaces app_env() (e.g. app_env(CELERY_BROKER_URL=...) or another app's settings).
    """
    OUT.mkdir(parents=True, exist_ok=True)
    try:  # a server left over from an interrupted bench would answer instead of this one
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pass
    else:
        raise RuntimeError(f"something already listens on 127.0.0.1:{port} (a leftover bench server?)")
    log = open(OUT / "web.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*web_command(port, workers, threads, app), "--log-level", "warning"],
        cwd=ROOT,
        env=env if env is not None else app_env(),
        stdout=log,
        stderr=log,
    )
    try:
        wait_serving(proc, port, "/api/traces", "granian", 30)  # any answer (403 without a token): it is up
        yield proc.pid
    finally:
        stop(proc, 15)
        log.close()


def wait_serving(proc: subprocess.Popen[bytes], port: int, path: str, name: str, seconds: float) -> None:
    """Wait until `proc` answers any HTTP response on 127.0.0.1:`port`; raise if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}); see its log in {OUT}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within {seconds:.0f} s") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """SIGTERM, then SIGKILL after `seconds`."""
    proc.terminate()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    values = sorted(x * 1000 for x in latencies_s)
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(values[-1], 2) if values else float("nan"),
    }


def children_peak_rss_mb() -> float:
    """Peak RSS of the largest waited-for child process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def worker_pids(main_pid: int) -> list[int]:
    """The pids of the web server's worker processes (the children of granian's main process)."""
    try:
        children = Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text().split()
    except OSError:
        return []
    return [int(pid) for pid in children]


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a live process, in MB (Linux: /proc/<pid>/status, kB)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key.lower()] = round(int(value.split()[0]) / 1024, 1)
    return out


def wait_quiet(max_wait_s: float, threshold: float = 0.6) -> float:
    """Wait (at most `max_wait_s`) until the 1-minute load average drops below `threshold`.

    The machine has 2 cores; other work running beside a benchmark skews it.
    Returns the load average when the wait ended.
    """
    deadline = time.monotonic() + max_wait_s
    load = os.getloadavg()[0]
    if load >= threshold and max_wait_s > 0:
        log(f"load average {load:.2f}: waiting up to {max_wait_s:.0f} s for < {threshold}")
    while load >= threshold and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
