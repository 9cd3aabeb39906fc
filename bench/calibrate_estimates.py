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

# A random checkpoint with Qwen3-0.6B's dimensions (vocabulary 151,936), built on the fly for GPU runs.
QWEN3_06B: dict[str, Any] = {
    "num_layers": 28,
    "embed_dim": 1024,
    "hidden_dim": 3072,
    "num_heads": 16,
    "head_dim": 128,
    "num_kv_heads": 8,
    "vocab_size": 151_936,
}
GPU_CONFIGS: list[tuple[str, str, int, int]] = [
    ("tiny", "full", 8, 128),
    ("small", "full", 8, 128),
    ("small", "full", 16, 512),
    ("small", "lora", 16, 512),
    ("qwen3-0.6b-random", "full", 4, 512),
    ("qwen3-0.6b-random", "full", 8, 1024),
    ("qwen3-0.6b-random", "lora", 8, 1024),
]
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


def build_random_qwen(directory: Path, python: str) -> None:
    """Save a randomly initialised Qwen3 of QWEN3_06B's shape in HF layout (on the CPU, once)."""
    if (directory / "model.safetensors").is_file():
        return
    code = (
        "import sys; from pathlib import Path; from flax import nnx; "
        "from tunix.models.qwen3 import model as m; from runs.training import modeling; "
        "from runs.training.tokenizers import ByteTokenizer; "
        f"cfg = m.ModelConfig(**{QWEN3_06B!r}, rope_theta=1_000_000, norm_eps=1e-6, use_tied_embedding=True); "
        "mod = m.Qwen3(cfg, rngs=nnx.Rngs(params=0)); "
        "modeling.save_hf(mod, cfg, ByteTokenizer(), Path(sys.argv[1]))"
    )
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path}
    subprocess.run([python, "-c", code, str(directory)], cwd=ROOT, env=env, check=True, timeout=900)


def measure_one(preset: str, method: str, batch: int, seq: int, steps: int, python: str) -> dict[str, Any]:
    base_model: dict[str, Any] = {"kind": "preset", "name": preset}
    if preset == "qwen3-0.6b-random":
        local = OUT.parent / "qwen3-0.6b-random"
        build_random_qwen(local, python)
        base_model = {"kind": "local", "path": str(local)}
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
            "base_model": base_model,
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
        env = {
            **os.environ,
            "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
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
        "estimated_total_mb": summary.get("total_mb"),
        "device_memory_mb": summary.get("device_memory_mb"),
        "mfu": summary.get("mfu"),
        "model_flops_per_step": summary.get("model_flops_per_step"),
        "nproc": os.cpu_count(),
    }


def measure(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for preset, method, batch, seq in GPU_CONFIGS if args.gpu else CONFIGS:
        if args.only and preset != args.only:
            continue
        try:
            row = measure_one(preset, method, batch, seq, args.steps, args.python)
        except (RuntimeError, subprocess.SubprocessError, KeyError) as exc:
            print(f"FAILED {preset} {method} {batch}x{seq}: {exc}", file=sys.stderr, flush=True)
            continue
        print(json.dumps(row), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _shape(preset: str) -> Any:
    from runs.training import estimates
    from runs.training.job import PRESETS

    if preset == "qwen3-0.6b-random":
        return estimates.ModelShape(**QWEN3_06B)
    return estimates.ModelShape.from_preset(PRESETS[preset])


def fit(args: argparse.Namespace) -> None:
    from runs.training import estimates

    rows = [json.loads(line) for line in Path(args.input).read_text().splitlines() if line.strip()]
    by_platform: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for row in rows:
        shape = _shape(row["preset"])
        flops = estimates.step_flops(
            shape,
            row["parameters"],
            row["trainable_parameters"],
            lora=row["method"] == "lora",
            batch_size=row["batch_size"],
            seq_len=row["max_seq_length"],
        )
        by_platform.setdefault(row["platform"], []).append((flops, row))
    for platform, points in by_platform.items():
        model = estimates.fit_step_time([(f, r["method"] == "lora", r["seconds_per_step"]) for f, r in points])
        print(
            f"{platform}: overhead {model.overhead:.4f} s/step, LoRA overhead {model.lora_overhead:.4f} s/step, "
            f"effective {model.flops_per_s / 1e9:.1f} GFLOP/s ({len(points)} runs)"
        )
        print(
            "| preset | method | batch × seq | GFLOP/step | measured s/step | fitted s/step | shipped s/step "
            "| est. total MB | peak RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for flops, row in points:
            shape = _shape(row["preset"])
            lora = row["method"] == "lora"
            memory = estimates.memory_estimate(
                shape,
                row["parameters"],
                row["trainable_parameters"],
                batch_size=row["batch_size"],
                seq_len=row["max_seq_length"],
                platform=platform,
            )
            print(
                f"| {row['preset']} | {row['method']} | {row['batch_size']} × {row['max_seq_length']} "
                f"| {flops / 1e9:.2f} | {row['seconds_per_step']:.3f} | {model.seconds(flops, lora):.3f} "
                f"| {estimates.seconds_per_step(flops, platform, lora):.3f} "
                f"| {memory.total_mb:.0f} | {row.get('peak_rss_mb')} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--steps", type=int, default=12)
    m.add_argument("--only", default="")
    m.add_argument("--gpu", action="store_true", help="the GPU set (a random Qwen3-0.6B-shaped model too)")
    m.add_argument("--out", default=str(OUT))
    m.add_argument("--python", default=sys.executable)
    f = sub.add_parser("fit")
    f.add_argument("--input", default=str(OUT))
    args = parser.parse_args()
    measure(args) if args.command == "measure" else fit(args)


if __name__ == "__main__":
    main()
