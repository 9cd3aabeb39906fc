"""GRPO training inside the training child: Tunix's RLCluster + GRPOLearner with the vanilla rollout.

Entry point for the child: `train_grpo(job, loaded, examples, out, cancel, mesh) -> int` (the exit
code), after the child has built the base (`modeling.build_base`) and read the prompts
(`read_prompts`). It can also run on its own, `python -m runs.training.grpo JOB.json`, with the
same job fields (see `main`).

Prompt file (the job's `train_file`), one JSON object per line:

    {"prompt": "<the user's question, as in an SFT example's prompt>", "answer": "<expected final answer>"}

The prompt is the raw question, not yet in a chat template: like runs.training.data for SFT
examples, the engine renders it with the job's `chat_template` (runs.training.templates), so the
policy is sampled exactly where SFT training and evaluation put the model's turn. `answer` is
what the correctness reward judges against (runs.evaluation.judging). Lines without a prompt or an
answer are refused with their line number.

Hyperparameters are read from the job by name (`GrpoSettings.from_job`): learning_rate,
max_steps, batch_size (prompts per step), seed, warmup_steps, checkpoint_every_steps and
max_seq_length (caps the prompt) from the common set; num_generations, temperature, top_p,
max_tokens_to_generate, grpo_beta, epsilon, kl_mode and rewards (a {name: weight} spec, see
runs.training.rewards) for GRPO; `method == "lora"` or a true `lora` field trains a LoRA adapter
(lora_rank, lora_alpha) on the frozen base, which then also serves as the reference.

Before training it emits `model`: `estimate` (an SFT step over every rollout, × GRPO_STEP_FACTOR,
plus the rollout KV cache and a full fine-tune's frozen reference). A job with `mode ==
"dry_run"` stops there with a `dry_run` event (`ok`, and `problem` when it does not fit) and
`done`, exit 0 (3 when it does not fit), having trained and written nothing.

Events (runs.training.events, as the SFT child): `started`, `step` (step, loss), `metric` per
step (train_loss, kl, clip_fraction, grad_norm, learning_rate, reward_mean, reward_min,
reward_max, reward_<function> (unweighted mean), completion_length_mean/min/max (tokens)),
`grpo_samples` (a few completions with their per-function rewards, at the first step, every
checkpoint and the last step; the latest also in the summary as `grpo_samples`), `checkpoint`,
`artifact` and `done` (with the summary).

Wiring into the training child (runs.training.child.main), after `build_base` and the `devices`
event, before the SFT examples are read (the prompt file has no `response`):

    if job.method == "grpo":
        from runs.training import grpo
        examples = grpo.read_prompts(Path(job.train_file))
        with modeling.active_mesh(mesh):
            return grpo.train_grpo(job, loaded, examples, out, cancel, mesh)

(a dry run included: the engine answers it). The worker's job preparation writes `train_file` as
the prompt file above (an SFT dataset's members: prompt and final answer; an eval set's items:
prompt and expected_answer). A job whose base is a parent run's `final/` folder is a chain
(SFT → GRPO): `base_model` {"kind": "local", "path": …}.

Pitfalls of Tunix 0.1.7 on jax 0.10 handled here (the RL notes): Auto mesh axes; the reference
placed on the mesh before the cluster is built (so roles share weights); a separate copy for a
full fine-tune actor; numpy batch columns; a rollout seed per batch; the global step realigned to
the actor's after a resume from a final checkpoint; an absolute checkpoint path; the metric
listeners unregistered at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import statistics
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from runs.training.events import elapsed, emit
from runs.training.rewards import DEFAULT_SPEC, RewardSet, validate_spec

KL_MODES = ("kl", "mse_kl", "low_var_kl")  # Tunix's compute_kl_divergence methods
SAMPLES_PER_EVENT = 4
SAMPLE_TEXT_MAX = 600
ACTOR_METRICS = {
    "loss": "train_loss",
    "kl": "kl",
    "pg_clipfrac": "clip_fraction",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
}


class PromptFileInvalid(ValueError):
    pass


def read_prompts(path: Path) -> list[dict[str, str]]:
    """The prompt file's items; a line without a text `prompt` and `answer` raises naming FILE:LINE."""
    items: list[dict[str, str]] = []
    if not path.is_file():
        return items
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise PromptFileInvalid(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise PromptFileInvalid(f"{path}:{number}: expected an object with prompt and answer")
            for key in ("prompt", "answer"):
                value = record.get(key)
                if not isinstance(value, str) or not value.strip():
                    raise PromptFileInvalid(f"{path}:{number}: {key} must be non-empty text")
            items.append({"prompt": record["prompt"], "answer": record["answer"]})
    return items


@dataclass(frozen=True)
class GrpoSettings:
    """The numbers a GRPO run trains with (defaults: the notes' measured tiny-preset recipe)."""

    learning_rate: float = 1e-4
    max_steps: int = 100
    batch_size: int = 4
    seed: int = 0
    warmup_steps: int = 0
    checkpoint_every_steps: int = 20
    max_seq_length: int = 256
    num_generations: int = 8
    temperature: float = 0.9
    top_p: float = 1.0
    max_tokens_to_generate: int = 32
    beta: float = 0.04
    epsilon: float = 0.2
    kl_mode: str = "kl"
    rewards: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SPEC))
    lora: bool = False
    lora_rank: int = 8
    lora_alpha: float = 16.0

    # GrpoSettings field -> the job's attribute names, first found wins.
    JOB_NAMES: ClassVar[dict[str, tuple[str, ...]]] = {
        "beta": ("grpo_beta", "beta"),
        "kl_mode": ("kl_mode", "kl_loss_mode"),
        "rewards": ("rewards", "reward_weights"),
    }

    @classmethod
    def from_job(cls, job: Any) -> GrpoSettings:
        """Read every setting the job carries (a JobSpec, a dict or any object); the rest keep their defaults."""
        get = job.get if isinstance(job, Mapping) else lambda name, default=None: getattr(job, name, default)
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            for source in cls.JOB_NAMES.get(name, (name,)):
                value = get(source, None)
                if value is not None:
                    values[name] = value
                    break
        method = get("method", None)
        if method == "lora":
            values["lora"] = True
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Tunix's own constraints, named by field (the run's validation should refuse these earlier)."""
        if self.num_generations < 2:
            raise ValueError("num_generations: GRPO compares at least 2 generations per prompt.")
        if self.kl_mode not in KL_MODES:
            raise ValueError(f"kl_mode: {self.kl_mode!r} is not one of {', '.join(KL_MODES)}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p: must be in (0, 1].")
        if self.temperature <= 0.0:
            raise ValueError("temperature: sampling needs a temperature above 0.")
        if self.max_tokens_to_generate < 1:
            raise ValueError("max_tokens_to_generate: at least 1.")
        validate_spec(self.rewards)


# A GRPO step over B prompts × G generations of up to T tokens after a P-token prompt, against an SFT
# step of the same B·G × (P + T) tokens: measured 1.10 and 1.18 on the tiny preset on CPU (rollout,
# reference forward, policy update; docs/benchmarks.md). Completed runs calibrate it further.
GRPO_STEP_FACTOR = 1.2


def estimate(
    settings: GrpoSettings,
    cfg: Any,
    parameters: int,
    trainable: int,
    *,
    prompt_length: int,
    dtype: str,
    devices: int,
    device_memory: int | None,
    platform: str,
    device_kind: str = "",
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """runs.training.estimates.run_estimate for one GRPO step, plus the rollout's KV cache and the reference.

    The policy update is an SFT step over every rollout (batch_size × num_generations rows of
    prompt + generated tokens); a full fine-tune also keeps the frozen reference's weights (LoRA's
    reference is the base the adapter already counts), and the sampler a KV cache for every row.
    """
    from runs.training import estimates

    rows = settings.batch_size * settings.num_generations
    seq = prompt_length + settings.max_tokens_to_generate
    report = estimates.run_estimate(
        estimates.ModelShape.from_config(cfg),
        parameters,
        trainable,
        lora=settings.lora,
        batch_size=rows,
        seq_len=seq,
        dtype=dtype,
        devices=devices,
        device_memory=device_memory,
        platform=platform,
        device_kind=device_kind,
        calibration=calibration,
    )
    width = estimates.dtype_bytes(dtype)
    reference = 0.0 if settings.lora else parameters * width / devices
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * (seq + 8) * math.ceil(rows / devices) * width
    total = report["total_mb"] * estimates.MB + reference + kv
    limit = device_memory * (1 - estimates.HEADROOM) if device_memory else None
    report.update(
        {
            "rollouts_per_step": rows,
            "tokens_per_step": rows * seq,
            "reference_mb": round(reference / estimates.MB, 1),
            "kv_cache_mb": round(kv / estimates.MB, 1),
            "total_mb": round(total / estimates.MB, 1),
            "estimated_memory_mb": round(total / estimates.MB, 1),
            "fits": None if limit is None else total <= limit,
            "model_seconds_per_step": round(report["model_seconds_per_step"] * GRPO_STEP_FACTOR, 4),
            "estimated_seconds_per_step": round(report["estimated_seconds_per_step"] * GRPO_STEP_FACTOR, 4),
        }
    )
    return report


def does_not_fit(report: dict[str, Any]) -> str:
    return (
        f"Estimated {report['total_mb']:,.0f} MB per device does not fit in {report['device_memory_mb']:,.0f} MB: "
        f"{report['rollouts_per_step']} rollouts of {report['tokens_per_step'] // report['rollouts_per_step']} "
        f"tokens per step (activations {report['activations_mb']:,.0f} MB, KV cache {report['kv_cache_mb']:,.0f} MB, "
        f"weights {report['weights_mb']:,.0f} MB + reference {report['reference_mb']:,.0f} MB). "
        "Lower batch_size, num_generations or max_tokens_to_generate."
    )


def rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def train_grpo(
    job: Any, loaded: Any, examples: list[dict[str, str]], out: Path, cancel: threading.Event, mesh: Any = None
) -> int:
    """Train GRPO on `examples` (read_prompts) from `loaded` (modeling.build_base); returns the exit code.

    `job` carries the settings (GrpoSettings.from_job) and the child's usual fields (run_id,
    base_model, chat_template, dtype). Checkpoints go to `out/checkpoints/actor/<step>` and the
    final model to `out/final`; a relaunch on the same `out` resumes from the latest checkpoint.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import orbax.checkpoint as ocp
    from flax import nnx
    from jax.sharding import AxisType, NamedSharding
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout
    from tunix.sft import metrics_logger as ml

    from runs.training import data as data_lib
    from runs.training import estimates, modeling, templates
    from runs.training.tokenizers import stop_ids

    settings = GrpoSettings.from_job(job)
    get = job.get if isinstance(job, Mapping) else lambda name, default=None: getattr(job, name, default)
    template = str(get("chat_template", templates.DEFAULT))
    dtype = str(get("dtype", "float32"))
    out = out.resolve()  # orbax refuses relative checkpoint paths (asynchronously, mid-run)
    cfg, tok = loaded.config, loaded.tokenizer
    if not examples:
        emit("done", status="failed", error="The GRPO prompt file has no prompts.")
        return 3

    # Prompts in the run's chat template, cut to keep their end (the question and the turn marker).
    prompt_budget = max(8, settings.max_seq_length - settings.max_tokens_to_generate)
    rendered: list[str] = []
    lengths: list[int] = []
    clipped = 0
    for ex in examples:
        head = templates.render(template, ex["prompt"])[0]
        ids = tok.encode(head)
        if len(ids) >= prompt_budget:
            clipped += 1
            head = str(tok.decode(ids[-(prompt_budget - 2) :]))
            ids = tok.encode(head)
        rendered.append(head)
        lengths.append(len(ids) + 1)  # the BOS the sampler may prepend
    max_prompt = min(prompt_budget, max(lengths))
    raw_prompt = dict(zip(rendered, (ex["prompt"] for ex in examples), strict=False))
    answers = [ex["answer"] for ex in examples]
    emit(
        "data",
        prompts=len(examples),
        prompt_tokens_mean=round(float(np.mean(lengths)), 1),
        prompt_tokens_max=max(lengths),
        truncated=clipped,
        max_prompt_length=max_prompt,
        max_tokens_to_generate=settings.max_tokens_to_generate,
    )

    # One mesh for every role (actor, reference, rollout): the rollout reads the actor's weights and
    # needs no sync. Auto axes: jax 0.10's default Explicit axes break the embedding gather.
    if mesh is None:
        mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), axis_types=(AxisType.Auto,) * 2, devices=jax.devices()[:1])
    reference = loaded.model
    # On the mesh before the cluster is built, or RLCluster reshards actor and reference apart
    # (and a LoRA actor stops sharing the reference's backbone).
    state = nnx.state(reference)
    shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), nnx.get_partition_spec(state))
    nnx.update(reference, jax.device_put(state, shardings))
    base_dir: Path | None = None
    base_model = get("base_model", {}) or {}
    if settings.lora:
        if base_model.get("kind") == "preset":
            base_dir = out / "base"  # LoRA is merged into a base in HF layout: keep the random base
            if not (base_dir / "model.safetensors").is_file():
                modeling.save_hf(reference, cfg, tok, base_dir)
        else:
            base_dir = Path(base_model["path"])
        with modeling.active_mesh(mesh):
            actor = modeling.apply_lora(
                reference, settings.lora_rank, settings.lora_alpha, settings.seed, loaded.family
            )
        trainable = modeling.count_params(actor, nnx.LoRAParam)
    else:
        actor = None  # copied below, once a dry run has answered
        trainable = modeling.count_params(reference)
    base_params = modeling.count_params(reference)
    device = jax.devices()[0]
    report = {
        "parameters": base_params + (trainable if settings.lora else 0),
        "trainable_parameters": trainable,
        **estimate(
            settings,
            cfg,
            base_params + (trainable if settings.lora else 0),
            trainable,
            prompt_length=max_prompt,
            dtype=dtype,
            devices=int(mesh.size),
            device_memory=estimates.device_memory(device),
            platform=device.platform,
            device_kind=device.device_kind,
            calibration=get("step_time_calibration", None),
        ),
    }
    emit("model", **report)
    if report["fits"] is False:
        emit("log", text=f"warning: {does_not_fit(report)}")
    if get("mode", "train") == "dry_run":
        problem = does_not_fit(report) if report["fits"] is False else ""
        result = {**report, "prompts": len(examples), "max_prompt_length": max_prompt, "ok": not problem}
        if problem:
            result["problem"] = problem
        emit("dry_run", **result)
        emit("done", status="failed" if problem else "completed", summary=result)
        return 3 if problem else 0
    if actor is None:
        graphdef, state = nnx.split(reference)
        actor = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))  # a separate copy: the reference stays

    rewards = RewardSet(
        settings.rewards,
        count_tokens=lambda text: len(tok.encode(text)),
        max_tokens=settings.max_tokens_to_generate,
    )
    rollout_config = base_rollout.RolloutConfig(
        max_tokens_to_generate=settings.max_tokens_to_generate,
        max_prompt_length=max_prompt,
        kv_cache_size=max_prompt + settings.max_tokens_to_generate + 8,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=None,
        eos_tokens=stop_ids(tok, template),
    )
    warmup = min(settings.warmup_steps, max(settings.max_steps - 1, 0))
    schedule = optax.warmup_constant_schedule(0.0, settings.learning_rate, warmup) if warmup else settings.learning_rate
    optimizer = optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)(learning_rate=schedule)
    stream = _ActorStream()
    ckpt_root = out / "checkpoints"
    training_config = rl_cluster_lib.RLTrainingConfig(
        actor_optimizer=optimizer,
        eval_every_n_steps=10**9,
        max_steps=settings.max_steps,
        checkpoint_root_directory=str(ckpt_root),
        checkpointing_options=ocp.CheckpointManagerOptions(
            save_interval_steps=settings.checkpoint_every_steps, max_to_keep=2
        ),
        metrics_logging_options=ml.MetricsLoggerOptions(
            log_dir=str(out / "tensorboard"), backend_kwargs={"custom_backend": [lambda: stream]}
        ),
        pbar_description=None,
    )
    roles = rl_cluster_lib.Role
    cluster_config = rl_cluster_lib.ClusterConfig(
        role_to_mesh={roles.ACTOR: mesh, roles.REFERENCE: mesh, roles.ROLLOUT: mesh},
        rollout_engine="vanilla",
        offload_to_cpu=False,
        training_config=training_config,
        rollout_config=rollout_config,
    )
    with modeling.active_mesh(mesh):
        cluster = rl_cluster_lib.RLCluster(
            actor=actor, reference=reference, tokenizer=tok, cluster_config=cluster_config
        )
    learner = grpo_learner.GRPOLearner(
        rl_cluster=cluster,
        algo_config=grpo_learner.GRPOConfig(
            num_generations=settings.num_generations,
            num_iterations=1,
            beta=settings.beta,
            epsilon=settings.epsilon,
            kl_loss_mode=settings.kl_mode,
            loss_algo="grpo",
        ),
        reward_fns=rewards.tunix_functions(),
    )
    trainer = cluster.actor_trainer
    resumed_at = int(trainer.train_steps)
    if resumed_at and cluster.global_steps != resumed_at:
        # The checkpoint close() writes (end of run, cancel) has no metadata, so the learner
        # restores global step 0 while the actor restores its step: one global step per actor
        # step here (one iteration, one mini-batch), so realign the labels.
        emit("log", text=f"global step realigned from {cluster.global_steps} to the actor's {resumed_at}")
        cluster.global_steps = resumed_at
    emit("started", resumed_at_step=resumed_at, method="grpo", settings=asdict(settings), **report)
    if resumed_at:
        emit("log", text=f"resumed from the checkpoint at step {resumed_at}")

    hooks = _Hooks(rewards, raw_prompt, settings, stream)
    trainer.with_training_hooks(hooks)
    _record_completion_lengths(cluster, rewards)

    def batches() -> Iterator[dict[str, Any]]:
        """Seeded batches of numpy columns (the learner np.repeats each leaf G times: not lists).

        Deterministic, so a resumed learner's fast-forward lands on the same batches; the
        sampler's seed is set per batch (None would mean PRNGKey(0) for every rollout).
        """
        order = data_lib.epoch_batches(len(rendered), settings.batch_size, settings.seed)
        for index, idx in enumerate(order):
            if cancel.is_set():
                return  # StopIteration: the learner stops and close() writes a checkpoint
            rollout_config.seed = jax.random.PRNGKey(settings.seed * 1_000_003 + index)
            yield {
                "prompts": np.array([rendered[i] for i in idx]),
                "answer": np.array([answers[i] for i in idx]),
            }

    t_train = time.perf_counter()
    if not cancel.is_set() and resumed_at < settings.max_steps:
        with modeling.active_mesh(mesh), contextlib.suppress(StopIteration):  # cancelled before the first batch
            learner.train(batches())
    train_seconds = time.perf_counter() - t_train
    # jax 0.10.2 keeps scalar listeners after MetricsLogger.close(); unsubscribe ours.
    for logger in (getattr(cluster, "_rl_metrics_logger", None), getattr(trainer, "metrics_logger", None)):
        for backend in getattr(logger, "_backends", []) or []:
            with contextlib.suppress(AssertionError, ValueError):
                jax.monitoring.unregister_scalar_listener(backend.log_scalar)

    steps_done = int(trainer.train_steps)
    cancelled = cancel.is_set() and steps_done < settings.max_steps
    actor_dir = ckpt_root / "actor"
    saved = sorted(int(p.name) for p in actor_dir.iterdir() if p.name.isdigit()) if actor_dir.is_dir() else []
    if saved:
        emit("checkpoint", step=saved[-1], saved=saved)
    means = hooks.reward_means
    summary: dict[str, Any] = {
        "method": "grpo",
        "steps_done": steps_done,
        "resumed_at_step": resumed_at,
        "first_reward_mean": means[0] if means else None,
        "final_reward_mean": means[-1] if means else None,
        "reward_mean_last_10": round(float(np.mean(means[-10:])), 4) if means else None,
        "final_kl": stream.kl,
        "train_seconds": round(train_seconds, 2),
        # Steady state: the first steps include XLA compilation.
        "seconds_per_step": round(float(np.median(hooks.intervals[2:] or hooks.intervals or [0.0])), 4),
        "checkpoint_steps": saved,
        **report,
        # Not `samples`: that key holds the SFT child's greedy generations ({prompt, output}) on the run page.
        "grpo_samples": hooks.last_samples,
    }
    if not cancelled and steps_done >= settings.max_steps:
        final_dir = out / "final"
        if final_dir.exists():
            shutil.rmtree(final_dir)
        lora = (settings.lora_rank, settings.lora_alpha) if settings.lora else None
        modeling.save_final(
            trainer.model, cfg, tok, final_dir, lora=lora, base_dir=base_dir, family=loaded.family, dtype=dtype
        )
        (final_dir / "tunixrt.json").write_text(
            json.dumps(
                {
                    "run_id": get("run_id", None),
                    "base_model": base_model,
                    "method": "grpo",
                    "lora": settings.lora,
                    "chat_template": template,
                    "dtype": dtype,
                    "steps": steps_done,
                },
                indent=2,
            )
        )
        emit("artifact", path="final", kind="model")
    summary["peak_rss_mb"] = rss_mb()
    summary["wall_seconds"] = round(elapsed(), 2)
    emit("done", status="cancelled" if cancelled else "completed", summary=summary)
    return 0


def _record_completion_lengths(cluster: Any, rewards: RewardSet) -> None:
    """Copy the learner's completion lengths (tokens, from the completion mask) onto the batch just scored.

    Tunix buffers them right after the rewards of the same rollout and logs them a global step
    late (the last step's never); intercepting the buffering keeps them with their step.
    """
    buffer_metrics = cluster.buffer_metrics
    keys = {"completions/mean_length": "mean", "completions/min_length": "min", "completions/max_length": "max"}

    def intercept(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        found = {keys[name]: float(value[0]) for name, value in metrics.items() if name in keys}
        if found and rewards.batches:
            rewards.batches[-1]["lengths"] = found
        return buffer_metrics(metrics, *args, **kwargs)

    cluster.buffer_metrics = intercept


class _ActorStream:
    """A Tunix metrics backend (a global jax.monitoring listener) forwarding the actor's scalars."""

    def __init__(self) -> None:
        self.kl: float | None = None

    def log_scalar(self, event: str, value: Any, **kwargs: Any) -> None:
        if not event.startswith("actor/train/"):
            return
        name = ACTOR_METRICS.get(event.removeprefix("actor/train/"))
        if name is None:
            return
        import numpy as np

        number = float(np.asarray(value))
        if name == "kl":
            self.kl = number
        emit("metric", name=name, step=int(kwargs.get("step") or 0), value=number)

    def close(self) -> None:
        pass


class _Hooks:
    """Actor training hooks: the step event, the step's reward metrics and sampled completions.

    Tunix calls them by name (its TrainingHooks is an ABC of exactly these methods).
    """

    def __init__(self, rewards: RewardSet, raw_prompt: dict[str, str], settings: GrpoSettings, stream: Any) -> None:
        self.rewards = rewards
        self.raw_prompt = raw_prompt
        self.settings = settings
        self.stream = stream
        self.last_end: float | None = None
        self.intervals: list[float] = []
        self.reward_means: list[float] = []
        self.last_samples: list[dict[str, Any]] = []
        self.started = False

    def on_train_start(self, trainer: Any) -> None:
        # Called once per global step by the RL learner: log the first only.
        if not self.started:
            self.started = True
            emit("log", text=f"GRPO from step {trainer.train_steps} to {self.settings.max_steps}")

    def on_train_end(self, trainer: Any) -> None:
        pass

    def on_train_step_start(self, trainer: Any) -> None:
        pass

    def on_train_step_end(self, trainer: Any, train_step: int, train_loss: Any) -> None:
        loss = float(train_loss)  # waits for the step
        now = time.perf_counter()
        step = int(train_step)
        if self.last_end is not None:
            # Tunix reports the last steps together when training ends: an interval far shorter
            # than the recent ones is that flush, not a step (it would halve a short run's s/step).
            interval = now - self.last_end
            recent = self.intervals[-5:]
            if not recent or interval >= 0.2 * statistics.median(recent):
                self.intervals.append(interval)
        self.last_end = now
        emit("step", step=step, loss=loss)
        batch = self.rewards.batches.popleft() if self.rewards.batches else None
        if batch is not None:
            self._report(step, batch)
        if step % self.settings.checkpoint_every_steps == 0:
            emit("checkpoint", step=step)

    def _report(self, step: int, batch: dict[str, Any]) -> None:
        totals = batch["total"]
        mean = float(sum(totals) / len(totals))
        self.reward_means.append(round(mean, 4))
        values = {"reward_mean": mean, "reward_min": min(totals), "reward_max": max(totals)}
        for name, scores in batch["scores"].items():
            values[f"reward_{name}"] = float(sum(scores) / len(scores))
        for key, value in batch.get("lengths", {}).items():
            values[f"completion_length_{key}"] = value
        for name, value in values.items():
            if math.isfinite(value):
                emit("metric", name=name, step=step, value=round(value, 6))
        every = self.settings.checkpoint_every_steps
        if step == 1 or step % every == 0 or step >= self.settings.max_steps or not self.last_samples:
            self.last_samples = self._samples(batch)
            emit("grpo_samples", step=step, samples=self.last_samples)

    def _samples(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One completion of each of the first prompts (a group's generations are adjacent)."""
        g = self.settings.num_generations
        picked = []
        for i in range(0, len(batch["completions"]), g)[:SAMPLES_PER_EVENT]:
            prompt = batch["prompts"][i]
            picked.append(
                {
                    "prompt": self.raw_prompt.get(prompt, prompt)[:SAMPLE_TEXT_MAX],
                    "completion": batch["completions"][i][:SAMPLE_TEXT_MAX],
                    "answer": batch["answers"][i] if batch["answers"] else "",
                    "rewards": {name: scores[i] for name, scores in batch["scores"].items()},
                    "reward": round(batch["total"][i], 4),
                }
            )
        return picked

    def on_eval_step_start(self, trainer: Any) -> None:
        pass

    def on_eval_step_end(self, trainer: Any, eval_loss: Any) -> None:
        pass


def main(job_path: str) -> int:
    """`python -m runs.training.grpo JOB.json`: a GRPO run on its own (the child's protocol).

    JOB.json holds the settings GrpoSettings reads plus output_dir, train_file (the prompt file),
    base_model ({"kind": "preset", "name": …} or {"kind": "local", "path": …}), chat_template,
    dtype and device.
    """
    from runs.training import devices as devices_lib
    from runs.training.events import STOP, take_over_stdout

    take_over_stdout()
    job = json.loads(Path(job_path).read_text())
    devices_lib.use_platform(job.get("device", "auto"))
    import jax

    from runs.training import modeling

    emit("log", text=f"jax {jax.__version__}: GRPO on {jax.devices()[0].platform}; imports took {elapsed():.1f}s")
    examples = read_prompts(Path(job["train_file"]))
    loaded = modeling.build_base(job["base_model"], int(job.get("seed", 0)), dtype=job.get("dtype", "float32"))
    return train_grpo(job, loaded, examples, Path(job["output_dir"]), STOP, None)


if __name__ == "__main__":
    from runs.training.events import run_main

    run_main("runs.training.grpo", main)
