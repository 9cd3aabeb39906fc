"""Measure real training steps and fit the step-time model of runs.training.estimates.

    .venv/bin/python -m bench.calibrate_estimates measure [--steps 12] [--only tiny]
    .venv/bin/python -m bench.calibrate_estimates fit

`measure` runs the training child (`python -m runs.training.child`, no Django,
no database) on a synthetic arithmetic data set for each configuration
(preset × full/LoRA × batch × sequence length) and appends what it reported
(seconds per step, tokens/s, peak RSS, parameter counts, platform) to
bench/out/calibrate_estimates.jsonl. `fit` reads those lines, fits
`seconds = overhead + FLOPs / effective FLOP/s` per platform by least squares,
and prints the constants and a measured-vs-estimated table (time and memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "calibrate_estimates.jsonl"

CONFIGS: list[tuple[str, str, int, int]] = [
    ("tiny", "full", 4, 64),
    ("tiny", "full", 8, 128),
    ("tiny", "full", 16, 256),
    ("tiny", "lora", 8, 128),
    ("tiny", "lora", 16, 256),
    ("small", "full", 4, 64),
    ("small", "full", 8, 128),
    ("small", "full", 8, 256),
    ("small", "lora", 8, 128),
]


def _examples(count: int) -> list[dict[str, str]]:
    rows = []
    for n in range(count):
        a, b = 10 + (n * 7) % 80, 11 + (n * 13) % 85
        # Long enough that every sequence length is filled (the pad share changes nothing in the cost).
        pad = " ".join(f"{a}+{b}={a + b}" for _ in range(30))
        rows.append({"prompt": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}. {pad}"})
    return rows


def measure_one(preset: str, method: str, batch: int, seq: int, steps: int, python: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="calib-") as tmp:
        folder = Path(tmp)
        for split, count in (("train", 64), ("validation", 8)):
            with (folder / f"{split}.jsonl").open("w") as f:
                for row in _examples(count):
                    f.write(json.dumps(row) + "\n")
        job = {
            "run_id": 0,
            "mode": "train",
            "output_dir": str(folder / "out"),
            "train_file": str(folder / "train.jsonl"),
            "validation_file": str(folder / "validation.jsonl"),
            "base_model": {"kind": "preset", "name": preset},
            "method": method,
            "max_steps": steps,
            "batch_size": batch,
            "max_seq_length": seq,
            "eval_every_steps": 1_000_000,
            "checkpoint_every_steps": 1_000_000,
            "warmup_steps": 1,
            "chat_template": "plain",
        }
        (folder / "out").mkdir()
        (folder / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [python, "-m", "runs.training.child", str(folder / "job.json")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    model: dict[str, Any] = next((e for e in events if e["event"] == "model"), {})
    done: dict[str, Any] = next((e for e in events if e["event"] == "done"), {})
    summary = done.get("summary") or {}
    if done.get("status") != "completed":
        raise RuntimeError(f"{preset} {method} {batch}x{seq}: {done.get('error')} {proc.stderr[-2000:]}")
    return {
        "preset": preset,
        "method": method,
        "batch_size": batch,
        "max_seq_length": seq,
        "steps": steps,
        "platform": summary.get("platform") or model.get("platform") or env["JAX_PLATFORMS"],
        "device_kind": summary.get("device_kind", ""),
        "parameters": model["parameters"],
        "trainable_parameters": model["trainable_parameters"],
        "seconds_per_step": summary["seconds_per_step"],
        "tokens_per_s": summary["tokens_per_s"],
        "peak_rss_mb": summary.get("peak_rss_mb"),
        "peak_device_mb": summary.get("peak_device_mb"),
        "nproc": os.cpu_count(),
    }


def measure(args: argparse.Namespace) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    for preset, method, batch, seq in CONFIGS:
        if args.only and preset != args.only:
            continue
        row = measure_one(preset, method, batch, seq, args.steps, args.python)
        print(json.dumps(row), flush=True)
        with OUT.open("a") as f:
            f.write(json.dumps(row) + "\n")


def fit(args: argparse.Namespace) -> None:
    from runs.training import estimates
    from runs.training.job import PRESETS

    rows = [json.loads(line) for line in Path(args.input).read_text().splitlines() if line.strip()]
    by_platform: dict[str, list[tuple[float, float, dict[str, Any]]]] = {}
    for row in rows:
        shape = estimates.ModelShape.from_preset(PRESETS[row["preset"]])
        flops = estimates.step_flops(
            shape,
            row["parameters"],
            row["trainable_parameters"],
            lora=row["method"] == "lora",
            batch_size=row["batch_size"],
            seq_len=row["max_seq_length"],
        )
        by_platform.setdefault(row["platform"], []).append((flops, row["seconds_per_step"], row))
    for platform, points in by_platform.items():
        overhead, rate = estimates.fit_step_time([(f, s) for f, s, _ in points])
        print(f"{platform}: overhead {overhead:.4f} s/step, effective {rate / 1e9:.1f} GFLOP/s ({len(points)} runs)")
        print("| preset | method | batch × seq | GFLOP/step | measured s/step | fitted s/step | default s/step "
              "| est. total MB | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for flops, seconds, row in points:
            shape = estimates.ModelShape.from_preset(PRESETS[row["preset"]])
            memory = estimates.memory_estimate(
                shape,
                row["parameters"],
                row["trainable_parameters"],
                batch_size=row["batch_size"],
                seq_len=row["max_seq_length"],
                platform=platform,
            )
            default = estimates.seconds_per_step(flops, platform)
            print(
                f"| {row['preset']} | {row['method']} | {row['batch_size']} × {row['max_seq_length']} "
                f"| {flops / 1e9:.2f} | {seconds:.3f} | {overhead + flops / rate:.3f} | {default:.3f} "
                f"| {memory.total_mb:.0f} | {row.get('peak_rss_mb')} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--steps", type=int, default=12)
    m.add_argument("--only", default="")
    m.add_argument("--python", default=sys.executable)
    f = sub.add_parser("fit")
    f.add_argument("--input", default=str(OUT))
    args = parser.parse_args()
    measure(args) if args.command == "measure" else fit(args)


if __name__ == "__main__":
    main()
