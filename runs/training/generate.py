"""Generate answers for an eval set in its own process: `python -m runs.training.generate JOB.json`.

Loads a trained model (the run's `final/` folder, Hugging Face layout)
or the run's untrained base, renders every prompt with the run's chat
template, and samples greedily with Tunix's Sampler in fixed-shape batches (a
fixed prompt length, so it compiles once). Each answer is one JSON line on
stdout; the worker extracts, judges and stores it. SIGTERM stops after the
current batch.

Never imports Django.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from runs.training import devices as devices_lib
from runs.training.events import STOP, emit, run_main, take_over_stdout


def main(job_path: str) -> int:
    take_over_stdout()
    job = json.loads(Path(job_path).read_text())
    # The run's device choice must be in the environment before jax is first imported.
    devices_lib.use_platform(job.get("device", "auto"))

    import jax
    from tunix.generate import sampler as sampler_lib

    from runs.training import modeling, templates
    from runs.training.tokenizers import stop_ids

    try:
        devices = list(jax.devices())
    except Exception as exc:  # noqa: BLE001 - jax reports a missing platform as AssertionError or RuntimeError
        emit("done", status="failed", error=devices_lib.unavailable(job.get("device", "auto"), exc))
        return 3
    # Generation runs on the first device: the sampler's batches are small and sharding buys nothing.
    emit("log", text=f"jax {jax.__version__}: generating on {devices_lib.summary(devices_lib.describe(devices[:1]))}")
    dtype = job.get("dtype", "float32")
    loaded = modeling.build_base(job["model"], job.get("seed", 0), dtype=dtype)
    model, cfg, tok = loaded.model, loaded.config, loaded.tokenizer
    emit("log", text=f"model loaded ({modeling.count_params(model):,} parameters) from {job['model']}")
    items = [json.loads(line) for line in Path(job["items_file"]).read_text().splitlines() if line.strip()]
    prompt_len = int(job["max_prompt_length"])
    new_tokens = int(job["max_new_tokens"])
    batch = int(job.get("batch_size", 8))
    cache = modeling.cache_config(cfg, prompt_len + new_tokens + 8)
    sampler = sampler_lib.Sampler(transformer=model, tokenizer=tok, cache_config=cache)
    # The run's end-of-turn tokens and every EOS id of the checkpoint (Gemma's <end_of_turn>, Llama's <|eot_id|>).
    stops = stop_ids(tok, job["chat_template"])
    emit("started", items=len(items))
    for start in range(0, len(items), batch):
        if STOP.is_set():
            emit("done", status="cancelled")
            return 0
        chunk = items[start : start + batch]
        heads = [templates.render(job["chat_template"], item["prompt"])[0] for item in chunk]
        # Keep the prompt's end (where the question and the turn marker are) when it is too long.
        heads = [clip_prompt(h, tok, prompt_len) for h in heads]
        padded = heads + [heads[-1]] * (batch - len(heads))  # constant batch shape: one compile
        t = time.perf_counter()
        out = sampler(
            padded,
            max_generation_steps=new_tokens,
            temperature=0.0,
            max_prompt_length=prompt_len,
            echo=False,
            eos_tokens=stops,
        )
        per_item_ms = (time.perf_counter() - t) * 1000 / len(chunk)
        for item, text in zip(chunk, out.text[: len(chunk)], strict=True):
            emit("prediction", item=item["pk"], output=text, latency_ms=round(per_item_ms, 2))
    emit("done", status="completed")
    return 0


def clip_prompt(text: str, tok: Any, limit: int) -> str:
    """The prompt cut to its last tokens when it is too long for the sampler (the question and the
    turn marker are at its end); Tunix would otherwise size the prompt past its cache."""
    ids = tok.encode(text)
    if len(ids) < limit:
        return text
    return str(tok.decode(ids[-(limit - 2) :]))


if __name__ == "__main__":
    run_main("runs.training.generate", main)
