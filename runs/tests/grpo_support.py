"""Driving real GRPO runs for tests and benchmarks: an SFT warm start, then GRPO, each a child process.

Both steps run the way the worker runs a child: a job file in the run folder,
`python -m <module> JOB.json`, JSON events read from stdout. The warm start is
the SFT child itself (runs.training.child) on two-digit sums in the shape the
dataset export teaches; GRPO starts from its final model (a local base, as a
SFT → GRPO chain does) on the same kind of prompts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runs.training.job import JobSpec

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "gemma"
# The warm start: enough SFT for the tiny preset to write the format about 40 % of the time (the format
# reward's mean), leaving GRPO room to improve on it.
SFT: dict[str, Any] = {
    "max_steps": 100,
    "batch_size": 8,
    "max_seq_length": 128,
    "learning_rate": 0.01,
    "warmup_steps": 2,
    "eval_every_steps": 1000,
    "checkpoint_every_steps": 1000,
    "seed": 0,
}
# The measured control (docs/benchmarks.md): 60 steps of 4 prompts × 8 generations.
GRPO: dict[str, Any] = {
    "max_steps": 60,
    "batch_size": 4,
    "num_generations": 8,
    "temperature": 1.0,
    "top_p": 1.0,
    "max_tokens_to_generate": 48,
    "grpo_beta": 0.04,
    "epsilon": 0.2,
    "kl_mode": "kl",
    "learning_rate": 2e-4,
    "max_seq_length": 128,
    "checkpoint_every_steps": 20,
    "seed": 0,
    "rewards": {"correctness": 1.0, "format": 1.0},
}


def sums(count: int, first: int = 0) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: the run tests' two-digit sums."""
    out = []
    for n in range(first, first + count):
        a, b = 10 + (n * 7) % 80, 11 + (n * 13) % 85
        out.append((f"What is {a} + {b}?", str(a + b)))
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def child_env(jax_cache: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    if jax_cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(jax_cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def start(module: str, job_file: Path, jax_cache: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module, str(job_file)],
        cwd=REPO,
        env=child_env(jax_cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def events_of(proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    events = [json.loads(line) for line in proc.stdout if line.strip()]
    proc.wait(timeout=60)
    return events


def run_child(module: str, job_file: Path, jax_cache: Path | None = None) -> tuple[int, list[dict[str, Any]]]:
    proc = start(module, job_file, jax_cache)
    events = events_of(proc)
    return int(proc.returncode), events


def warm_start(folder: Path, jax_cache: Path | None = None, steps: int | None = None) -> Path:
    """SFT the tiny preset on sums with the SFT child; returns its final model folder."""
    final = folder / "final"
    if (final / "model.safetensors").is_file():
        return final
    # The dataset export's training shape (traces.datasets.exporting.reasoning_text; the reward tests check
    # that the format reward gives it full marks).
    train = [{"prompt": p, "response": f"Reasoning:\n1. {p[8:-1]} = {a}\nAnswer: {a}"} for p, a in sums(64)]
    spec = JobSpec(
        run_id=0,
        mode="train",
        output_dir=str(folder),
        train_file=str(write_jsonl(folder / "train.jsonl", train)),
        validation_file=str(folder / "validation.jsonl"),
        base_model={"kind": "preset", "name": "tiny"},
        method="full",
        chat_template=TEMPLATE,
        device="cpu",
        **{**SFT, **({"max_steps": steps} if steps else {})},
    )
    spec.write(folder / "job.json")
    code, events = run_child("runs.training.child", folder / "job.json", jax_cache)
    done = events[-1]
    assert code == 0 and done["event"] == "done" and done["status"] == "completed", done
    return final


def grpo_job(folder: Path, base: Path | None, prompts: Path, **overrides: Any) -> Path:
    """A GRPO job file in `folder` (the fields train_grpo reads) from the local model `base`, or the tiny preset."""
    folder.mkdir(parents=True, exist_ok=True)
    job = {
        "run_id": 0,
        "output_dir": str(folder),
        "train_file": str(prompts),
        "base_model": {"kind": "preset", "name": "tiny"} if base is None else {"kind": "local", "path": str(base)},
        "chat_template": TEMPLATE,
        "device": "cpu",
        "dtype": "float32",
        **GRPO,
        **overrides,
    }
    path = folder / "job.json"
    path.write_text(json.dumps(job, indent=2))
    return path


def prompt_file(path: Path, count: int = 32, first: int = 0) -> Path:
    return write_jsonl(path, [{"prompt": p, "answer": a} for p, a in sums(count, first)])


def metrics(events: list[dict[str, Any]], name: str) -> dict[int, float]:
    return {e["step"]: e["value"] for e in events if e["event"] == "metric" and e["name"] == name}


def stop_at_step(proc: subprocess.Popen[bytes], step: int, sig: int = signal.SIGTERM) -> list[dict[str, Any]]:
    """Read events until `step` is reported, send `sig`, then read the rest (the process ends)."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    sent_at = None
    for line in proc.stdout:
        if not line.strip():
            continue
        event = json.loads(line)
        events.append(event)
        if sent_at is None and event["event"] == "step" and event["step"] >= step:
            proc.send_signal(sig)
            sent_at = time.monotonic()
    proc.wait(timeout=60)
    return events
