"""Dry runs check the data and estimate the cost without training anything."""

from __future__ import annotations

import pytest

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.models import RunMetric
from runs.tests.run_support import TINY_PARAMETERS, log_text, make_run, output

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_dry_run_reports_data_and_estimates_and_trains_nothing(dataset):
    # 100 tokens cut every example (each is ~124), yet leaves answer tokens to learn from.
    run = make_run(dataset, mode="dry_run", max_seq_length=100)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    assert run.exit_code == 0
    summary = run.summary
    assert summary["ok"] is True
    assert summary["examples"] == 32
    assert summary["train_examples"] == 24
    assert summary["validation_examples"] == 8
    assert 100 < summary["tokens_mean"] <= summary["tokens_max"] < 140
    assert summary["truncated"] == 32
    assert summary["dropped_no_answer_tokens"] == 0
    assert summary["max_seq_length"] == 100
    assert summary["parameters"] == TINY_PARAMETERS
    assert summary["trainable_parameters"] == TINY_PARAMETERS
    assert summary["tokens_per_step"] == 8 * 100
    # The estimate's breakdown, per device, against the host's memory (CPU).
    parts = ("weights_mb", "gradients_mb", "optimizer_mb", "activations_mb", "overhead_mb")
    assert all(summary[k] > 0 for k in parts)
    assert summary["total_mb"] == pytest.approx(sum(summary[k] for k in parts), abs=0.5)
    assert summary["estimated_memory_mb"] == summary["total_mb"]
    assert summary["weights_mb"] == pytest.approx(TINY_PARAMETERS * 4 / 2**20, abs=0.05)  # float32
    assert summary["optimizer_mb"] == pytest.approx(TINY_PARAMETERS * 8 / 2**20, abs=0.05)  # two Adam moments
    assert 0 < summary["logits_mb"] < summary["activations_mb"]
    assert summary["device_count"] == 1
    assert summary["platform"] == "cpu"
    assert summary["dtype"] == "float32"
    assert summary["device_memory_mb"] > summary["total_mb"]
    assert summary["fits"] is True
    assert summary["estimated_seconds_per_step"] > 0
    assert summary["calibration_basis"] == "default calibration"
    text = log_text(run)
    assert "dry_run: " in text
    assert "finished: completed" in text

    # Nothing trained: no steps, no metrics, no checkpoints, no model.
    assert "steps_done" not in summary
    assert not RunMetric.objects.filter(run=run).exists()
    assert not (output(run) / "checkpoints").exists()
    assert not (output(run) / "final").exists()
    assert (output(run) / "data" / "train.jsonl").is_file()


def test_a_dry_run_that_would_not_fit_in_memory_fails_and_says_why(dataset):
    # 512 × 8192 tokens of the tiny model: the attention scores alone are terabytes.
    run = make_run(dataset, mode="dry_run", batch_size=512, max_seq_length=8192)

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.summary["ok"] is False
    assert run.summary["fits"] is False
    assert run.summary["total_mb"] > run.summary["device_memory_mb"]
    assert run.error.startswith("Estimated ")
    assert "does not fit in" in run.error
    assert "Lower batch_size or max_seq_length." in run.error
    assert run.summary["problem"] == run.error
    assert not (output(run) / "checkpoints").exists()


def test_a_dry_run_whose_examples_leave_no_answer_fails_with_the_problem(dataset):
    run = make_run(dataset, mode="dry_run", max_seq_length=16)

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error == "No training example has an answer token left within max_seq_length."
    assert run.summary["ok"] is False
    assert run.summary["dropped_no_answer_tokens"] == 32
    assert run.summary["truncated"] == 32
    assert run.exit_code == 3
    assert not (output(run) / "checkpoints").exists()
