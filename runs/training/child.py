"""One fine-tuning run, in its own process: `python -m runs.training.child JOB.json`.

Reads the job file and the exported dataset, builds the model the run starts
from (a base model, or a parent run's final model), trains it (full or LoRA
through qwix) with the run's objective — SFT with Tunix's PeftTrainer, DPO or
ORPO on preference pairs with its DPOTrainer, GRPO through runs.training.grpo — evaluates on the validation
split, saves orbax checkpoints and a final model, and reports everything as
JSON lines on stdout for the worker to store. SIGTERM asks for a clean stop:
the trainer finishes the step, saves a checkpoint and exits 0. Everything but
the data and the trainer is shared by the objectives.

Never imports Django: the worker owns the database.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from runs.training import devices as devices_lib
from runs.training import estimates
from runs.training.events import STOP, elapsed, emit, run_main, take_over_stdout

METRIC_NAMES = {
    "/train/loss": "train_loss",
    "/train/perplexity": "train_perplexity",
    "/train/grad_norm": "grad_norm",
    "/train/learning_rate": "learning_rate",
    "/eval/loss": "eval_loss",
    "/eval/perplexity": "eval_perplexity",
}
# DPO/ORPO's own scalars (Tunix's aux metrics), as train_… and eval_… series.
PREFERENCE_METRICS = {
    "rewards/margin": "reward_margin",
    "rewards/accuracy": "reward_accuracy",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "log_probs/chosen": "logp_chosen",
    "log_probs/rejected": "logp_rejected",
    "odds_ratio": "odds_ratio",
}
METRIC_NAMES.update(
    {f"/{mode}/{tunix}": f"{mode}_{ours}" for mode in ("train", "eval") for tunix, ours in PREFERENCE_METRICS.items()}
)
PREFERENCE_OBJECTIVES = ("dpo", "orpo")


def log(text: str) -> None:
    emit("log", text=text)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(job_path: str) -> int:
    # Anything a library prints must not corrupt the event stream.
    take_over_stdout()
    cancel = STOP

    from runs.training.job import JobSpec

    job = JobSpec.read(Path(job_path))
    log(f"run {job.run_id}: {job.mode}, base {job.base_model}, method {job.method}, {job.dtype} on {job.device}")
    # The run's device choice must be in the environment before jax is first imported.
    devices_lib.use_platform(job.device)

    import jax
    from flax import nnx

    from runs.training import modeling

    try:
        devices = list(jax.devices())
    except Exception as exc:  # noqa: BLE001 - jax reports a missing platform as AssertionError or RuntimeError
        emit("done", status="failed", error=devices_lib.unavailable(job.device, exc))
        return 3
    log(f"jax {jax.__version__}: {devices_lib.summary(devices_lib.describe(devices))}; imports took {elapsed():.1f}s")
    out = Path(job.output_dir)
    mesh = modeling.training_mesh(devices)
    mesh_shape = {name: int(size) for name, size in mesh.shape.items()} if mesh is not None else None
    emit("devices", **devices_lib.describe(devices), mesh=mesh_shape)
    with modeling.active_mesh(mesh):
        loaded = modeling.build_base(job.base_model, job.seed, dtype=job.dtype, mesh=mesh)
    model, cfg, tok = loaded.model, loaded.config, loaded.tokenizer
    if mesh is not None:
        split, total = modeling.sharded_parameters(model)
        log(
            f"mesh fsdp={mesh.shape['fsdp']} tp={mesh.shape['tp']}; parameters sharded over {len(devices)} devices "
            f"({split} of {total} arrays split)"
        )
    if job.objective == "grpo":
        # GRPO has its own engine (rollouts, rewards, its own estimate and dry run) on the same model.
        from runs.training import grpo

        examples = grpo.read_prompts(Path(job.train_file))
        with modeling.active_mesh(mesh):
            return grpo.train_grpo(job, loaded, examples, out, cancel, mesh)
    base_params = modeling.count_params(model)

    preference = job.objective in PREFERENCE_OBJECTIVES
    data: _Data = _Pairs(job, tok) if preference else _Examples(job, tok)
    emit("data", **data.report)

    lora_params = 0
    base_dir: Path | None = None
    if job.method == "lora":
        if job.base_model["kind"] == "preset":
            # Tunix merges LoRA into a base stored in HF layout; keep the random base.
            base_dir = out / "base"
            if not (base_dir / "model.safetensors").is_file():
                modeling.save_hf(model, cfg, tok, base_dir)
        else:
            base_dir = Path(job.base_model["path"])
        t = time.perf_counter()
        with modeling.active_mesh(mesh):
            model = modeling.apply_lora(model, job.lora_rank, job.lora_alpha, job.seed, loaded.family)
        lora_params = modeling.count_params(model, nnx.LoRAParam)
        log(f"LoRA rank {job.lora_rank} alpha {job.lora_alpha} applied in {time.perf_counter() - t:.1f}s")

    params = base_params + lora_params
    trainable = lora_params if job.method == "lora" else base_params
    reference = _reference_kind(job)
    estimate = {
        "parameters": params,
        "trainable_parameters": trainable,
        "tokens_per_step": data.step_batch * data.step_length,
        **estimates.run_estimate(
            estimates.ModelShape.from_config(cfg),
            params,
            trainable,
            lora=job.method == "lora",
            batch_size=data.step_batch,
            seq_len=data.step_length,
            dtype=job.dtype,
            devices=len(devices),
            device_memory=estimates.device_memory(devices[0]),
            platform=devices[0].platform,
            device_kind=devices[0].device_kind,
            calibration=job.step_time_calibration,
            reference=reference,
        ),
    }
    emit("model", **estimate, base_parameters=base_params, lora_parameters=lora_params)

    if estimate["fits"] is False:
        log(f"warning: {estimates.does_not_fit(estimate)}")
    if job.mode == "dry_run":
        # A dry run answers "will this run work?": nothing to train on or too little memory is a no.
        problem = ""
        if data.count == 0:
            problem = data.empty_problem
        elif estimate["fits"] is False:
            problem = estimates.does_not_fit(estimate)
        ok = not problem
        report = {**data.report, **estimate, "ok": ok}
        if not ok:
            report["problem"] = problem
        emit("dry_run", **report)
        emit("done", status="completed" if ok else "failed", summary=report)
        return 0 if ok else 3

    if data.count == 0:
        emit("done", status="failed", summary=data.report, error=data.empty_problem)
        return 3
    with modeling.active_mesh(mesh):
        return _train(job, model, loaded, data, out, base_dir, estimate, cancel, mesh)


def _reference_kind(job: Any) -> str:
    """What a DPO reference costs (runs.training.estimates): its own weights, the shared frozen base, none."""
    if job.objective != "dpo":
        return "none"
    if job.method == "lora" and not job.reference_model:
        return "shared"
    return "copy"


class _Data:
    """A run's training data, tokenised, and how one step's batch is built (one subclass per kind)."""

    count: int  # training rows
    report: dict[str, Any]  # the `data` event
    empty_problem: str  # why a run with no training row cannot train
    step_batch: int  # sequences through the model per step
    step_length: int  # tokens per sequence
    real_tokens_per_step: float  # non-padding tokens per step

    def batch(self, idx: Any) -> Any:
        raise NotImplementedError

    def eval_batches(self, batch_size: int) -> list[Any] | None:
        raise NotImplementedError


class _Examples(_Data):
    """SFT: prompt → response examples, one sequence each, the loss on the response."""

    def __init__(self, job: Any, tok: Any) -> None:
        import numpy as np

        from runs.training import data as data_lib

        train_examples = data_lib.read_examples(Path(job.train_file))
        val_examples = data_lib.read_examples(Path(job.validation_file))
        self.train = data_lib.encode_examples(train_examples, tok, job.max_seq_length, job.chat_template)
        self.val = data_lib.encode_examples(val_examples, tok, job.max_seq_length, job.chat_template)
        lengths = self.train.lengths + self.val.lengths
        self.count = self.train.count
        self.report = {
            "examples": len(train_examples) + len(val_examples),
            "train_examples": self.train.count,
            "validation_examples": self.val.count,
            "tokens_mean": round(float(np.mean(lengths)), 1) if lengths else 0.0,
            "tokens_max": max(lengths) if lengths else 0,
            "truncated": self.train.truncated + self.val.truncated,
            "dropped_no_answer_tokens": self.train.dropped + self.val.dropped,
            "max_seq_length": job.max_seq_length,
        }
        self.empty_problem = "No training example has an answer token left within max_seq_length."
        self.step_batch, self.step_length = job.batch_size, job.max_seq_length
        pad = tok.pad_id()
        real = float(np.mean((self.train.tokens != pad).sum(axis=1))) if self.count else 0.0
        self.real_tokens_per_step = real * job.batch_size

    def batch(self, idx: Any) -> Any:
        from tunix.sft import peft_trainer

        return peft_trainer.TrainingInput(input_tokens=self.train.tokens[idx], input_mask=self.train.mask[idx])

    def eval_batches(self, batch_size: int) -> list[Any] | None:
        import numpy as np
        from tunix.sft import peft_trainer

        if not self.val.count:
            return None
        out = []
        for start in range(0, min(self.val.count, 8 * batch_size), batch_size):
            idx = np.resize(np.arange(start, min(start + batch_size, self.val.count)), batch_size)
            out.append(peft_trainer.TrainingInput(input_tokens=self.val.tokens[idx], input_mask=self.val.mask[idx]))
        return out


class _Pairs(_Data):
    """DPO/ORPO: (prompt, chosen, rejected) pairs; both answers go through the model in one batch."""

    def __init__(self, job: Any, tok: Any) -> None:
        import numpy as np

        from runs.training import data as data_lib

        train_pairs = data_lib.read_examples(Path(job.train_file))
        val_pairs = data_lib.read_examples(Path(job.validation_file))
        p, r = job.max_prompt_length, job.max_response_length
        self.train = data_lib.encode_pairs(train_pairs, tok, p, r, job.chat_template)
        self.val = data_lib.encode_pairs(val_pairs, tok, p, r, job.chat_template)
        lengths = self.train.lengths + self.val.lengths
        self.count = self.train.count
        self.report = {
            "pairs": len(train_pairs) + len(val_pairs),
            "train_pairs": self.train.count,
            "validation_pairs": self.val.count,
            "tokens_mean": round(float(np.mean(lengths)), 1) if lengths else 0.0,
            "tokens_max": max(lengths) if lengths else 0,
            "truncated": self.train.truncated + self.val.truncated,
            "dropped_identical_answers": self.train.dropped + self.val.dropped,
            "max_prompt_length": p,
            "max_response_length": r,
        }
        self.empty_problem = (
            "No preference pair left to train on: none in the training split, or chosen and rejected "
            "are identical within max_response_length."
        )
        self.step_batch, self.step_length = 2 * job.batch_size, p + r
        self.real_tokens_per_step = self.train.real_tokens() * job.batch_size

    def _input(self, enc: Any, idx: Any) -> Any:
        from tunix.sft.dpo import dpo_trainer

        prompt, chosen, rejected = enc.prompt_ids[idx], enc.chosen_ids[idx], enc.rejected_ids[idx]
        return dpo_trainer.TrainingInput(
            prompt_ids=prompt,
            prompt_mask=enc.mask(prompt),
            chosen_ids=chosen,
            chosen_mask=enc.mask(chosen),
            rejected_ids=rejected,
            rejected_mask=enc.mask(rejected),
        )

    def batch(self, idx: Any) -> Any:
        return self._input(self.train, idx)

    def eval_batches(self, batch_size: int) -> list[Any] | None:
        import numpy as np

        if not self.val.count:
            return None
        out = []
        for start in range(0, min(self.val.count, 8 * batch_size), batch_size):
            idx = np.resize(np.arange(start, min(start + batch_size, self.val.count)), batch_size)
            out.append(self._input(self.val, idx))
        return out


class _MetricStream:
    """A Tunix metrics backend (a global jax.monitoring listener) forwarding SFT scalars."""

    def log_scalar(self, event: str, value: Any, **kwargs: Any) -> None:
        name = METRIC_NAMES.get(event)
        if name is not None:
            import numpy as np

            emit("metric", name=name, step=int(kwargs.get("step") or 0), value=float(np.asarray(value)))

    def close(self) -> None:
        pass


def _train(
    job: Any,
    model: Any,
    loaded: Any,
    data: _Data,
    out: Path,
    base_dir: Path | None,
    estimate: dict[str, Any],
    cancel: threading.Event,
    mesh: Any = None,
) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import orbax.checkpoint as ocp
    from tunix.generate import sampler as sampler_lib
    from tunix.sft import hooks as hooks_lib
    from tunix.sft import metrics_logger as ml

    from runs.training import data as data_lib
    from runs.training import modeling

    cfg, tok = loaded.config, loaded.tokenizer
    ckpt_dir = out / "checkpoints"
    stream = _MetricStream()
    common: dict[str, Any] = {
        "eval_every_n_steps": job.eval_every_steps,
        "max_steps": job.max_steps,
        "checkpoint_root_directory": str(ckpt_dir),
        "checkpointing_options": ocp.CheckpointManagerOptions(
            save_interval_steps=job.checkpoint_every_steps, max_to_keep=2
        ),
        "metrics_logging_options": ml.MetricsLoggerOptions(
            log_dir=str(out / "tensorboard"), backend_kwargs={"custom_backend": [lambda: stream]}
        ),
        "pbar_description": None,
        "data_sharding_axis": _data_axis(mesh, job.batch_size),
    }
    warmup = min(job.warmup_steps, max(job.max_steps - 1, 0))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        job.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(job.max_steps, warmup + 1),
        end_value=job.learning_rate * 0.1,
    )
    # float32 hyperparameters: inferred from bfloat16 parameters, Adam's b2 and eps round so far that
    # every update after the first is NaN.
    optimizer = optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)(
        learning_rate=schedule, weight_decay=job.weight_decay
    )
    # Both trainers restore the latest checkpoint in their constructor.
    if job.objective in PREFERENCE_OBJECTIVES:
        trainer = _preference_trainer(job, model, loaded, optimizer, common, mesh)
    else:
        trainer = _sft_trainer(model, tok, optimizer, common)
    resumed_at = int(trainer.train_steps)
    emit("started", resumed_at_step=resumed_at, **estimate)
    if resumed_at:
        log(f"resumed from the checkpoint at step {resumed_at}")
    real_tokens = data.real_tokens_per_step

    class Hooks(hooks_lib.TrainingHooks):
        def __init__(self) -> None:
            self.last_end: float | None = None
            self.rates: list[float] = []
            self.intervals: list[float] = []

        def on_train_start(self, trainer: Any) -> None:
            log(f"training from step {trainer.train_steps} to {job.max_steps}")

        def on_train_end(self, trainer: Any) -> None:
            pass

        def on_train_step_start(self, trainer: Any) -> None:
            pass

        def on_train_step_end(self, trainer: Any, train_step: int, train_loss: Any) -> None:
            # JAX dispatches a step asynchronously and Tunix reports a step's metrics once the next
            # one is under way, flushing the last ones together at the end: read the loss first (it
            # waits for the step), then the clock, and skip an interval far shorter than the recent
            # ones (a flush, not a step) so neither s/step nor tokens/s takes a bogus point.
            loss = float(train_loss)
            now = time.perf_counter()
            step = int(train_step)
            if self.last_end is not None and now > self.last_end:
                interval = now - self.last_end
                recent = self.intervals[-5:]
                if not recent or interval >= 0.2 * float(np.median(recent)):
                    rate = real_tokens / interval
                    self.rates.append(rate)
                    self.intervals.append(interval)
                    emit("metric", name="tokens_per_s", step=step, value=round(rate, 1))
            self.last_end = now
            emit("step", step=step, loss=loss)
            if step % job.checkpoint_every_steps == 0:
                emit("checkpoint", step=step)

        def on_eval_step_start(self, trainer: Any) -> None:
            pass

        def on_eval_step_end(self, trainer: Any, eval_loss: Any) -> None:
            pass

    hooks = Hooks()
    trainer.with_training_hooks(hooks)

    def batches() -> Any:
        for idx in data_lib.epoch_batches(data.count, job.batch_size, job.seed):
            if cancel.is_set():
                return
            yield data.batch(idx)

    eval_ds = data.eval_batches(job.batch_size)

    t_train = time.perf_counter()
    if not cancel.is_set():  # cancelled while loading or compiling: no step to run, nothing new to save
        trainer.train(batches(), eval_ds)
    train_seconds = time.perf_counter() - t_train
    # jax 0.10.2 keeps scalar listeners after MetricsLogger.close(); unsubscribe ours.
    for backend in trainer.metrics_logger._backends:
        with contextlib.suppress(AssertionError, ValueError):
            jax.monitoring.unregister_scalar_listener(backend.log_scalar)

    steps_done = int(trainer.train_steps)
    cancelled = cancel.is_set() and steps_done < job.max_steps
    saved = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.is_dir() else []
    if saved:
        emit("checkpoint", step=saved[-1], saved=saved)
    losses = _history(trainer.metrics_logger, "train")
    evals = _history(trainer.metrics_logger, "eval")
    summary: dict[str, Any] = {
        "steps_done": steps_done,
        "resumed_at_step": resumed_at,
        "first_train_loss": losses[0] if losses else None,
        "final_train_loss": losses[-1] if losses else None,
        "best_train_loss": min(losses) if losses else None,
        "final_eval_loss": evals[-1] if evals else None,
        "best_eval_loss": min(evals) if evals else None,
        "tokens_per_s": round(float(np.median(hooks.rates[2:] or hooks.rates or [0.0])), 1),
        "train_seconds": round(train_seconds, 2),
        # Steady state: the first steps include XLA compilation.
        "seconds_per_step": round(float(np.median(hooks.intervals[2:] or hooks.intervals or [0.0])), 4),
        "checkpoint_steps": saved,
        **estimate,
    }
    if job.objective in PREFERENCE_OBJECTIVES:
        for mode in ("train", "eval"):
            for name in ("accuracy", "margin"):
                history = _history(trainer.metrics_logger, mode, f"rewards/{name}")
                summary[f"final_{mode}_reward_{name}"] = history[-1] if history else None
    if not hooks.rates and steps_done > resumed_at and train_seconds > 0:
        # One step only (no interval between two step ends): the whole call, compile included;
        # seconds_per_step stays 0 so the calibration skips the run.
        summary["tokens_per_s"] = round(real_tokens * (steps_done - resumed_at) / train_seconds, 1)
    peak = estimates.peak_device_memory(jax.devices()[0])
    if peak is not None:
        summary["peak_device_mb"] = round(peak / estimates.MB, 1)
    if estimate["platform"] == "gpu" and summary["seconds_per_step"] > 0:
        utilisation = estimates.mfu(
            estimate["model_flops_per_step"],
            summary["seconds_per_step"],
            estimate["device_kind"],
            estimate["dtype"],
            estimate["device_count"],
        )
        if utilisation is not None:
            summary["mfu"] = round(utilisation, 4)

    if not cancelled:
        final_dir = out / "final"
        if final_dir.exists():
            shutil.rmtree(final_dir)
        lora = (job.lora_rank, job.lora_alpha) if job.method == "lora" else None
        modeling.save_final(
            model, cfg, tok, final_dir, lora=lora, base_dir=base_dir, family=loaded.family, dtype=job.dtype
        )
        (final_dir / "tunixrt.json").write_text(
            json.dumps(
                {
                    "run_id": job.run_id,
                    "base_model": job.base_model,
                    "method": job.method,
                    "objective": job.objective,
                    "parent_run_id": job.parent_run_id,
                    "chat_template": job.chat_template,
                    "dtype": job.dtype,
                    "steps": steps_done,
                },
                indent=2,
            )
        )
        emit("artifact", path="final", kind="model")
        if job.sample_prompts:
            summary["samples"] = _samples(sampler_lib, model, cfg, tok, job)

    summary["peak_rss_mb"] = peak_rss_mb()
    summary["wall_seconds"] = round(elapsed(), 2)
    emit("done", status="cancelled" if cancelled else "completed", summary=summary)
    return 0


def _sft_trainer(model: Any, tok: Any, optimizer: Any, common: dict[str, Any]) -> Any:
    """Tunix's PeftTrainer: next-token loss on the masked completion."""
    from tunix.sft import peft_trainer
    from tunix.sft import utils as sft_utils

    trainer = peft_trainer.PeftTrainer(model, optimizer, peft_trainer.TrainingConfig(**common))

    def model_input(x: Any) -> dict[str, Any]:
        pad_mask = x.input_tokens != tok.pad_id()
        return {
            "input_tokens": x.input_tokens,
            "input_mask": x.input_mask,
            "positions": sft_utils.build_positions_from_mask(pad_mask),
            "attention_mask": sft_utils.make_causal_attn_mask(pad_mask),
        }

    return trainer.with_gen_model_input_fn(model_input)


def _preference_trainer(job: Any, model: Any, loaded: Any, optimizer: Any, common: dict[str, Any], mesh: Any) -> Any:
    """Tunix's DPOTrainer for DPO or ORPO, with DPO's frozen reference model.

    The reference is built before the trainer restores a checkpoint, so a resumed run
    compares against the same model as the first attempt: the model the run started
    from (LoRA: the frozen base under the adapters, shared; a full fine-tune: a copy
    of it), or another completed run's final model. ORPO has none.
    """
    from flax import nnx
    from tunix.sft.dpo import dpo_trainer

    from runs.training import modeling

    reference = None
    if job.objective == "dpo":
        if job.reference_model:
            reference = modeling.build_base(job.reference_model, job.seed, dtype=job.dtype, mesh=mesh).model
            log(f"reference model: {job.reference_model.get('name') or job.reference_model.get('path')}")
        elif job.method == "lora":
            reference = loaded.model  # qwix left the base unchanged; its weights stay frozen
            log("reference model: the frozen base under the LoRA adapters")
        else:
            reference = nnx.clone(model)
            log("reference model: a frozen copy of the starting model")
    config = dpo_trainer.DPOTrainingConfig(
        **common,
        algorithm=job.objective,
        beta=job.beta,
        lambda_orpo=job.lambda_orpo,
        label_smoothing=job.label_smoothing,
        max_prompt_length=job.max_prompt_length,
        max_response_length=job.max_response_length,
    )
    return dpo_trainer.DPOTrainer(model=model, ref_model=reference, optimizer=optimizer, training_config=config)


def _data_axis(mesh: Any, batch_size: int) -> tuple[str, ...]:
    """Split each batch along `fsdp` when it divides evenly; otherwise every device gets the whole batch."""
    if mesh is None:
        return ("fsdp",)
    n = int(mesh.shape["fsdp"])
    if batch_size % n:
        log(f"batch size {batch_size} does not divide over {n} devices: each device gets the whole batch")
        return ()
    return ("fsdp",)


def _history(metrics: Any, mode: str, name: str = "loss") -> list[float]:
    """Every logged value of `name` in `mode`; none when no step ran (a resume at the last step, an early cancel).

    Tunix's get_metric_history raises for a metric never logged (a KeyError in 0.1.7).
    """
    if not metrics.metric_exists("", name, mode):
        return []
    return [float(x) for x in metrics.get_metric_history("", name, mode)]


def _samples(sampler_lib: Any, model: Any, cfg: Any, tok: Any, job: Any) -> list[dict[str, str]]:
    """Greedy generations for a few validation prompts, shown on the run page."""
    from runs.training import modeling, templates
    from runs.training.generate import clip_prompt
    from runs.training.tokenizers import stop_ids

    prompt_len = min(job.max_seq_length, 192)
    cache = modeling.cache_config(cfg, prompt_len + 64 + 8)
    sampler = sampler_lib.Sampler(transformer=model, tokenizer=tok, cache_config=cache)
    # A long prompt keeps its end: unclipped, Tunix sized it past the cache and the run failed at the end.
    heads = [clip_prompt(templates.render(job.chat_template, p)[0], tok, prompt_len) for p in job.sample_prompts]
    result = sampler(
        heads,
        max_generation_steps=64,
        temperature=0.0,
        max_prompt_length=prompt_len,
        echo=False,
        eos_tokens=stop_ids(tok, job.chat_template),
    )
    return [{"prompt": p, "output": o} for p, o in zip(job.sample_prompts, result.text, strict=True)]


if __name__ == "__main__":
    run_main("runs.training.child", main)
