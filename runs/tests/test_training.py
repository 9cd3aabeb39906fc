"""A real Tunix run of the tiny preset, end to end: the child trains, the worker records everything."""

from __future__ import annotations

import json

import pytest
from safetensors.numpy import load_file

from runs.choices import LogStream, RunStatus
from runs.execution import execute_run
from runs.models import Run, RunLog, RunMetric
from runs.tests.run_support import TINY_PARAMETERS, log_text, make_run, output

# The worker runs outside any transaction (close_old_connections() at the end
# would drop a test transaction's connection), so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_tiny_run_trains_and_records_metrics_logs_checkpoints_and_the_final_model(dataset):
    run = make_run(dataset, max_steps=20, eval_every_steps=5, checkpoint_every_steps=10)

    assert execute_run(run.pk, task_id="task-1") == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    assert run.error == ""
    assert run.exit_code == 0
    assert run.celery_task_id == "task-1"
    assert run.worker_host
    assert run.started_at is not None and run.finished_at is not None and run.heartbeat_at is not None
    assert run.started_at <= run.finished_at

    # Loss goes down.
    losses = list(RunMetric.objects.filter(run=run, name="train_loss").order_by("step").values_list("step", "value"))
    assert [step for step, _ in losses] == list(range(1, 21))
    assert losses[-1][1] < losses[0][1]
    assert losses[0][1] > 4.5  # a random-initialised byte model starts near ln(259) ≈ 5.56
    for name in ("eval_loss", "grad_norm", "learning_rate", "tokens_per_s"):
        assert RunMetric.objects.filter(run=run, name=name).exists(), name
    evals = run.metric_series("eval_loss")
    assert len(evals) >= 4  # every 5 steps
    assert evals[-1][1] < evals[0][1]
    learning_rates = [v for _, v in run.metric_series("learning_rate")]
    assert max(learning_rates) <= 0.01 + 1e-9
    assert all(v > 0 for _, v in run.metric_series("tokens_per_s"))

    # Log lines in order, numbered without gaps.
    seqs = list(RunLog.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(len(seqs)))
    text = log_text(run)
    assert "attempt 1 on" in text
    assert "training child started (pid " in text
    assert "step 20: loss" in text
    assert "checkpoint saved at step 10" in text
    assert text.count("checkpoint saved at step 20") == 1, "the final inventory is not a second save"
    assert "checkpoints kept: steps 10, 20" in text
    assert "finished: completed" in text
    assert RunLog.objects.filter(run=run, stream=LogStream.SYSTEM).exists()

    # The summary.
    summary = run.summary
    assert summary["steps_done"] == 20
    assert summary["resumed_at_step"] == 0
    assert summary["first_train_loss"] > summary["final_train_loss"]
    assert summary["final_eval_loss"] is not None
    assert summary["parameters"] == TINY_PARAMETERS
    assert summary["train_examples"] == 24
    assert summary["validation_examples"] == 8
    assert summary["tokens_per_s"] > 0
    assert summary["seconds_per_step"] > 0
    # The estimate, next to what was measured (platform cpu: no MFU).
    for key in ("weights_mb", "gradients_mb", "optimizer_mb", "activations_mb", "total_mb", "device_memory_mb"):
        assert summary[key] > 0, key
    assert summary["device_count"] == 1 and summary["fits"] is True
    assert summary["estimated_seconds_per_step"] > 0
    assert summary["calibration_basis"] == "default calibration"
    assert "mfu" not in summary
    assert summary["checkpoint_steps"] == [10, 20]
    assert len(summary["samples"]) == 2
    assert {"prompt", "output"} <= set(summary["samples"][0])
    assert '"event": "done"' in run.stdout_tail

    # Files: data, job, checkpoints and a final model in the Hugging Face layout.
    folder = output(run)
    assert (folder / "job.json").is_file()
    assert len((folder / "data" / "train.jsonl").read_text().splitlines()) == 24
    assert len((folder / "data" / "validation.jsonl").read_text().splitlines()) == 8
    assert sorted(p.name for p in (folder / "checkpoints").iterdir() if p.name.isdigit()) == ["10", "20"]
    final = folder / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["model_type"] == "qwen3"
    assert config["num_hidden_layers"] == 2
    weights = load_file(str(final / "model.safetensors"))
    assert weights["model.embed_tokens.weight"].shape == (259, 128)
    assert sum(w.size for w in weights.values()) == TINY_PARAMETERS
    assert json.loads((final / "tunixrt.json").read_text())["steps"] == 20


def test_a_run_that_is_not_pending_is_left_alone(dataset):
    run = make_run(dataset)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)
    assert execute_run(run.pk) == "not pending"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert not RunLog.objects.filter(run=run).exists()
    assert not output(run).exists()


def test_executing_a_deleted_run_is_a_no_op(db):
    assert execute_run(987_654) == "not pending"
