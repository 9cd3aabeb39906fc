"""Real GRPO training of the tiny preset, each run a child process with a job file (never mocked).

A short run streams its rewards, KL, clip fraction and sampled completions and exports its model;
a cancelled run keeps a checkpoint and a killed one resumes from its last, with the metrics
continuing at the right step; and (PostgreSQL pass) GRPO after a brief SFT warm start raises the
sampled reward above the same run at learning rate 0, the control of the RL notes.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import numpy as np
import pytest
from django.db import connection

from runs.tests import grpo_support as gs
from runs.tests.checkpoint_support import write_checkpoint
from runs.tests.conftest import JAX_CACHE
from runs.tests.run_support import TINY_PARAMETERS

ON_POSTGRES_ONLY = pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="more real training than one tiny run (minutes on 2 CPU cores): on the PostgreSQL pass",
)
# From the random-initialised preset: small shapes, so each run is a few seconds after its compile.
QUICK: dict[str, Any] = {
    "batch_size": 2,
    "num_generations": 2,
    "max_tokens_to_generate": 16,
    "learning_rate": 1e-3,
    "rewards": {"correctness": 1.0, "format": 0.5, "length": 0.1},
}
STEP_METRICS = {
    "train_loss",
    "kl",
    "clip_fraction",
    "grad_norm",
    "learning_rate",
    "reward_mean",
    "reward_min",
    "reward_max",
    "reward_correctness",
    "reward_format",
    "reward_length",
    "completion_length_mean",
    "completion_length_min",
    "completion_length_max",
}


def _steps(events):
    return [e["step"] for e in events if e["event"] == "step"]


def _done(events):
    assert events[-1]["event"] == "done", events[-3:]
    return events[-1]


def test_a_tiny_grpo_run_streams_rewards_and_samples_and_exports_its_model(tmp_path):
    prompts = gs.prompt_file(tmp_path / "prompts.jsonl", count=8)
    job = gs.grpo_job(tmp_path / "run", None, prompts, max_steps=4, checkpoint_every_steps=2, **QUICK)
    code, events = gs.run_child("runs.training.grpo", job, JAX_CACHE)

    assert code == 0
    done = _done(events)
    assert done["status"] == "completed"
    assert _steps(events) == [1, 2, 3, 4]
    for name in STEP_METRICS:
        assert sorted(gs.metrics(events, name)) == [1, 2, 3, 4], name
    means, lows, highs = (gs.metrics(events, f"reward_{k}") for k in ("mean", "min", "max"))
    lengths = gs.metrics(events, "completion_length_max")
    for step in means:
        assert lows[step] <= means[step] <= highs[step]
        assert 0 <= lengths[step] <= QUICK["max_tokens_to_generate"]
    # The weighted sum of the per-function means is the mean reward.
    weights = QUICK["rewards"]
    for step, mean in means.items():
        parts = sum(w * gs.metrics(events, f"reward_{name}")[step] for name, w in weights.items())
        assert mean == pytest.approx(parts, abs=1e-5)

    samples = [e for e in events if e["event"] == "grpo_samples"]
    assert [e["step"] for e in samples] == [1, 2, 4]  # the first step, each checkpoint, the last
    for sample in samples[-1]["samples"]:
        assert sample["prompt"].startswith("What is ")  # the question, not the chat-template turn
        assert set(sample["rewards"]) == set(weights)
        total = sum(weights[name] * value for name, value in sample["rewards"].items())
        assert sample["reward"] == pytest.approx(total, abs=1e-4)
        assert sample["answer"] == str(eval(sample["prompt"][8:-1]))  # noqa: S307 - "a + b" of our own prompts
    assert done["summary"]["grpo_samples"] == samples[-1]["samples"]

    assert done["summary"]["steps_done"] == 4
    assert done["summary"]["checkpoint_steps"] == [2, 4]
    assert done["summary"]["final_kl"] == gs.metrics(events, "kl")[4]
    final = tmp_path / "run" / "final"
    meta = json.loads((final / "tunixrt.json").read_text())
    assert (meta["method"], meta["steps"], meta["chat_template"]) == ("grpo", 4, gs.TEMPLATE)
    config = json.loads((final / "config.json").read_text())
    assert config["model_type"] == "qwen3"
    assert (final / "model.safetensors").stat().st_size > TINY_PARAMETERS * 4  # float32 weights


def test_a_grpo_dry_run_reports_the_rollout_shape_and_estimates_without_training(tmp_path):
    prompts = gs.prompt_file(tmp_path / "prompts.jsonl", count=8)
    job = gs.grpo_job(tmp_path / "run", None, prompts, mode="dry_run", max_steps=4, **QUICK)
    code, events = gs.run_child("runs.training.grpo", job, JAX_CACHE)

    assert code == 0
    report = next(e for e in events if e["event"] == "dry_run")
    assert report["ok"] is True
    assert report["prompts"] == 8
    assert report["rollouts_per_step"] == QUICK["batch_size"] * QUICK["num_generations"]
    assert report["tokens_per_step"] == report["rollouts_per_step"] * (
        report["max_prompt_length"] + QUICK["max_tokens_to_generate"]
    )
    assert report["trainable_parameters"] == TINY_PARAMETERS
    assert report["reference_mb"] > 0 and report["kv_cache_mb"] > 0
    assert report["estimated_seconds_per_step"] > 0 and report["fits"] is True  # the host's memory
    assert _done(events)["status"] == "completed"
    assert not any(e["event"] in ("step", "started") for e in events)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "final").exists()


def test_a_cancelled_grpo_run_keeps_a_checkpoint_and_resumes_where_it_stopped(tmp_path):
    prompts = gs.prompt_file(tmp_path / "prompts.jsonl", count=8)
    job = gs.grpo_job(tmp_path / "whole", None, prompts, max_steps=10, checkpoint_every_steps=100, **QUICK)
    code, whole = gs.run_child("runs.training.grpo", job, JAX_CACHE)
    assert code == 0
    folder = tmp_path / "run"
    job = gs.grpo_job(folder, None, prompts, max_steps=500, checkpoint_every_steps=100, **QUICK)
    events = gs.stop_at_step(gs.start("runs.training.grpo", job, JAX_CACHE), 2, signal.SIGTERM)

    done = _done(events)
    assert done["status"] == "cancelled"
    stopped = done["summary"]["steps_done"]
    assert 2 <= stopped <= 8
    assert done["summary"]["checkpoint_steps"][-1] == stopped  # written on the way out
    assert not (folder / "final").exists()

    job = gs.grpo_job(folder, None, prompts, max_steps=stopped + 2, checkpoint_every_steps=100, **QUICK)
    code, resumed = gs.run_child("runs.training.grpo", job, JAX_CACHE)
    assert code == 0
    started = next(e for e in resumed if e["event"] == "started")
    assert started["resumed_at_step"] == stopped
    assert _steps(resumed) == [stopped + 1, stopped + 2]
    for name in ("reward_mean", "kl", "train_loss", "completion_length_mean"):
        assert sorted(gs.metrics(resumed, name)) == [stopped + 1, stopped + 2], name
    assert _done(resumed)["status"] == "completed"
    assert (folder / "final" / "model.safetensors").is_file()
    # The resumed steps are the uninterrupted run's: the same batches, rollout seeds and weights.
    for name in ("reward_mean", "completion_length_mean", "train_loss"):
        assert gs.metrics(resumed, name) == {s: gs.metrics(whole, name)[s] for s in (stopped + 1, stopped + 2)}, name


def test_a_killed_grpo_run_resumes_from_its_last_checkpoint_with_the_same_rollouts(tmp_path):
    prompts = gs.prompt_file(tmp_path / "prompts.jsonl", count=8)
    folder = tmp_path / "run"
    job = gs.grpo_job(folder, None, prompts, max_steps=500, checkpoint_every_steps=3, **QUICK)
    killed = gs.stop_at_step(gs.start("runs.training.grpo", job, JAX_CACHE), 7, signal.SIGKILL)
    assert all(e["event"] != "done" for e in killed)
    before = gs.metrics(killed, "reward_mean")
    lengths_before = gs.metrics(killed, "completion_length_mean")

    job = gs.grpo_job(folder, None, prompts, max_steps=9, checkpoint_every_steps=3, **QUICK)
    code, resumed = gs.run_child("runs.training.grpo", job, JAX_CACHE)
    assert code == 0
    at = next(e for e in resumed if e["event"] == "started")["resumed_at_step"]
    assert at in (3, 6)
    assert _steps(resumed) == list(range(at + 1, 10))
    after = gs.metrics(resumed, "reward_mean")
    assert sorted(after) == list(range(at + 1, 10))
    # The step after the checkpoint samples the same batch with the same seed from the same weights.
    # (A step's metrics are several lines: the kill, sent on seeing step 7, can land between them.)
    assert at + 1 in before or at + 1 == 7
    if at + 1 in before:
        assert after[at + 1] == before[at + 1]
    if at + 1 in lengths_before:
        assert gs.metrics(resumed, "completion_length_mean")[at + 1] == lengths_before[at + 1]
    assert _done(resumed)["summary"]["steps_done"] == 9


@ON_POSTGRES_ONLY
def test_grpo_raises_the_sampled_reward_over_the_same_run_at_learning_rate_zero(tmp_path):
    """SFT warm start (the SFT child), then GRPO from its model at 2e-4 and at 0: same prompts and seeds."""
    base = gs.warm_start(tmp_path / "sft", JAX_CACHE)
    prompts = gs.prompt_file(tmp_path / "prompts.jsonl")
    curves = {}
    for rate in (gs.GRPO["learning_rate"], 0.0):
        job = gs.grpo_job(tmp_path / f"grpo-{rate}", base, prompts, learning_rate=rate)
        code, events = gs.run_child("runs.training.grpo", job, JAX_CACHE)
        assert code == 0
        assert _done(events)["status"] == "completed"
        rewards = gs.metrics(events, "reward_mean")
        curves[rate] = [rewards[step] for step in sorted(rewards)]
    trained, control = curves[gs.GRPO["learning_rate"]], curves[0.0]
    assert len(trained) == len(control) == gs.GRPO["max_steps"]
    assert trained[0] == control[0]  # the same first rollouts: a real control
    half = len(trained) // 2
    # Measured: 0.487 against 0.344 (docs/benchmarks.md); the control's own drift is a few hundredths.
    assert np.mean(trained[half:]) > np.mean(control[half:]) + 0.05
    assert np.mean(trained[half:]) > np.mean(trained[:half])


@ON_POSTGRES_ONLY
def test_a_lora_grpo_run_trains_only_its_adapter_and_exports_it_merged(tmp_path):
    prompts = gs.prompt_file(tmp_path / "prompts.jsonl", count=8)
    folder = tmp_path / "run"
    options = {**QUICK, "kl_mode": "low_var_kl", "top_p": 0.9, "method": "lora", "lora_rank": 4, "lora_alpha": 8.0}
    job = gs.grpo_job(folder, None, prompts, max_steps=3, checkpoint_every_steps=3, **options)
    code, events = gs.run_child("runs.training.grpo", job, JAX_CACHE)

    assert code == 0
    assert _done(events)["status"] == "completed"
    started = next(e for e in events if e["event"] == "started")
    # Rank-4 adapters on 7 projections × 2 layers: far fewer than the base's parameters.
    assert 0 < started["trainable_parameters"] < TINY_PARAMETERS // 10
    assert started["parameters"] == TINY_PARAMETERS + started["trainable_parameters"]
    assert sorted(gs.metrics(events, "kl")) == [1, 2, 3]
    assert all(v >= 0 for v in gs.metrics(events, "kl").values())  # low_var_kl is never negative
    final = folder / "final"
    assert (final / "model.safetensors").is_file()
    adapter = json.loads((final / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (4, 8.0)
    assert (folder / "base" / "model.safetensors").is_file()  # the preset's random base, merged into


@ON_POSTGRES_ONLY
@pytest.mark.parametrize(("family", "template"), [("qwen3", "chatml"), ("gemma3_text", "gemma")])
def test_grpo_trains_a_checkpoint_with_its_own_tokenizer_and_template(tmp_path, family, template):
    write_checkpoint(tmp_path / "base", family)
    prompts = gs.prompt_file(tmp_path / "prompts.jsonl", count=8)
    job = gs.grpo_job(
        tmp_path / "run",
        tmp_path / "base",
        prompts,
        max_steps=2,
        checkpoint_every_steps=2,
        chat_template=template,
        **QUICK,
    )
    code, events = gs.run_child("runs.training.grpo", job, JAX_CACHE)

    assert code == 0
    assert _done(events)["status"] == "completed"
    assert sorted(gs.metrics(events, "reward_mean")) == [1, 2]
    final = tmp_path / "run" / "final"
    assert json.loads((final / "config.json").read_text())["model_type"] == family
    assert (final / "tokenizer.json").is_file()  # the base's own tokenizer travels with the model


def test_the_last_steps_flushed_together_do_not_count_as_a_step_interval(monkeypatch):
    # Tunix reports the final steps of a run together: their near-zero gap is not a step. Counted,
    # it halved the seconds per step of a short run (a real-sized 5-step run read 6.1 s for 12 s steps).
    from collections import deque
    from types import SimpleNamespace

    from runs.training import grpo

    # The events module writes to the stdout it found at import (the child's real one): collect instead.
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(grpo, "emit", lambda event, **fields: emitted.append({"event": event, **fields}))
    rewards: Any = SimpleNamespace(batches=deque())
    hooks = grpo._Hooks(rewards, {}, grpo.GrpoSettings(max_steps=5, checkpoint_every_steps=100), None)
    for step, at in enumerate([0.0, 12.7, 24.2, 36.4, 36.41], start=1):
        monkeypatch.setattr("runs.training.grpo.time.perf_counter", lambda at=at: at)
        hooks.on_train_step_end(None, step, np.float32(0.5))
    assert hooks.intervals == pytest.approx([12.7, 11.5, 12.2])
    assert [e["step"] for e in emitted if e["event"] == "step"] == [1, 2, 3, 4, 5]
