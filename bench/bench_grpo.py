"""GRPO on the tiny preset through the child: seconds per step, peak RSS, and the reward against its control.

The same two child processes a GRPO run chains, each started as the worker
starts one (`python -m MODULE JOB.json`, JSON events on stdout): a brief SFT
warm start (`runs.training.child`, two-digit sums in the export's
`Reasoning:` / `Answer:` shape), then GRPO from its final model
(`runs.training.grpo`, RLCluster + GRPOLearner, vanilla rollout) on the same
kind of prompts, at the chosen learning rate and at 0 (the control: the same
prompts and rollout seeds, no learning). No database, no worker, no network.
The recipe is the one the training test uses (runs/tests/grpo_support.py).

    .venv/bin/python -m bench.bench_grpo                     # full fine-tune and LoRA, 60 steps, with controls
    .venv/bin/python -m bench.bench_grpo --methods full --steps 100 --no-control

Seconds per step: the median interval between step ends after the first two
(those include XLA compilation); peak RSS: the GRPO child's own. Results:
bench/out/grpo.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from runs.tests import grpo_support as gs  # noqa: E402


def one_run(folder: Path, base: Path, prompts: Path, cache: Path, **overrides: Any) -> dict[str, Any]:
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    code, events = gs.run_child("runs.training.grpo", gs.grpo_job(folder, base, prompts, **overrides), cache)
    wall = time.perf_counter() - t
    done = events[-1]
    assert code == 0 and done.get("status") == "completed", done
    ends = [e["t"] for e in events if e["event"] == "step"]
    first_step = next(e["t"] for e in events if e["event"] == "step") - next(
        e["t"] for e in events if e["event"] == "started"
    )
    rewards = gs.metrics(events, "reward_mean")
    curve = [rewards[s] for s in sorted(rewards)]
    half = len(curve) // 2
    summary = done["summary"]
    started = next(e for e in events if e["event"] == "started")
    return {
        "steps": summary["steps_done"],
        "seconds_per_step": round(float(np.median(np.diff(ends)[2:])), 4),
        "first_step_seconds": round(first_step, 2),
        "peak_rss_mb": summary["peak_rss_mb"],
        "estimated_seconds_per_step": summary["estimated_seconds_per_step"],
        "estimated_memory_mb": summary["estimated_memory_mb"],
        "child_wall_seconds": round(wall, 1),
        "trainable_parameters": started["trainable_parameters"],
        "rollouts_per_step": started["rollouts_per_step"],
        "reward_first_half": round(float(np.mean(curve[:half])), 4),
        "reward_second_half": round(float(np.mean(curve[half:])), 4),
        "reward_windows": [round(float(np.mean(curve[i : i + 10])), 3) for i in range(0, len(curve), 10)],
        "kl_max": round(max(gs.metrics(events, "kl").values()), 4),
        "completion_length_mean": round(float(np.mean(list(gs.metrics(events, "completion_length_mean").values()))), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="full,lora", help="full, lora or both")
    parser.add_argument("--steps", type=int, default=gs.GRPO["max_steps"])
    parser.add_argument("--no-control", action="store_true", help="skip the learning-rate-0 runs")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tunixrt-bench-grpo")
    args = parser.parse_args()
    work = args.work.resolve()
    cache = work / "jax-cache"
    t = time.perf_counter()
    base = gs.warm_start(work / "sft", cache)
    warm_seconds = round(time.perf_counter() - t, 1)
    prompts = gs.prompt_file(work / "prompts.jsonl")
    # LoRA trains 1/10 of the parameters: a higher rate (the notes' 1e-3 for LoRA).
    rates = {"full": gs.GRPO["learning_rate"], "lora": 1e-3}
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "recipe": {**gs.GRPO, "max_steps": args.steps, "sft_warm_start": gs.SFT},
        "warm_start_seconds": warm_seconds,
        "runs": {},
    }
    for method in args.methods.split(","):
        extra: dict[str, Any] = {"max_steps": args.steps, "method": method, "lora_rank": 8, "lora_alpha": 16.0}
        runs = {"trained": one_run(work / method, base, prompts, cache, learning_rate=rates[method], **extra)}
        if not args.no_control:
            runs["control"] = one_run(work / f"{method}-lr0", base, prompts, cache, learning_rate=0.0, **extra)
        results["runs"][method] = {"learning_rate": rates[method], **runs}
    OUT.mkdir(exist_ok=True)
    (OUT / "grpo.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print()
    print(
        "| method | lr | s/step (estimated) | first step | peak RSS (estimated) "
        "| reward 1st → 2nd half | control 2nd half | KL max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, r in results["runs"].items():
        tr, ctl = r["trained"], r.get("control")
        print(
            f"| {method} | {r['learning_rate']:g} | {tr['seconds_per_step']} ({tr['estimated_seconds_per_step']}) "
            f"| {tr['first_step_seconds']} s | {tr['peak_rss_mb']:.0f} MB ({tr['estimated_memory_mb']:.0f} MB) "
            f"| {tr['reward_first_half']} → {tr['reward_second_half']} "
            f"| {ctl['reward_second_half'] if ctl else '—'} | {tr['kl_max']} |"
        )


if __name__ == "__main__":
    main()
