"""Preference training speed: seconds per step and peak RSS of DPO and ORPO runs (tiny preset, CPU).

    .venv/bin/python bench/bench_preference.py                 # dpo, dpo-lora, orpo, 100 steps each
    .venv/bin/python bench/bench_preference.py --steps 60 --only dpo orpo

Runs the training child exactly as the worker does (`python -m runs.training.child
JOB.json`, one process per run) on the toy format preference of the DPO notes (chosen:
numbered steps and the right answer; rejected: a bare wrong answer), 256 training and 32
validation pairs, batch 8, prompts ≤ 112 and answers ≤ 64 tokens. No database: the child
never touches one. Seconds per step is the child's own steady figure (median step interval
after the first two, which include XLA compilation); peak RSS is the child's. Results go to
bench/out/preference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs.training import templates  # noqa: E402

PY = sys.executable
VARIANTS: dict[str, dict[str, Any]] = {
    "sft": {"objective": "sft", "method": "full", "learning_rate": 0.003},
    "dpo": {"objective": "dpo", "method": "full", "learning_rate": 0.001},
    "dpo-lora": {"objective": "dpo", "method": "lora", "learning_rate": 0.003},
    "orpo": {"objective": "orpo", "method": "full", "learning_rate": 0.001},
}


def pair(rng: random.Random) -> dict[str, str]:
    a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
    total, left = a + b, a + b - c
    question = f"Q: {a} apples, {b} more, {c} eaten. How many?"
    return {
        "prompt": templates.render("gemma", question)[0],
        "chosen": f"Reasoning:\n1. {a}+{b}={total}\n2. {total}-{c}={left}\nAnswer: {left}",
        "rejected": f"Answer: {left + rng.choice([-2, -1, 1, 2])}",
        # For the SFT baseline: the same questions, the chosen answers.
        "question": question,
    }


def write_data(folder: Path) -> dict[str, dict[str, Path]]:
    rng = random.Random(0)
    files: dict[str, dict[str, Path]] = {"pairs": {}, "examples": {}}
    for split, count in (("train", 256), ("validation", 32)):
        rows = [pair(rng) for _ in range(count)]
        files["pairs"][split] = folder / f"pairs-{split}.jsonl"
        files["pairs"][split].write_text(
            "".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for r in rows)
        )
        files["examples"][split] = folder / f"examples-{split}.jsonl"
        files["examples"][split].write_text(
            "".join(json.dumps({"prompt": r["question"], "response": r["chosen"]}) + "\n" for r in rows)
        )
    return files


def run_child(name: str, steps: int, folder: Path, files: dict[str, dict[str, Path]]) -> dict[str, Any]:
    variant = VARIANTS[name]
    data = files["examples" if variant["objective"] == "sft" else "pairs"]
    out = folder / name
    out.mkdir()
    job = {
        "run_id": 0,
        "mode": "train",
        "output_dir": str(out),
        "train_file": str(data["train"]),
        "validation_file": str(data["validation"]),
        "base_model": {"kind": "preset", "name": "tiny"},
        "chat_template": "gemma",
        "device": "cpu",
        "max_steps": steps,
        "batch_size": 8,
        "warmup_steps": 5,
        "eval_every_steps": steps,
        "checkpoint_every_steps": steps,
        "max_prompt_length": 112,
        "max_response_length": 64,
        "max_seq_length": 176,  # SFT: the same tokens as one prompt + answer
        **variant,
    }
    (out / "job.json").write_text(json.dumps(job))
    started = time.perf_counter()
    proc = subprocess.run(
        [PY, "-m", "runs.training.child", str(out / "job.json")],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(b"{")]
    done: dict[str, Any] = next((e for e in events if e["event"] == "done"), {})
    summary = done.get("summary") or {}
    metrics: dict[str, list[float]] = {}
    for e in events:
        if e["event"] == "metric":
            metrics.setdefault(e["name"], []).append(e["value"])

    def window(name: str, last: bool) -> float | None:
        values = metrics.get(name) or []
        part = values[-10:] if last else values[:10]
        return round(sum(part) / len(part), 3) if part else None

    evals = metrics.get("eval_reward_accuracy") or []
    return {
        "status": done.get("status"),
        "error": done.get("error"),
        "steps": summary.get("steps_done"),
        "seconds_per_step": summary.get("seconds_per_step"),
        "estimated_seconds_per_step": summary.get("estimated_seconds_per_step"),
        "tokens_per_s": summary.get("tokens_per_s"),
        "peak_rss_mb": summary.get("peak_rss_mb"),
        "estimated_memory_mb": summary.get("estimated_memory_mb"),
        "train_seconds": summary.get("train_seconds"),
        "wall_seconds": round(wall, 1),
        "loss_first10": window("train_loss", False),
        "loss_last10": window("train_loss", True),
        "accuracy_first10": window("train_reward_accuracy", False),
        "accuracy_last10": window("train_reward_accuracy", True),
        "margin_first10": window("train_reward_margin", False),
        "margin_last10": window("train_reward_margin", True),
        "eval_accuracy": evals[-1] if evals else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=["sft", "dpo", "dpo-lora", "orpo"])
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tunixrt-bench-preference-") as tmp:
        folder = Path(tmp)
        files = write_data(folder)
        for name in args.only:
            results[name] = run_child(name, args.steps, folder, files)
            print(name, json.dumps(results[name]), flush=True)
    results["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    target = ROOT / "bench" / "out"
    target.mkdir(exist_ok=True)
    (target / "preference.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
