"""Fault drill: break PostgreSQL, Redis, the Celery worker and the training child under a production-like stack.

    .venv/bin/python -m bench.drill --allow-shared-services            # this machine's services, every scenario
    .venv/bin/python -m bench.drill --only worker,child --pg-url ... --redis-url ... \\
        --pg-restart '...' --redis-stop '...' --redis-start '...'     # a private PostgreSQL and Redis

Scenarios (docs/reliability.md says what each expects):
  pg      restart PostgreSQL, then stop it for 5 s, while writer threads POST traces (single and batch)
          and a reader polls
  redis   stop Redis for 10 s with an idle worker, then with a busy one (a tiny training run), launching
          a dry run and a worker-sized dataset build during the outage
  worker  SIGKILL the Celery worker and all its processes during a run, an evaluation and a dataset build
          (held mid-INSERT by a table lock the drill takes), then start it again
  child   SIGKILL the training child (`runs.training.child`): the run must fail with the SIGKILL reason

Reports per scenario: requests by status, 5xx, lost acknowledged writes, recovery times, final job
states. Writes bench/out/drill-<time>.json. Exits 1 if an acknowledged write is missing or a job ended
stuck (pending, running, building, cancel_requested); with --strict, also if any scenario failed.
The stack runs on the database `tunixrt_bench_drill` (dropped and re-created) and only on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg

from bench.common import OUT, log
from bench.drillstack import (
    LOGS,
    Services,
    Stack,
    alive,
    cmdline,
    find_processes,
    local_url,
    sigkill,
    wait_until,
)

SCENARIOS = ("pg", "redis", "worker", "child")
DEFAULT_PG_RESTART = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"
DEFAULT_PG_STOP = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main stop"
DEFAULT_PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
DEFAULT_REDIS_STOP = "redis-cli -p {port} shutdown nosave"
DEFAULT_REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port {port} --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)
TABLES = {"run": "runs_run", "evaluation": "runs_evaluation", "dataset": "traces_dataset"}
TERMINAL = {
    "run": {"completed", "failed", "timeout", "cancelled"},
    "evaluation": {"completed", "failed", "timeout", "cancelled"},
    "dataset": {"ready", "failed"},
}
DONE_OK = {"run": "completed", "evaluation": "completed", "dataset": "ready"}
T0 = time.monotonic()


def outage_casualties(procs: dict[str, Any]) -> list[str]:
    """What a Redis outage killed, from a worker_report()."""
    problems = []
    if not procs["worker_alive"]:
        problems.append(f"worker exited {procs['worker_died_after_s']} s after Redis stopped")
    if procs["beat_alive"] is False:
        problems.append("beat exited")
    return problems


def now() -> float:
    """Seconds since the drill started (every time in the report is on this clock)."""
    return time.monotonic() - T0


class DrillAbort(Exception):
    """A scenario could not go on (its setup failed); reported, and the drill moves to the next one."""


# Traffic: writer threads capturing traces, one reader; every request recorded.


@dataclass(slots=True)
class Req:
    t0: float
    t1: float
    kind: str
    status: str  # the HTTP status, or the exception's name when no answer came
    json: bool


class Traffic:
    """`writers` threads POSTing new traces (3 single captures, then a batch, in turn) and one reader."""

    def __init__(self, stack: Stack, writers: int, batch: int, tag: str, limit_s: float) -> None:
        self.stack = stack
        self.writers = writers
        self.batch = batch
        self.tag = tag
        self.limit_s = limit_s
        self.records: list[Req] = []
        self.acked: dict[int, str] = {}  # trace id → the prompt acknowledged for it
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for w in range(self.writers):
            self.threads.append(threading.Thread(target=self._write, args=(w,), daemon=True))
        self.threads.append(threading.Thread(target=self._read, daemon=True))
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=20)

    def _call(
        self, conn: http.client.HTTPConnection, kind: str, method: str, path: str, body: bytes | None
    ) -> tuple[http.client.HTTPConnection, int, bytes]:
        headers = {"Authorization": f"Token {self.stack.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        t0 = now()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.records.append(Req(t0, now(), kind, type(exc).__name__, False))
            conn.close()
            time.sleep(0.1)  # a refused connection answers at once: do not spin
            return self._conn(), 0, b""
        is_json = "json" in (resp.getheader("Content-Type") or "")
        self.records.append(Req(t0, now(), kind, str(resp.status), is_json))
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = self._conn()
        return conn, resp.status, data

    def _trace(self, w: int, n: int) -> dict[str, Any]:
        a, b = n % 97, (n * 7) % 89
        return {
            "trace_version": "1.0",
            "prompt": f"drill {self.tag} w{w} n{n}: what is {a} + {b}?",
            "final_answer": str(a + b),
            "steps": [{"i": 0, "type": "compute", "content": f"{a} + {b} = {a + b}"}],
            "meta": {"source": "drill", "writer": w},
        }

    def _write(self, w: int) -> None:
        conn = self._conn()
        n = 0
        deadline = now() + self.limit_s
        while not self.stop_event.is_set() and now() < deadline:
            if n % 4 < 3:
                items = [self._trace(w, n)]
                n += 1
                conn, status, data = self._call(conn, "single", "POST", "/api/traces", orjson.dumps(items[0]))
                if status in (200, 201):
                    self._ack(items, [orjson.loads(data)["id"]])
            else:
                items = [self._trace(w, n + i) for i in range(self.batch)]
                n += self.batch + 1
                conn, status, data = self._call(conn, "batch", "POST", "/api/traces/batch", orjson.dumps(items))
                if status in (200, 201):
                    self._ack(items, orjson.loads(data)["ids"])
        conn.close()

    def _ack(self, items: list[dict[str, Any]], ids: list[int]) -> None:
        with self.lock:
            for item, pk in zip(items, ids, strict=True):
                self.acked[int(pk)] = item["prompt"]

    def _read(self) -> None:
        conn = self._conn()
        deadline = now() + self.limit_s
        turn = 0
        while not self.stop_event.is_set() and now() < deadline:
            path = "/api/health" if turn % 2 else "/api/traces?limit=5"
            conn, _, _ = self._call(conn, "health" if turn % 2 else "list", "GET", path, None)
            turn += 1
            time.sleep(0.2)
        conn.close()


def open_files(pid: int) -> list[str]:
    found = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


def pool_child(pid: int) -> bool:
    """Whether a worker's child is a prefork pool process: they hold the pool's `/tmp/pymp-…` file, beat does not."""
    return any("/pymp-" in path for path in open_files(pid))


def request_summary(records: list[Req], fault_start: float, fault_end: float) -> dict[str, Any]:
    by_status = Counter(r.status for r in records)
    by_kind: dict[str, Counter[str]] = {}
    for r in records:
        by_kind.setdefault(r.kind, Counter())[r.status] += 1
    ok = [r for r in records if r.status.startswith("2")]
    bad = [r for r in records if not r.status.startswith("2")]
    first_ok_after = min((r.t1 for r in ok if r.t0 >= fault_end), default=None)
    last_bad = max((r.t1 for r in bad), default=None)
    return {
        "requests": len(records),
        "ok_2xx": len(ok),
        "by_status": dict(sorted(by_status.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "http_5xx": sum(n for s, n in by_status.items() if s.startswith("5")),
        "http_500": by_status.get("500", 0),
        "non_json_errors": sum(1 for r in bad if r.status.isdigit() and not r.json),
        "no_answer": sum(n for s, n in by_status.items() if not s.isdigit()),
        "first_error_s": round(min(r.t0 for r in bad) - fault_start, 2) if bad else None,
        "last_error_after_fault_end_s": round(last_bad - fault_end, 2) if last_bad is not None else None,
        "recovery_s": round(first_ok_after - fault_end, 2) if first_ok_after is not None else None,
        "slowest_request_s": round(max((r.t1 - r.t0 for r in records), default=0.0), 2),
    }


# Jobs: launched through the API, watched in the database.


def job_row(stack: Stack, kind: str, pk: int) -> dict[str, Any]:
    """The job's state; `done` is a run's steps or an evaluation's stored predictions."""
    extra = {
        "run": ", summary->>'steps_done', summary->>'resumed_at_step'",
        "evaluation": ", (SELECT count(*) FROM runs_prediction p WHERE p.evaluation_id = j.id), NULL",
        "dataset": ", NULL, NULL",
    }[kind]
    row = stack.db.rows(
        f"SELECT status, attempt, error, broker_error, queued_at IS NOT NULL{extra} "  # noqa: S608 - fixed names
        f"FROM {TABLES[kind]} j WHERE id = %s",
        (pk,),
    )
    if not row:
        return {"status": "missing"}
    status, attempt, error, broker_error, queued, done, resumed = row[0]
    return {
        "status": status,
        "attempt": attempt,
        "error": (error or "")[:300],
        "broker_error": (broker_error or "")[:120],
        "queued": queued,
        "done": int(done) if done is not None else None,
        "resumed_at_step": int(resumed) if resumed is not None else None,
    }


@dataclass
class Watch:
    """One job followed from a fault on: when its state first moved, when it ended, how."""

    kind: str
    pk: int
    label: str
    since: float
    history: list[tuple[float, str, int]] = field(default_factory=list)
    moved_s: float | None = None
    terminal_s: float | None = None
    last: dict[str, Any] = field(default_factory=dict)

    def poll(self, stack: Stack) -> bool:
        """Look once; True once the job is terminal."""
        row = job_row(stack, self.kind, self.pk)
        self.last = row
        state = (row["status"], row.get("attempt", 0))
        if not self.history or self.history[-1][1:] != state:
            t = now()
            if self.history and self.moved_s is None:
                self.moved_s = round(t - self.since, 2)
            self.history.append((round(t, 2), *state))
        if row["status"] in TERMINAL[self.kind] and self.terminal_s is None:
            self.terminal_s = round(now() - self.since, 2)
        return self.terminal_s is not None

    def report(self) -> dict[str, Any]:
        return {
            "job": f"{self.kind} {self.pk}",
            "what": self.label,
            "final": self.last.get("status"),
            "attempt": self.last.get("attempt"),
            "moved_after_s": self.moved_s,
            "ended_after_s": self.terminal_s,
            "done": self.last.get("done"),
            "resumed_at_step": self.last.get("resumed_at_step"),
            "error": self.last.get("error"),
            "history": self.history,
        }


def follow(stack: Stack, watches: list[Watch], limit_s: float, during: Any = None) -> bool:
    """Poll every watch until all are terminal or `limit_s` passes; `during()` runs each round."""
    deadline = time.monotonic() + limit_s
    while True:
        done = True
        for w in watches:
            try:
                done = w.poll(stack) and done
            except psycopg.Error:
                done = False
        if during is not None:
            during()
        if done or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


# The drill.


@dataclass
class Drill:
    stack: Stack
    services: Services
    args: argparse.Namespace
    deadline: float
    acked_traces: dict[int, str] = field(default_factory=dict)
    acked_jobs: list[tuple[str, int]] = field(default_factory=list)
    redis_down: bool = False
    lock_conn: psycopg.Connection[Any] | None = None
    # When the worker was first seen dead in the current scenario, and what its log said.
    worker_died_at: float | None = None
    worker_exit: int | None = None
    log_offset: int = 0

    def mark(self) -> None:
        """Start watching the worker afresh (a scenario begins)."""
        self.worker_died_at = None
        self.worker_exit = None
        with contextlib.suppress(OSError):
            self.log_offset = (LOGS / "worker.log").stat().st_size

    def poll_worker(self) -> bool:
        if self.stack.worker.running():
            return True
        if self.worker_died_at is None:
            self.worker_died_at = now()
            self.worker_exit = self.stack.worker.exit_code()
        return False

    def sleep(self, seconds: float) -> None:
        """Sleep, noticing the moment the worker dies."""
        deadline = time.monotonic() + self.left(seconds)
        while time.monotonic() < deadline:
            self.poll_worker()
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        self.poll_worker()

    def worker_log(self) -> list[str]:
        """The worker's fatal lines since mark(): why it stopped, if it did."""
        try:
            with (LOGS / "worker.log").open("rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        keys = ("Unrecoverable error", "CRITICAL", "beat: Shutting down", "Warm shutdown")
        return [line.strip()[:200] for line in text.splitlines() if any(k in line for k in keys)][:6]

    def supervise(self, notes: list[str]) -> None:
        """Stand in for a supervisor: a dead worker (and beat) is started again, and that is noted."""
        if self.poll_worker() and (self.stack.beat is None or self.stack.beat.running()):
            return
        if not self.stack.worker.running():
            orphans = self.stack.worker.reap_orphans()
            if orphans:
                notes.append("left behind by the dead worker (killed by the drill): " + " | ".join(orphans))
            notes.append(f"worker exited ({self.worker_exit}) at {self.worker_died_at:.1f} s: "
                         "the drill started it again (standing in for a supervisor)")
            self.stack.start_worker()
        if self.stack.beat is not None and not self.stack.beat.running():
            notes.append(f"beat exited ({self.stack.beat.exit_code()}): the drill started it again")
            self.stack.beat.start()

    def worker_report(self, since: float) -> dict[str, Any]:
        return {
            "worker_alive": self.worker_died_at is None,
            "worker_died_after_s": None if self.worker_died_at is None else round(self.worker_died_at - since, 1),
            "worker_exit": self.worker_exit,
            "worker_log": self.worker_log(),
            "beat_alive": None if self.stack.beat is None else self.stack.beat.running(),
        }

    def left(self, want: float) -> float:
        return max(0.0, min(want, self.deadline - time.monotonic()))

    def launch_run(self, **params: Any) -> dict[str, Any]:
        status, body = self.stack.api("POST", "/api/runs", {"dataset": "drill@v1", **params})
        if status != 201:
            raise DrillAbort(f"launching a run answered {status}: {body}")
        self.acked_jobs.append(("run", body["id"]))
        return dict(body)

    def launch_evaluation(self, run_id: int, **params: Any) -> dict[str, Any]:
        status, body = self.stack.api(
            "POST", f"/api/runs/{run_id}/evaluate", {"eval_set": "drill-eval", "baseline": True, **params}
        )
        if status != 201:
            raise DrillAbort(f"launching an evaluation answered {status}: {body}")
        self.acked_jobs.append(("evaluation", body["id"]))
        return dict(body)

    def launch_build(self, name: str, limit: int = 500) -> dict[str, Any]:
        status, body = self.stack.api("POST", "/api/datasets", {"name": name, "limit": limit})
        if status not in (201, 202):
            raise DrillAbort(f"building a dataset answered {status}: {body}")
        pk = self.stack.db.value(
            "SELECT id FROM traces_dataset WHERE name = %s AND version = %s", (body["name"], body["version"])
        )
        self.acked_jobs.append(("dataset", pk))
        return {**body, "id": pk}

    def ensure_worker(self, notes: list[str]) -> None:
        """Start the worker again if an earlier fault killed it (noted: the drill stood in for a supervisor)."""
        if not self.stack.worker.running():
            notes.append(f"worker was dead at the start (exit {self.stack.worker.exit_code()}): started again")
            self.stack.worker.reap_orphans()
            self.stack.start_worker()
        if self.stack.beat is not None and not self.stack.beat.running():
            notes.append("beat was dead at the start: started again")
            self.stack.beat.start()

    def wait_steps(self, run_id: int, steps: int, limit_s: float) -> bool:
        def check() -> bool:
            row = job_row(self.stack, "run", run_id)
            if row["status"] in TERMINAL["run"]:
                raise DrillAbort(f"run {run_id} ended ({row['status']}: {row['error']}) before step {steps}")
            return (row["done"] or 0) >= steps

        return wait_until(check, self.left(limit_s))

    # 1. PostgreSQL restart under writers.

    def scenario_pg(self) -> list[dict[str, Any]]:
        """Writers through a quick restart, then through an outage of --pg-outage seconds (stop, wait, start)."""
        traffic = Traffic(self.stack, self.args.writers, self.args.batch, f"{os.getpid()}-{int(time.time())}",
                          limit_s=self.left(150))
        traffic.start()
        phases: list[tuple[str, str, float, float, int, str]] = []
        try:
            time.sleep(self.left(self.args.pg_before))
            start = now()
            log("pg: restarting PostgreSQL")
            rc, out = self.services.restart_pg()
            phases.append(("pg-restart", "restart PostgreSQL", start, now(), rc, out))
            time.sleep(self.left(self.args.pg_after))
            if self.args.pg_outage > 0:
                start = now()
                log(f"pg: stopping PostgreSQL for {self.args.pg_outage:.0f} s")
                rc, out = self.services.stop_pg()
                time.sleep(self.left(self.args.pg_outage))
                rc2, out2 = self.services.start_pg()
                phases.append(("pg-down", f"stop PostgreSQL {self.args.pg_outage:.0f} s, start", start, now(),
                               rc or rc2, out + out2))
                time.sleep(self.left(self.args.pg_after))
        finally:
            traffic.stop()
            self.acked_traces.update(traffic.acked)
        lost = self.lost_traces(traffic.acked)
        worker_ok = self.stack.worker.running()
        health = self.stack.api("GET", "/api/health")
        results = []
        for i, (name, what, start, end, rc, out) in enumerate(phases):
            # Each fault owns the requests from halfway after the previous one to halfway before the next.
            window_start = (phases[i - 1][3] + start) / 2 if i else 0.0
            window_end = (end + phases[i + 1][2]) / 2 if i + 1 < len(phases) else float("inf")
            records = [r for r in traffic.records if window_start <= r.t0 < window_end]
            summary = request_summary(records, start, end)
            notes = [f"{what} command exited {rc}: {out}"] if rc else []
            problems = []
            if summary["http_500"]:
                problems.append(f"{summary['http_500']} × 500")
            if summary["non_json_errors"]:
                problems.append(f"{summary['non_json_errors']} non-JSON error answers")
            if summary["recovery_s"] is None:
                problems.append("no success after the fault")
            last = i == len(phases) - 1
            if last:
                if lost:
                    problems.append(f"{lost} acknowledged traces lost")
                if not worker_ok:
                    notes.append(f"the worker exited ({self.stack.worker.exit_code()}) during the PostgreSQL faults")
                    problems.append("worker died")
            results.append({
                "scenario": name,
                "what": f"{what} under {self.args.writers} writers + 1 reader",
                "fault": {"start_s": round(start, 2), "duration_s": round(end - start, 2), "command_rc": rc},
                **summary,
                "acked_traces": len(traffic.acked) if last else None,
                "lost_writes": lost if last else None,
                "health_after": (health[1].get("status") if isinstance(health[1], dict) else health) if last else None,
                "worker_alive_after": worker_ok if last else None,
                "notes": notes,
                "verdict": "FAIL: " + "; ".join(problems) if problems else "ok",
            })
        return results

    def lost_traces(self, acked: dict[int, str]) -> int:
        if not acked:
            return 0
        stored = dict(self.stack.db.rows("SELECT id, prompt FROM traces_trace WHERE id = ANY(%s)", (list(acked),)))
        return sum(1 for pk, prompt in acked.items() if stored.get(pk) != prompt)

    # 2. Redis outages.

    def redis_outage(self, notes: list[str], during: Any = None) -> tuple[float, float]:
        """Stop Redis for the outage length (running `during()` while it is down); (start, end) times."""
        start = now()
        rc, out = self.services.stop_redis()
        self.redis_down = True
        if rc != 0 or not wait_until(lambda: not self.services.redis_up(), 10, 0.2):
            notes.append(f"Redis did not stop ({rc}: {out})")
        if during is not None:
            during()
        self.sleep(self.args.redis_outage - (now() - start))
        rc, out = self.services.start_redis()
        if rc != 0 or not wait_until(self.services.redis_up, 20, 0.2):
            raise DrillAbort(f"Redis did not start again ({rc}: {out})")
        self.redis_down = False
        return start, now()

    def scenario_redis(self) -> list[dict[str, Any]]:
        return [self.redis_idle(), self.redis_busy()]

    def redis_idle(self) -> dict[str, Any]:
        notes: list[str] = []
        self.ensure_worker(notes)
        self.mark()
        log("redis: outage with an idle worker")
        start, end = self.redis_outage(notes)
        probe = self.launch_run(mode="dry_run")
        watch = Watch("run", probe["id"], "dry run launched as Redis returned", end)
        follow(self.stack, [watch], self.left(90), during=lambda: self.supervise(notes))
        self.sleep(self.args.observe - (now() - end))  # a worker that dies after reconnecting counts too
        procs = self.worker_report(start)
        problems = outage_casualties(procs)
        if watch.last.get("status") != "completed":
            problems.append(f"probe run {watch.last.get('status')}")
        return {
            "scenario": "redis-idle",
            "what": f"stop Redis {self.args.redis_outage:.0f} s, idle worker; then a dry run",
            "fault": {"start_s": round(start, 2), "duration_s": round(end - start, 2)},
            **procs,
            "recovery_s": watch.moved_s,
            "jobs": [watch.report()],
            "notes": notes,
            "verdict": "FAIL: " + "; ".join(problems) if problems else "ok",
        }

    def redis_busy(self) -> dict[str, Any]:
        notes: list[str] = []
        self.ensure_worker(notes)
        run = self.launch_run(max_steps=self.args.busy_steps, checkpoint_every_steps=50, eval_every_steps=100)
        if not self.wait_steps(run["id"], 10, 180):
            raise DrillAbort(f"run {run['id']} made no progress within the limit")
        self.mark()
        log("redis: outage with a busy worker")
        launched: dict[str, Any] = {}

        def during() -> None:
            launched["run"] = self.stack.api("POST", "/api/runs", {"dataset": "drill@v1", "mode": "dry_run"})
            launched["build"] = self.stack.api("POST", "/api/datasets", {"name": "drill-outage", "limit": 300})

        steps_before = job_row(self.stack, "run", run["id"])["done"]
        start, end = self.redis_outage(notes, during)
        steps_after = job_row(self.stack, "run", run["id"])["done"]
        watches = [Watch("run", run["id"], f"{self.args.busy_steps}-step run training through the outage", end)]
        outage_answers = {}
        for what, (status, body) in launched.items():
            outage_answers[what] = {
                "status": status,
                "awaiting_broker": body.get("awaiting_broker") if isinstance(body, dict) else None,
            }
            if status in (201, 202) and isinstance(body, dict):
                if what == "run":
                    self.acked_jobs.append(("run", body["id"]))
                    watches.append(Watch("run", body["id"], "dry run launched during the outage", end))
                else:
                    pk = self.stack.db.value("SELECT id FROM traces_dataset WHERE name = %s AND version = %s",
                                             (body["name"], body["version"]))
                    self.acked_jobs.append(("dataset", pk))
                    watches.append(Watch("dataset", pk, "dataset build launched during the outage", end))
        self.sleep(self.args.observe)
        follow(self.stack, watches, self.left(self.args.job_limit), during=lambda: self.supervise(notes))
        procs = self.worker_report(start)
        problems = outage_casualties(procs)
        for what, answer in outage_answers.items():
            if answer["status"] not in (201, 202) or not answer["awaiting_broker"]:
                problems.append(f"{what} launched during the outage answered {answer}")
        for w in watches:
            if w.last.get("status") != DONE_OK[w.kind]:
                problems.append(f"{w.kind} {w.pk} ended {w.last.get('status')}")
        return {
            "scenario": "redis-busy",
            "what": f"stop Redis {self.args.redis_outage:.0f} s during a run; launch a dry run and a build meanwhile",
            "fault": {"start_s": round(start, 2), "duration_s": round(end - start, 2)},
            **procs,
            "run_steps_at_outage": [steps_before, steps_after],
            "launched_during_outage": outage_answers,
            "recovery_s": min((w.moved_s for w in watches[1:] if w.moved_s is not None), default=None),
            "jobs": [w.report() for w in watches],
            "notes": notes,
            "verdict": "FAIL: " + "; ".join(problems) if problems else "ok",
        }

    # 3. SIGKILL the worker during a run, an evaluation and a dataset build.

    def scenario_worker(self) -> dict[str, Any]:
        try:
            return self.worker_kill()
        finally:
            if self.lock_conn is not None:
                self.lock_conn.close()
                self.lock_conn = None

    def worker_kill(self) -> dict[str, Any]:
        notes: list[str] = []
        self.ensure_worker(notes)
        host = self.launch_run(mode="dry_run")  # the evaluation's run: a baseline needs no trained model
        follow(self.stack, [Watch("run", host["id"], "dry run", now())], self.left(90))
        run = self.launch_run(max_steps=self.args.kill_steps, checkpoint_every_steps=25, eval_every_steps=1000)
        # Past its first checkpoint (25) before the rest starts: the resume has something to resume from.
        if not self.wait_steps(run["id"], 30, 180):
            raise DrillAbort(f"run {run['id']} made no progress within the limit")
        evaluation = self.launch_evaluation(host["id"], max_new_tokens=512)
        # Holds the build in its INSERT … SELECT (ROW EXCLUSIVE waits on SHARE ROW EXCLUSIVE), so the kill
        # lands mid-build whatever the data size; reads of members (training data) are not blocked.
        self.lock_conn = psycopg.connect(self.stack.db_url, autocommit=False)
        self.lock_conn.execute("LOCK TABLE traces_datasetmember IN SHARE ROW EXCLUSIVE MODE")
        build = self.launch_build("drill-build")
        jobs = [("run", run["id"], "training run"), ("evaluation", evaluation["id"], "baseline evaluation"),
                ("dataset", build["id"], "dataset build")]

        def all_busy() -> bool:
            rows = {kind: job_row(self.stack, kind, pk) for kind, pk, _ in jobs}
            for kind, row in rows.items():
                if row["status"] in TERMINAL[kind]:
                    raise DrillAbort(f"the {kind} ended ({row['status']}: {row['error']}) before the kill")
            # Some predictions stored: the next attempt must answer only the rest.
            return (rows["evaluation"]["done"] or 0) > 0 and rows["dataset"]["status"] == "building"

        if not wait_until(all_busy, self.left(120)):
            raise DrillAbort("the run, evaluation and build were not all in progress within the limit")
        states = {f"{k} {pk}": job_row(self.stack, k, pk) for k, pk, _ in jobs}
        log("worker: SIGKILL to all its processes")
        # All at once, as the OOM killer of a container or `docker kill` would: no process gets to tidy up.
        tree = self.stack.worker.tree()
        kill_at = now()
        sigkill(tree)
        self.stack.worker.reap_orphans()
        self.lock_conn.close()
        self.lock_conn = None
        ready_s = self.stack.start_worker()
        watches = [Watch(k, pk, label, kill_at) for k, pk, label in jobs]
        self.mark()
        follow(self.stack, watches, self.left(self.args.job_limit), during=lambda: self.supervise(notes))
        orphans = self.main_kill_orphans()
        problems = []
        if orphans:
            problems.append(f"{len(orphans)} processes outlived the worker's main process")
        for w in watches:
            if w.last.get("status") != DONE_OK[w.kind]:
                problems.append(f"{w.kind} {w.pk} ended {w.last.get('status')}")
        run_report = watches[0].report()
        if run_report["final"] == "completed" and not run_report["resumed_at_step"]:
            problems.append("the run started over instead of resuming from its checkpoint")
        return {
            "scenario": "worker",
            "what": "SIGKILL the worker (all processes) during a run, an evaluation and a build; start it again",
            "fault": {"start_s": round(kill_at, 2), "processes_killed": len(tree),
                      "worker_ready_again_s": round(ready_s, 1)},
            "states_at_kill": states,
            "orphans_after_main_kill": orphans,
            "recovery_s": min((w.moved_s for w in watches if w.moved_s is not None), default=None),
            "jobs": [w.report() for w in watches],
            "notes": notes,
            "verdict": "FAIL: " + "; ".join(problems) if problems else "ok",
        }

    def main_kill_orphans(self) -> list[str]:
        """SIGKILL only the idle worker's main process; what of its tree is still alive 3 s later (then killed)."""
        self.supervise([])
        tree = self.stack.worker.tree()
        roles = {pid: "pool process" if pool_child(pid) else "embedded beat" for pid in tree[1:]}
        sigkill([self.stack.worker.pid])
        time.sleep(3)
        orphans = [f"{roles[pid]} {pid}: {cmdline(pid)[:90]}" for pid in tree[1:] if alive(pid) and cmdline(pid)]
        self.stack.worker.reap_orphans()
        self.stack.start_worker()
        return orphans

    # 4. SIGKILL the training child.

    def scenario_child(self) -> dict[str, Any]:
        notes: list[str] = []
        self.ensure_worker(notes)
        run = self.launch_run(max_steps=1000, checkpoint_every_steps=500, eval_every_steps=1000)
        if not self.wait_steps(run["id"], 5, 180):
            raise DrillAbort(f"run {run['id']} made no progress within the limit")
        folder = self.stack.db.value("SELECT output_dir FROM runs_run WHERE id = %s", (run["id"],))
        pids = [p for p in find_processes("runs.training.child", self.stack.worker.pid) if folder in cmdline(p)]
        if not pids:
            raise DrillAbort(f"no training child of run {run['id']} found under the worker")
        log(f"child: SIGKILL {pids}")
        kill_at = now()
        sigkill(pids)
        watch = Watch("run", run["id"], "training run whose child was SIGKILLed", kill_at)
        follow(self.stack, [watch], self.left(90), during=lambda: self.supervise(notes))
        problems = []
        if watch.last.get("status") != "failed":
            problems.append(f"run ended {watch.last.get('status')}")
        elif "SIGKILL" not in (watch.last.get("error") or ""):
            problems.append(f"the reason does not say SIGKILL: {watch.last.get('error')!r}")
        if (watch.last.get("attempt") or 1) != 1:
            problems.append("the run was retried")
        return {
            "scenario": "child",
            "what": "SIGKILL the training child (runs.training.child) mid-run",
            "fault": {"start_s": round(kill_at, 2), "pids": pids},
            "recovery_s": watch.terminal_s,
            "jobs": [watch.report()],
            "notes": notes,
            "verdict": "FAIL: " + "; ".join(problems) if problems else "ok",
        }

    # The end: lost writes and stuck jobs over the whole drill.

    def settle(self) -> dict[str, Any]:
        """Give jobs still active (a scenario that stopped early) a bounded time to end, the worker kept up."""
        watches = []
        for kind, table in TABLES.items():
            for (pk,) in self.stack.db.rows(
                f"SELECT id FROM {table} WHERE NOT (status = ANY(%s))",  # noqa: S608 - fixed names
                (list(TERMINAL[kind]),),
            ):
                watches.append(Watch(kind, pk, "active at the end", now()))
        notes: list[str] = []
        self.mark()
        if watches:
            log(f"waiting for {len(watches)} active jobs to end")
            # At least a minute even past --max-minutes: a stuck verdict must not come from cutting the wait.
            limit = max(60.0, self.left(self.args.job_limit))
            follow(self.stack, watches, limit, during=lambda: self.supervise(notes))
        return {"settled": [w.report() for w in watches], "notes": notes}

    def final_checks(self) -> dict[str, Any]:
        settled = self.settle()
        stuck = []
        for kind, table in TABLES.items():
            done = tuple(TERMINAL[kind])
            for pk, status, attempt, error in self.stack.db.rows(
                f"SELECT id, status, attempt, left(error, 120) FROM {table} "  # noqa: S608 - fixed names
                "WHERE NOT (status = ANY(%s)) ORDER BY id",
                (list(done),),
            ):
                stuck.append({"job": f"{kind} {pk}", "status": status, "attempt": attempt, "error": error})
        missing_jobs = [
            f"{kind} {pk}" for kind, pk in self.acked_jobs
            if pk is None or self.stack.db.value(f"SELECT 1 FROM {TABLES[kind]} WHERE id = %s", (pk,)) is None  # noqa: S608
        ]
        return {
            **settled,
            "acknowledged_traces": len(self.acked_traces),
            "lost_traces": self.lost_traces(self.acked_traces),
            "acknowledged_jobs": len(self.acked_jobs),
            "lost_jobs": missing_jobs,
            "stuck_jobs": stuck,
        }

    def cleanup(self) -> None:
        if self.lock_conn is not None:
            with contextlib.suppress(Exception):
                self.lock_conn.close()
        if self.redis_down or not self.services.redis_up():
            log("cleanup: starting Redis again")
            self.services.start_redis()
        if not self.services.pg_up():
            log("cleanup: starting PostgreSQL again")
            self.services.start_pg()
            if not self.services.pg_up():
                log("WARNING: PostgreSQL is not answering; start it by hand: " + self.services.pg_start)


def render(results: list[dict[str, Any]], final: dict[str, Any]) -> str:
    head = ["scenario", "requests", "2xx", "5xx (500)", "other non-2xx", "lost", "recovery s", "jobs: final (attempt)",
            "verdict"]
    rows = [head]
    for r in results:
        by_status = r.get("by_status", {})
        other = {s: n for s, n in by_status.items() if not s.startswith(("2", "5"))}
        jobs = ", ".join(f"{j['job']} {j['final']}({j['attempt']})" for j in r.get("jobs", []))
        rows.append([
            r["scenario"],
            str(r.get("requests", "-")),
            str(r.get("ok_2xx", "-")),
            f"{r['http_5xx']} ({r['http_500']})" if "http_5xx" in r else "-",
            " ".join(f"{s}×{n}" for s, n in other.items()) or "-",
            str(r.get("lost_writes") if r.get("lost_writes") is not None else "-"),
            "-" if r.get("recovery_s") is None else f"{r['recovery_s']:.1f}",
            jobs or "-",
            r["verdict"],
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row[:-1])) + "  " + row[-1])
        if i == 0:
            lines.append("-" * (sum(widths) + 2 * len(widths) + 7))
    for r in results:
        for note in r.get("notes", []):
            lines.append(f"  {r['scenario']}: {note}")
        for orphan in r.get("orphans_after_main_kill", []):
            lines.append(f"  {r['scenario']}: outlived the worker: {orphan}")
        for j in r.get("jobs", []):
            if j["final"] != DONE_OK.get(j["job"].split()[0]) and j.get("error"):
                lines.append(f"  {r['scenario']}: {j['job']}: {j['error'][:200]}")
    lines.append(
        f"acknowledged traces {final['acknowledged_traces']}, lost {final['lost_traces']}; "
        f"acknowledged jobs {final['acknowledged_jobs']}, lost {len(final['lost_jobs'])}; "
        f"stuck jobs {len(final['stuck_jobs'])}"
        + (": " + ", ".join(f"{s['job']} {s['status']}" for s in final["stuck_jobs"]) if final["stuck_jobs"] else "")
    )
    return "\n".join(lines)


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                   help="the PostgreSQL server (the drill creates its own database there)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="the broker (database included)")
    p.add_argument("--pg-restart", default=DEFAULT_PG_RESTART, help="shell command restarting PostgreSQL")
    p.add_argument("--pg-stop", default=DEFAULT_PG_STOP, help="shell command stopping PostgreSQL")
    p.add_argument("--pg-start", default=DEFAULT_PG_START, help="shell command starting PostgreSQL")
    p.add_argument("--redis-stop", default=DEFAULT_REDIS_STOP, help="shell command stopping Redis ({port})")
    p.add_argument("--redis-start", default=DEFAULT_REDIS_START, help="shell command starting Redis ({port})")
    p.add_argument("--allow-shared-services", action="store_true",
                   help="allowed to restart the PostgreSQL on 5432 / Redis on 6379 (others' tests use them)")
    p.add_argument("--beat", choices=["embedded", "separate"], default="separate",
                   help="beat inside the worker (`worker --beat`) or its own process (as bin/serve and compose)")
    p.add_argument("--port", type=int, default=8766, help="web server (granian) port on 127.0.0.1")
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--batch", type=int, default=25, help="traces per batch request")
    p.add_argument("--pg-before", type=float, default=8, help="seconds of writes before the restart")
    p.add_argument("--pg-after", type=float, default=12, help="seconds of writes after each fault")
    p.add_argument("--pg-outage", type=float, default=5, help="seconds PostgreSQL stays stopped (0: restart only)")
    p.add_argument("--redis-outage", type=float, default=10)
    p.add_argument("--observe", type=float, default=15, help="seconds to watch the worker after an outage")
    p.add_argument("--busy-steps", type=int, default=200, help="steps of the run training through the outage")
    p.add_argument("--kill-steps", type=int, default=200, help="steps of the run whose worker is killed")
    p.add_argument("--job-limit", type=float, default=200, help="seconds a job may take to end after a fault")
    p.add_argument("--max-minutes", type=float, default=12, help="no wait starts after this (a hard cap)")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the web server, worker and beat (repeatable)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any scenario's verdict is not ok")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local_url(args.pg_url, "--pg-url")
    local_url(args.redis_url, "--redis-url")
    shared = urlsplit(args.pg_url).port in (None, 5432) or urlsplit(args.redis_url).port in (None, 6379)
    if shared and not args.allow_shared_services:
        raise SystemExit(
            "This drill restarts PostgreSQL and stops Redis. They are the shared 5432/6379 here: pass "
            "--allow-shared-services if nobody else is using them, or point --pg-url/--redis-url and the "
            "--pg-restart/--redis-stop/--redis-start commands at private ones."
        )
    server_env = dict(item.split("=", 1) for item in args.server_env)
    services = Services(args.pg_url, args.redis_url, args.pg_restart, args.pg_stop, args.pg_start,
                        args.redis_stop, args.redis_start)
    if not services.redis_up():
        raise SystemExit(f"Redis at {args.redis_url} does not answer PING.")
    stack = Stack(args.pg_url, args.redis_url, args.port, args.beat, server_env)
    drill = Drill(stack, services, args, deadline=time.monotonic() + args.max_minutes * 60)
    # SIGTERM ends the drill like Ctrl-C: through the finally below, which stops everything it started.
    signal.signal(signal.SIGTERM, interrupted)
    results: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    started = time.time()
    try:
        log(f"setup: database {stack.db_url.rsplit('/', 1)[-1]} (migrate, 550 traces, dataset, eval set)")
        stack.setup(args.pg_url)
        log("setup: starting the web server and the worker")
        stack.start()
        for name in args.only:
            if drill.left(1) <= 0:
                results.append({"scenario": name, "verdict": "skipped: drill time limit reached", "notes": []})
                continue
            log(f"scenario {name} ({now():.0f} s)")
            try:
                outcome = getattr(drill, f"scenario_{name}")()
            except DrillAbort as exc:
                outcome = {"scenario": name, "verdict": f"FAIL: {exc}", "notes": []}
            results.extend(outcome if isinstance(outcome, list) else [outcome])
        final = drill.final_checks()
    finally:
        drill.cleanup()
        stack.stop()
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "options": {k: v for k, v in vars(args).items() if k != "server_env"},
        "results": results,
        "final": final,
        "logs": str(LOGS),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"drill-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(render(results, final))
    print(f"\nreport: {path}  (wall {report['wall_s']} s; process logs in {LOGS})")
    failed = final["lost_traces"] or final["lost_jobs"] or final["stuck_jobs"]
    if args.strict:
        failed = failed or any(r["verdict"] != "ok" for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: every process the drill started is stopped")
        sys.exit(130)
