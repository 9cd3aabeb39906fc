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
    .venv/bin/python -m bench.bench_real_models --models gemma3-270m --methods lora \
        --objectives dpo,orpo,grpo --batch 2 --steps 5               # preference and RL training, one at a time

`--objectives` picks what each child trains: `sft` (examples that fill `--seq` tokens), `dpo` and
`orpo` (`--batch` pairs whose prompts fill `--prompt-len` and whose chosen and rejected answers
fill `--response-len` tokens) or `grpo` (`--batch` prompts of `--prompt-len` tokens, each
answered `--generations` times with up to `--gen-tokens` new tokens, rewarded by the default
reward spec). The configurations run one after another, never side by side; a child whose
resident memory passes `--rss-limit-gb` is killed and reported as stopped at the limit (the
machine's other work keeps its memory).

Results: bench/out/real_models.json (and a markdown table on stdout).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
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


def write_pairs(folder: Path, count: int = 64) -> Path:
    """Preference pairs long enough to fill any short prompt and answer limit (the child cuts them)."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = corpus(count)
    pairs = folder / "pairs.jsonl"
    with pairs.open("w") as f:
        for i, text in enumerate(texts):
            steps = "\n".join(f"{k}. {text[k * 7 :]}" for k in range(1, 6))
            pair = {
                "prompt": f"Question {i}: {text[:300]}",
                "chosen": f"Reasoning:\n{steps}\nAnswer: {i}",
                "rejected": f"Answer: {i + 1}. {text[::-1]} {text}",
            }
            f.write(json.dumps(pair) + "\n")
    return pairs


def write_prompts(folder: Path, count: int = 64) -> Path:
    """GRPO prompts (a long question, then a sum to answer) with the answer the correctness reward checks."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = corpus(count)
    prompts = folder / "prompts.jsonl"
    with prompts.open("w") as f:
        for i, text in enumerate(texts):
            a, b = 10 + i, 20 + 3 * i
            f.write(json.dumps({"prompt": f"{text[:300]} What is {a} + {b}?", "answer": str(a + b)}) + "\n")
    return prompts


def rss_mb(pid: int) -> float:
    """The process's resident set now (VmRSS), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(job: Path, log: Path, rss_limit_mb: float = 0.0) -> tuple[dict[str, Any], float, float, bool]:
    """Run the training child on `job`; (events by kind, wall seconds, peak RSS MB, stopped at the RSS limit).

    With `rss_limit_mb` a watcher samples the child's RSS every 0.2 s and kills it once it passes the limit.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    events: dict[str, Any] = {}
    watched = {"peak": 0.0, "killed": False}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runs.training.child", str(job)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
        )

        def watch() -> None:
            while proc.poll() is None:
                now = rss_mb(proc.pid)
                watched["peak"] = max(watched["peak"], now)
                if rss_limit_mb and now > rss_limit_mb:
                    watched["killed"] = True
                    print(f"    RSS {now:.0f} MB passed the {rss_limit_mb:.0f} MB limit: killing the child", flush=True)
                    proc.send_signal(signal.SIGKILL)
                    return
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            events.setdefault(ev["event"], []).append(ev)
            if ev["event"] == "step":
                loss = ev.get("loss")
                shown = f"loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
                print(f"    step {ev['step']} {shown} at {ev['t']:.1f}s", flush=True)
            elif ev["event"] == "log":
                print(f"    {ev['text']}", flush=True)
        proc.wait()
        watcher.join(timeout=5)
    rss = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return events, time.perf_counter() - t, max(rss, watched["peak"]), bool(watched["killed"])


def objective_fields(
    objective: str, args: argparse.Namespace, train: Path, pairs: Path, prompts: Path
) -> dict[str, Any]:
    """The job fields one objective adds (its data file, lengths and learning rate)."""
    if objective == "sft":
        return {"train_file": str(train), "max_seq_length": args.seq, "learning_rate": 1e-4}
    if objective in ("dpo", "orpo"):
        return {
            "objective": objective,
            "train_file": str(pairs),
            "max_prompt_length": args.prompt_len,
            "max_response_length": args.response_len,
            "learning_rate": 1e-5,
        }
    return {
        "objective": "grpo",
        "train_file": str(prompts),
        "max_prompt_length": args.prompt_len,
        "num_generations": args.generations,
        "max_tokens_to_generate": args.gen_tokens,
        "learning_rate": 1e-5,
    }


def step_tokens(objective: str, args: argparse.Namespace) -> int:
    """Token positions one step works on: SFT batch × seq; DPO/ORPO both answers of each pair (prompt
    + answer each); GRPO every generation of each prompt (prompt + new tokens)."""
    if objective == "sft":
        return int(args.batch * args.seq)
    if objective in ("dpo", "orpo"):
        return int(args.batch * 2 * (args.prompt_len + args.response_len))
    return int(args.batch * args.generations * (args.prompt_len + args.gen_tokens))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gemma3-270m,qwen3-0.6b")
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--objectives", default="sft", help="sft, dpo, orpo and/or grpo (comma-separated)")
    ap.add_argument("--prompt-len", type=int, default=64, help="DPO/ORPO/GRPO: prompt tokens kept")
    ap.add_argument("--response-len", type=int, default=64, help="DPO/ORPO: tokens per chosen or rejected answer")
    ap.add_argument("--generations", type=int, default=2, help="GRPO: completions per prompt")
    ap.add_argument("--gen-tokens", type=int, default=16, help="GRPO: new tokens per completion")
    ap.add_argument(
        "--rss-limit-gb", type=float, default=17.0, help="kill a child whose RSS passes this (0: no limit)"
    )
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
    pairs, prompts = write_pairs(work / "data"), write_prompts(work / "data")
    objectives = args.objectives.split(",")
    unknown = set(objectives) - {"sft", "dpo", "orpo", "grpo"}
    if unknown:
        ap.error(f"--objectives: unknown {', '.join(sorted(unknown))} (sft, dpo, orpo, grpo)")
    results = []
    for name in args.models.split(","):
        t = time.perf_counter()
        params = write_model(name, work / "models" / (name + (f"-L{args.layers}" if args.layers else "")), args.layers)
        print(f"{name}: {params / 1e6:.1f}M parameters, folder written in {time.perf_counter() - t:.0f}s", flush=True)
        for objective, method in itertools.product(objectives, args.methods.split(",")):
            out_dir = work / "runs" / f"{name}-{objective}-{method}-{args.dtype}-{args.device}"
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
                validation_file=str(val),
                base_model={"kind": "local", "name": name, "path": str(folder)},
                method=method,
                chat_template=TEMPLATE[name],
                max_steps=args.steps,
                batch_size=args.batch,
                warmup_steps=0,
                eval_every_steps=10**6,
                checkpoint_every_steps=10**6,
                **objective_fields(objective, args, train, pairs, prompts),
                **extra,
            )
            job = out_dir / "job.json"
            spec.write(job)
            tokens = step_tokens(objective, args)
            print(f"  {objective} {method} ({args.dtype}, device {args.device}): {tokens} tokens per step", flush=True)
            events, wall, rss, killed = run_child(job, out_dir / "child.stderr", args.rss_limit_gb * 1024)
            done = (events.get("done") or [{}])[-1]
            summary = done.get("summary", {})
            # Steady state from the step events' own clock: the median interval after the first two
            # steps (they include XLA compilation), leaving out the last one (Tunix reports the final
            # two steps together when training ends).
            times = [e["t"] for e in events.get("step", [])]
            gaps = [b - a for a, b in itertools.pairwise(times)][1:-1]
            steady = float(np.median(gaps)) if gaps else None
            status = f"stopped at the {args.rss_limit_gb:g} GB RSS limit" if killed else done.get("status", "crashed")
            row = {
                "model": name,
                "parameters": params,
                "objective": objective,
                "method": method,
                "dtype": args.dtype,
                "device": args.device,
                "batch": args.batch,
                "seq": args.seq if objective == "sft" else None,
                "prompt_len": args.prompt_len if objective != "sft" else None,
                "response_len": args.response_len if objective in ("dpo", "orpo") else None,
                "generations": args.generations if objective == "grpo" else None,
                "gen_tokens": args.gen_tokens if objective == "grpo" else None,
                "tokens_per_step": tokens,
                "steps": args.steps,
                "steps_done": len(times),
                "status": status,
                "error": done.get("error"),
                "seconds_per_step": round(steady, 3) if steady else summary.get("seconds_per_step"),
                "tokens_per_s": round(tokens / steady, 1) if steady else summary.get("tokens_per_s"),
                "first_step_seconds": round(times[0], 1) if times else None,
                "child_seconds_per_step": summary.get("seconds_per_step"),
                "estimated_seconds_per_step": summary.get("estimated_seconds_per_step"),
                "estimated_memory_mb": summary.get("estimated_memory_mb"),
                "mfu": summary.get("mfu"),
                "peak_rss_mb": summary.get("peak_rss_mb") or round(rss, 1),
                "watched_peak_rss_mb": round(rss, 1),
                "first_loss": summary.get("first_train_loss"),
                "final_loss": summary.get("final_train_loss"),
                "wall_seconds": round(wall, 1),
                "devices": next((e["text"] for e in events.get("log", []) if e["text"].startswith("jax ")), ""),
            }
            results.append(row)
            print(f"  -> {json.dumps(row)}", flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"machine": platform.node(), "results": results}, indent=2))
    print("\n| model | objective | method | dtype | tokens/step | s/step | tokens/s | peak RSS MB | MFU | status |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mfu = f"{r['mfu'] * 100:.1f} %" if r["mfu"] else "—"
        print(
            f"| {r['model']} | {r['objective']} | {r['method']} | {r['dtype']} | {r['tokens_per_step']} "
            f"| {r['seconds_per_step']} | {r['tokens_per_s']} | {r['peak_rss_mb']} | {mfu} | {r['status']} |"
        )
    return 0 if all(r["status"] == "completed" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
