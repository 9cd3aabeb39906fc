"""Helpers for the run tests: a learnable dataset, run rows, fast settings, waiting on status."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from runs.choices import LogStream, RunStatus
from runs.execution import Supervisor
from runs.models import Run, RunLog, RunMetric
from runs.validation import validate_launch
from traces.datasets.building import build_dataset, validate_build_spec
from traces.models import Dataset
from traces.tests.factories import TraceFactory

# Every training test uses the same shapes (batch 8 × 128 tokens, tiny preset),
# so the shared JAX compile cache serves all of them after the first.
FAST: dict[str, Any] = {
    "base_model": "tiny",
    "max_steps": 20,
    "batch_size": 8,
    "max_seq_length": 128,
    "learning_rate": 0.01,
    "warmup_steps": 2,
    "eval_every_steps": 10,
    "checkpoint_every_steps": 10,
    "seed": 0,
    "timeout_seconds": 300,
}
# Runs that must still be training when a test stops them; same optimizer as FAST but a
# longer schedule (one more compile, shared by every such test).
LONG: dict[str, Any] = {**FAST, "max_steps": 2000, "eval_every_steps": 1000, "checkpoint_every_steps": 1000}
TINY_PARAMETERS = 328_832
RANDOM_INIT_LOSS = 5.5  # ln(259) ≈ 5.56: a random byte model's loss


def arithmetic_trace(a: int, b: int) -> Any:
    return TraceFactory(
        prompt=f"What is {a} + {b}?",
        steps=[{"i": 0, "type": "compute", "content": f"{a} + {b} = {a + b}"}],
        final_answer=str(a + b),
        meta={"source": "arith", "tags": ["sum"]},
    )


def build_arithmetic_dataset(
    name: str = "arith", count: int = 32, validation_fraction: float = 0.25, first: int = 0
) -> Dataset:
    """A ready dataset of `count` two-digit sums (a quarter held out); `first` picks other sums."""
    for n in range(first, first + count):
        arithmetic_trace(10 + (n * 7) % 80, 11 + (n * 13) % 85)
    spec = validate_build_spec(
        {"name": name, "strategy": "random", "seed": 1, "validation_fraction": validation_fraction}
    )
    return build_dataset(spec)


def make_run(dataset: Dataset, created_by: Any = None, **overrides: Any) -> Run:
    """A pending run row as launch_run saves it, without queueing it (tests execute it directly)."""
    values = validate_launch({"dataset": dataset.key, **FAST, **overrides})
    run = Run.objects.create(**values, created_by=created_by)
    run.assign_folder()
    run.save(update_fields=["output_dir", "folder_token"])
    return run


def output(run: Run) -> Path:
    return Path(run.output_dir)


def log_text(run: Run) -> str:
    return "\n".join(RunLog.objects.filter(run=run).order_by("seq").values_list("text", flat=True))


def child_pid(run: Run) -> int | None:
    """The training child's pid, from the supervisor's "training child started (pid N)" line."""
    for text in RunLog.objects.filter(run=run, text__startswith="training child started").values_list(
        "text", flat=True
    ):
        match = re.search(r"pid (\d+)", text)
        if match:
            return int(match.group(1))
    return None


def wait_for(run_id: int, predicate: Any, timeout: float, what: str) -> Run:
    """Poll the row (the source of truth) until `predicate(run)` holds."""
    deadline = time.monotonic() + timeout
    last: Run | None = None
    while time.monotonic() < deadline:
        try:
            last = Run.objects.get(pk=run_id)
        except OperationalError:  # SQLite: a writer holds the table for a moment
            last = None
        if last is not None and predicate(last):
            return last
        time.sleep(0.1)
    state = "gone" if last is None else f"{last.status}: {last.error} {log_text(last)[-2000:]}"
    raise AssertionError(f"run {run_id}: {what} did not happen within {timeout} s ({state})")


def record_history(run: Run, steps: int = 20, logs: int = 5) -> None:
    """Metric points and log lines as a finished run leaves them (no training)."""
    points = []
    for step in range(1, steps + 1):
        points.append(RunMetric(run=run, name="train_loss", step=step, value=5.5 - 0.1 * step))
        points.append(RunMetric(run=run, name="learning_rate", step=step, value=0.01))
        if step % 5 == 0:
            points.append(RunMetric(run=run, name="eval_loss", step=step, value=5.6 - 0.1 * step))
    RunMetric.objects.bulk_create(points)
    RunLog.objects.bulk_create([RunLog(run=run, seq=n, stream=LogStream.STDOUT, text=f"line {n}") for n in range(logs)])


def write_outputs(run: Run) -> dict[str, bytes]:
    """Files where a finished run keeps them; returns {relative path: bytes}."""
    files = {
        "final/model.safetensors": b"\x00weights\x01" * 10,
        "final/config.json": b'{"model_type": "qwen3"}',
        "checkpoints/10/model/data.bin": b"checkpoint bytes",
        "data/train.jsonl": b'{"prompt": "p", "response": "r"}\n',
        "job.json": b"{}",
    }
    for rel, data in files.items():
        path = output(run) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def finished_run(dataset: Dataset, status: str = RunStatus.COMPLETED, files: bool = True, **overrides: Any) -> Run:
    """A run as the worker leaves it when it ends: status, times, summary, metrics, logs, files."""
    run = make_run(dataset, **overrides)
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=status,
        started_at=now - timedelta(seconds=30),
        finished_at=now,
        heartbeat_at=now,
        exit_code=0 if status == RunStatus.COMPLETED else 1,
        error="" if status == RunStatus.COMPLETED else f"ended {status}",
        summary={
            "steps_done": 20,
            "first_train_loss": 5.4,
            "final_train_loss": 3.5,
            "best_eval_loss": 3.6,
            "parameters": TINY_PARAMETERS,
            "tokens_per_s": 5000.0,
        },
    )
    run.refresh_from_db()
    record_history(run)
    if files:
        write_outputs(run)
    return run


class StepTrigger:
    """Calls `action(supervisor)` once, inside the worker's loop, when the child reports step >= `step`.

    The supervisor runs in the test's thread, so what the action does (cancel the
    run, kill the child) happens at a known step without a second thread or
    database connection; the worker then sees it exactly as it would see another
    process's change.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, step: int, action: Callable[[Supervisor], None]) -> None:
        self.step = step
        self.action = action
        self.fired_at: float | None = None
        self.fired_step: int | None = None
        original = Supervisor.stdout_line
        trigger = self

        def stdout_line(supervisor: Supervisor, raw: bytes) -> None:
            original(supervisor, raw)
            if trigger.fired_at is not None or b'"event": "step"' not in raw:
                return
            step_now = int(json.loads(raw)["step"])
            if step_now >= trigger.step:
                trigger.fired_at = time.monotonic()
                trigger.fired_step = step_now
                trigger.action(supervisor)

        monkeypatch.setattr(Supervisor, "stdout_line", stdout_line)


def kill_child(supervisor: Supervisor) -> None:
    """SIGKILL the training child, found by the pid the worker logged."""
    supervisor.recorder.flush()
    pid = child_pid(supervisor.run)
    assert pid is not None, "the worker logs the child's pid"
    os.killpg(pid, signal.SIGKILL)


def kill_child_once_saved(step: int) -> Callable[[Supervisor], None]:
    """Kill the child once orbax has committed the checkpoint of `step` (saves are asynchronous)."""

    def action(supervisor: Supervisor) -> None:
        # Orbax writes into a temporary folder and renames it to the step number when done.
        committed = output(supervisor.run) / "checkpoints" / str(step)
        deadline = time.monotonic() + 30
        while not committed.is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert committed.is_dir(), f"no checkpoint at step {step}"
        kill_child(supervisor)

    return action
