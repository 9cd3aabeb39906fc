"""Run orchestration benchmarks (PostgreSQL + Redis + a real Celery worker).

    .venv/bin/python bench/bench_runs.py setup          # database tunixrt_bench_runs + a dataset
    .venv/bin/python bench/bench_runs.py writes         # metric points and log lines per second
    .venv/bin/python bench/bench_runs.py latency        # enqueue → running, idle worker on Redis
    .venv/bin/python bench/bench_runs.py overhead       # 200-step tiny run: app vs bare child
    .venv/bin/python bench/bench_runs.py presets        # steps/s and peak RSS, tiny and small

Uses its own database (`tunixrt_bench_runs`), Redis database 14, and
temporary folders; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PY, ROOT, app_env, log, psql, summary_ms

DB = "tunixrt_bench_runs"
VAR = Path(tempfile.gettempdir()) / "tunixrt-bench-runs"
ENV = app_env(
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
    CELERY_BROKER_URL="redis://127.0.0.1:6379/14",
    TUNIXRT_VAR_DIR=str(VAR),
    RUNS_DIR=str(VAR / "runs"),
    JAX_CACHE_DIR=str(VAR / "jax-cache"),
    CELERY_WORKER_CONCURRENCY="1",
)
DATASET = "bench-runs@v1"


def django_setup() -> None:
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunixrt.settings")
    import django

    django.setup()


def manage(*args: str) -> None:
    subprocess.run([PY, str(ROOT / "manage.py"), *args], cwd=ROOT, env=ENV, check=True)


def setup() -> None:
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB}")
    manage("migrate", "--noinput", "-v0")
    data = ROOT.parent / "shared" / "data" / "tunix-rt" / "dev-reasoning-v2.jsonl"
    manage("import_traces", str(data), "--quiet-progress")
    manage("build_dataset", "bench-runs", "--limit", "400", "--validation-fraction", "0.1")


class Worker:
    """A Celery worker (concurrency 1) on the bench database and Redis, as in production."""

    def __enter__(self) -> Worker:
        VAR.mkdir(parents=True, exist_ok=True)
        self.log = open(VAR / "worker.log", "ab")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "celery"), "-A", "tunixrt", "worker", "-c", "1", "--loglevel=WARNING"],
            cwd=ROOT,
            env=ENV,
            stdout=self.log,
            stderr=self.log,
        )
        from tunixrt.models import WorkerHeartbeat

        deadline = time.monotonic() + 60
        while not WorkerHeartbeat.objects.filter(pid__gt=0).exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the worker did not start; see worker.log")
            time.sleep(0.2)
        time.sleep(2)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def launch(**overrides: Any) -> Any:
    from runs.launching import launch_run
    from runs.validation import validate_launch

    return launch_run(validate_launch({"dataset": DATASET, **overrides}))


def wait_terminal(run: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not run.is_terminal:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run.pk} did not finish in {limit_s} s")
        time.sleep(0.2)
        run.refresh_from_db()


def writes(n: int) -> dict[str, Any]:
    """Metric points and log lines through RunRecorder, flushed in the worker's batch size."""
    from runs.execution import LOG_FLUSH_ROWS, RunRecorder
    from runs.models import Run, RunLog, RunMetric

    run = launch(mode="dry_run")
    Run.objects.filter(pk=run.pk).update(status="completed")
    recorder = RunRecorder(run)
    started = time.perf_counter()
    for i in range(n):
        recorder.metric("train_loss", i, 1.0 / (i + 1))
        if recorder.pending >= LOG_FLUSH_ROWS:
            recorder.flush()
    recorder.flush()
    metric_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        recorder.log(f"step {i}: loss {1.0 / (i + 1):.4f}")
        if recorder.pending >= LOG_FLUSH_ROWS:
            recorder.flush()
    recorder.flush()
    log_s = time.perf_counter() - started
    assert RunMetric.objects.filter(run=run).count() == n
    assert RunLog.objects.filter(run=run).count() >= n
    return {
        "points": n,
        "metric_points_per_s": round(n / metric_s),
        "log_lines_per_s": round(n / log_s),
    }


def latency(samples: int) -> dict[str, Any]:
    """Launch → `running` (the worker's claim), one dry run at a time on an idle worker."""
    from runs.models import Run

    values = []
    with Worker():
        for _ in range(samples):
            t0 = time.perf_counter()
            run = launch(mode="dry_run")
            deadline = time.monotonic() + 30
            while Run.objects.filter(pk=run.pk, status="pending").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("not claimed within 30 s")
                time.sleep(0.002)
            values.append(time.perf_counter() - t0)
            run.refresh_from_db()
            wait_terminal(run, 120)
            time.sleep(2.0)  # idle again before the next sample
    return summary_ms(values)


def overhead(steps: int) -> dict[str, Any]:
    """Wall time of a tiny run through the app vs the same job run as a bare child process."""
    with Worker():
        warm = launch(max_steps=5)  # fills the JAX compile cache, as on a worker that ran before
        warm.refresh_from_db()
        wait_terminal(warm, 300)
        t0 = time.perf_counter()
        run = launch(max_steps=steps, eval_every_steps=50, checkpoint_every_steps=100)
        wait_terminal(run, 900)
        app_s = time.perf_counter() - t0
    assert run.status == "completed", (run.status, run.error)
    bare_dir = VAR / "bare"
    shutil.rmtree(bare_dir, ignore_errors=True)
    shutil.copytree(Path(run.output_dir) / "data", bare_dir / "data")
    job = json.loads((Path(run.output_dir) / "job.json").read_text())
    job.update(
        output_dir=str(bare_dir),
        train_file=str(bare_dir / "data" / "train.jsonl"),
        validation_file=str(bare_dir / "data" / "validation.jsonl"),
    )
    (bare_dir / "job.json").write_text(json.dumps(job))
    from runs.childproc import child_env

    t0 = time.perf_counter()
    subprocess.run(
        [PY, "-m", "runs.training.child", str(bare_dir / "job.json")],
        cwd=ROOT,
        env=child_env(),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bare_s = time.perf_counter() - t0
    return {
        "steps": steps,
        "app_wall_s": round(app_s, 2),
        "bare_wall_s": round(bare_s, 2),
        "ratio": round(app_s / bare_s, 3),
    }


def presets(steps: int) -> dict[str, Any]:
    """Steady steps/s, tokens/s and peak RSS of the training child, per preset (batch 8 × 256)."""
    from runs.execution import execute_run

    out: dict[str, Any] = {}
    for preset, n in (("tiny", steps), ("small", max(10, steps // 5))):
        run = launch(base_model=preset, max_steps=n, eval_every_steps=n, checkpoint_every_steps=n)
        from runs.models import Run

        # Executed in this process (no worker needed): the child is the same either way.
        Run.objects.filter(pk=run.pk).update(celery_task_id="bench")
        execute_run(run.pk)
        run.refresh_from_db()
        summary = run.summary
        rates = list(run.metrics.filter(name="tokens_per_s").order_by("step").values_list("value", flat=True))
        steady = statistics.median(rates[3:] or rates) if rates else float("nan")
        tokens_per_step = summary.get("tokens_per_step") or 1
        out[preset] = {
            "status": run.status,
            "steps": summary.get("steps_done"),
            "parameters": summary.get("parameters"),
            "steady_tokens_per_s": round(steady, 1),
            "steady_steps_per_s": (
                round(1 / summary["seconds_per_step"], 2) if summary.get("seconds_per_step") else None
            ),
            "train_seconds": summary.get("train_seconds"),
            "peak_rss_mb": summary.get("peak_rss_mb"),
            "loss": [summary.get("first_train_loss"), summary.get("final_train_loss")],
            "tokens_per_step_padded": tokens_per_step,
            "batch": f"{run.batch_size} x {run.max_seq_length}",
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["setup", "writes", "latency", "overhead", "presets"])
    parser.add_argument("--n", type=int, default=0)
    args = parser.parse_args()
    if args.what == "setup":
        setup()
        return
    django_setup()
    if args.what == "writes":
        result = writes(args.n or 100_000)
    elif args.what == "latency":
        result = latency(args.n or 20)
    elif args.what == "overhead":
        result = overhead(args.n or 200)
    else:
        result = presets(args.n or 60)
    log(json.dumps(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
