"""Real-sized base models through the training child: seconds per step, tokens/s, peak RSS (and MFU on a GPU).

For each model shape (real dimensions, random weights) this writes a folder in
genuine Hugging Face layout (config.json, model.safetensors under the names
`transformers` uses, a tokenizer.json trained with `tokenizers`, the family's
special tokens), a synthetic reasoning data set whose every example fills the
sequence, and a job file; then it runs `python -m runs.training.child JOB`,
exactly the process a Celery worker starts for a run, and reads its events.
No database, no worker, no network.

    .venv/bin/python -m bench.bench_real_models                      # both models, LoRA and full, CPU
    .venv/bin/python -m bench.bench_real_models --models qwen3-0.6b --methods lora --steps 5
    .venv/bin/python -m bench.bench_real_models --layers 2 --steps 3  # a quick smoke test of the harness

Results: bench/out/real_models.json (and a markdown table on stdout).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

# Real dimensions from the models' published config.json files.
SHAPES: dict[str, dict[str, Any]] = {
    "gemma3-270m": {
        "model_type": "gemma3_text",
        "architectures": ["Gemma3ForCausalLM"],
        "vocab_size": 262_144,
        "hidden_size": 640,
        "intermediate_size": 2048,
        "num_hidden_layers": 18,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "max_position_embeddings": 32_768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "sliding_window": 512,
        "query_pre_attn_scalar": 256,
        "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": True,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
    },
    "qwen3-0.6b": {
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        "vocab_size": 151_936,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 40_960,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "bos_token_id": 151_643,
        "eos_token_id": 151_645,
    },
}
SPECIALS = {
    "gemma3-270m": ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
    "qwen3-0.6b": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}
TOKENS: dict[str, dict[str, Any]] = {
    "gemma3-270m": {"bos_token": "<bos>", "eos_token": "<end_of_turn>", "pad_token": "<pad>"},
    "qwen3-0.6b": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
}
TEMPLATE = {"gemma3-270m": "gemma", "qwen3-0.6b": "chatml"}


def tensor_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    d, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    h, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    gemma = cfg["model_type"].startswith("gemma3")
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes |= {
            f"{p}input_layernorm.weight": (d,),
            f"{p}post_attention_layernorm.weight": (d,),
            f"{p}self_attn.q_proj.weight": (h * hd, d),
            f"{p}self_attn.k_proj.weight": (kv * hd, d),
            f"{p}self_attn.v_proj.weight": (kv * hd, d),
            f"{p}self_attn.o_proj.weight": (d, h * hd),
            f"{p}self_attn.q_norm.weight": (hd,),
            f"{p}self_attn.k_norm.weight": (hd,),
            f"{p}mlp.gate_proj.weight": (inter, d),
            f"{p}mlp.up_proj.weight": (inter, d),
            f"{p}mlp.down_proj.weight": (d, inter),
        }
        if gemma:
            shapes |= {f"{p}pre_feedforward_layernorm.weight": (d,), f"{p}post_feedforward_layernorm.weight": (d,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    return shapes


def write_model(name: str, folder: Path, layers: int | None) -> int:
    """The folder in Hugging Face layout with random weights; returns the parameter count."""
    import safetensors.numpy
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers import decoders as dec

    cfg = dict(SHAPES[name])
    if layers:
        cfg["num_hidden_layers"] = layers
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "complete.json"
    if marker.is_file() and json.loads(marker.read_text()) == cfg:
        return int(json.loads((folder / "params.json").read_text()))
    rng = np.random.default_rng(0)
    tensors = {}
    for key, shape in tensor_shapes(cfg).items():
        if key.endswith("norm.weight"):
            tensors[key] = np.ones(shape, np.float32) * (0.0 if name.startswith("gemma") else 1.0)
        else:
            tensors[key] = rng.standard_normal(shape, np.float32) * np.float32(0.02)
    safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    params = sum(t.size for t in tensors.values())
    del tensors
    (folder / "config.json").write_text(json.dumps({**cfg, "torch_dtype": "float32"}, indent=2))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = dec.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4000, special_tokens=SPECIALS[name], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(2000), trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({**TOKENS[name], "chat_template": "(see tunix-rt)"}))
    (folder / "params.json").write_text(str(params))
    marker.write_text(json.dumps(cfg))
    return params


def corpus(n: int) -> list[str]:
    rng = np.random.default_rng(1)
    words = ["the", "sum", "of", "two", "numbers", "is", "then", "we", "add", "carry", "digits", "reasoning"]
    return [" ".join(rng.choice(words, 60)) + f" {rng.integers(0, 10_000)}" for _ in range(n)]


def write_data(folder: Path, seq: int) -> tuple[Path, Path]:
    """Examples long enough that every row fills `seq` tokens (the step's shape is the batch × seq)."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = corpus(64)
    train = folder / "train.jsonl"
    with train.open("w") as f:
        for i, text in enumerate(texts):
            steps = "\n".join(f"{k}. {text[k * 7 :]}" for k in range(1, 6))
            example = {"prompt": f"Question {i}: {text[:200]}", "response": f"Reasoning:\n{steps}\nAnswer: {i}"}
            f.write(json.dumps(example) + "\n")
    val = folder / "validation.jsonl"
    val.write_text("")
    return train, val


def run_child(job: Path, log: Path) -> tuple[dict[str, Any], float, float]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    events: dict[str, Any] = {}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runs.training.child", str(job)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            events.setdefault(ev["event"], []).append(ev)
            if ev["event"] == "step":
                print(f"    step {ev['step']} loss {ev['loss']:.3f} at {ev['t']:.1f}s", flush=True)
            elif ev["event"] == "log":
                print(f"    {ev['text']}", flush=True)
        proc.wait()
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return events, time.perf_counter() - t, max(rss, before) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gemma3-270m,qwen3-0.6b")
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6, help="the median interval of steps 3.. is reported")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    ap.add_argument("--layers", type=int, default=0, help="override the layer count (smoke tests only)")
    ap.add_argument("--work", default=os.environ.get("BENCH_WORK", str(OUT / "real-models-work")))
    ap.add_argument("--out", default=str(OUT / "real_models.json"))
    args = ap.parse_args()

    from runs.training.job import JobSpec

    work = Path(args.work)
    train, val = write_data(work / "data", args.seq)
    results = []
    for name in args.models.split(","):
        t = time.perf_counter()
        params = write_model(name, work / "models" / (name + (f"-L{args.layers}" if args.layers else "")), args.layers)
        print(f"{name}: {params / 1e6:.1f}M parameters, folder written in {time.perf_counter() - t:.0f}s", flush=True)
        for method in args.methods.split(","):
            out_dir = work / "runs" / f"{name}-{method}-{args.dtype}-{args.device}"
            if out_dir.exists():
                import shutil

                shutil.rmtree(out_dir)
            out_dir.mkdir(parents=True)
            folder = work / "models" / (name + (f"-L{args.layers}" if args.layers else ""))
            fields = {f for f in JobSpec.__dataclass_fields__}
            extra = {k: v for k, v in (("dtype", args.dtype), ("device", args.device)) if k in fields}
            spec = JobSpec(
                run_id=0,
                mode="train",
                output_dir=str(out_dir),
                train_file=str(train),
                validation_file=str(val),
                base_model={"kind": "local", "name": name, "path": str(folder)},
                method=method,
                chat_template=TEMPLATE[name],
                max_steps=args.steps,
                batch_size=args.batch,
                max_seq_length=args.seq,
                learning_rate=1e-4,
                warmup_steps=0,
                eval_every_steps=10**6,
                checkpoint_every_steps=10**6,
                **extra,
            )
            job = out_dir / "job.json"
            spec.write(job)
            print(f"  {method} ({args.dtype}, device {args.device}): batch {args.batch} × {args.seq}", flush=True)
            events, wall, rss = run_child(job, out_dir / "child.stderr")
            done = (events.get("done") or [{}])[-1]
            summary = done.get("summary", {})
            # Steady state from the step events' own clock: the median interval after the first two
            # steps (they include XLA compilation), leaving out the last one (Tunix reports the final
            # two steps together when training ends).
            times = [e["t"] for e in events.get("step", [])]
            gaps = [b - a for a, b in itertools.pairwise(times)][1:-1]
            steady = float(np.median(gaps)) if gaps else None
            row = {
                "model": name,
                "parameters": params,
                "method": method,
                "dtype": args.dtype,
                "device": args.device,
                "batch": args.batch,
                "seq": args.seq,
                "steps": args.steps,
                "status": done.get("status", "crashed"),
                "error": done.get("error"),
                "seconds_per_step": round(steady, 3) if steady else summary.get("seconds_per_step"),
                "tokens_per_s": round(args.batch * args.seq / steady, 1) if steady else summary.get("tokens_per_s"),
                "child_seconds_per_step": summary.get("seconds_per_step"),
                "estimated_seconds_per_step": summary.get("estimated_seconds_per_step"),
                "mfu": summary.get("mfu"),
                "peak_rss_mb": summary.get("peak_rss_mb") or round(rss, 1),
                "first_loss": summary.get("first_train_loss"),
                "final_loss": summary.get("final_train_loss"),
                "wall_seconds": round(wall, 1),
                "devices": next((e["text"] for e in events.get("log", []) if e["text"].startswith("jax ")), ""),
            }
            results.append(row)
            print(f"  -> {json.dumps(row)}", flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"machine": platform.node(), "results": results}, indent=2))
    print("\n| model | method | dtype | s/step | tokens/s | peak RSS MB | MFU | status |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        mfu = f"{r['mfu'] * 100:.1f} %" if r["mfu"] else "—"
        print(
            f"| {r['model']} | {r['method']} | {r['dtype']} | {r['seconds_per_step']} | {r['tokens_per_s']} "
            f"| {r['peak_rss_mb']} | {mfu} | {r['status']} |"
        )
    return 0 if all(r["status"] == "completed" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
