"""A run chooses its device (auto, cpu, gpu) and dtype (float32, bfloat16); several devices shard the model (FSDP)."""

from __future__ import annotations

import json
import math
import shutil
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.models import Run
from runs.tests.run_support import FAST, log_text, make_run, output
from runs.training import devices
from runs.validation import validate_launch
from tunixrt import jobs
from tunixrt.models import WorkerHeartbeat

GPU = {"platform": "gpu", "count": 1, "devices": [{"kind": "NVIDIA H200", "memory_bytes": 2**37}], "jax": "0.10.2"}
CPU = {"platform": "cpu", "count": 2, "devices": [{"kind": "cpu", "memory_bytes": 2**34}] * 2, "jax": "0.10.2"}
TWO_CPUS_FLAGS = "--xla_force_host_platform_device_count=2"

training_once = pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="a real training run per test; it runs once, on the PostgreSQL + Redis pass",
)


def training_worker(report: dict[str, Any], hostname: str = "celery@trainer") -> None:
    WorkerHeartbeat.beat(hostname, 1, 1, timezone.now(), queues=["training"], devices=report)


def test_the_choices_are_the_ones_the_training_child_understands():
    from runs.choices import RunDevice, RunDtype

    assert tuple(RunDevice.values) == devices.DEVICE_CHOICES
    assert tuple(RunDtype.values) == devices.DTYPE_CHOICES


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [("device", "tpu"), ("device", 3), ("dtype", "float16"), ("dtype", "")])
def test_an_unknown_device_or_dtype_is_a_400_naming_the_field_and_stores_nothing(api, dataset, field, value):
    response = api.post("/api/runs", {"dataset": dataset.key, **FAST, field: value}, format="json")

    if value == "":  # empty means the default, as for the other choices
        assert response.status_code == 201, response.content
        assert response.json()["config"][field] == "float32"
        return
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_gpu_without_a_live_training_worker_reporting_one_is_refused_naming_device(api, dataset):
    response = api.post("/api/runs", {"dataset": dataset.key, **FAST, "device": "gpu"}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["device"]
    message = " ".join(response.json()["device"])
    assert "No live training worker reports a GPU" in message
    assert "Choose auto or cpu" in message
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_gpu_with_only_cpu_training_workers_is_refused_naming_what_they_have(api, dataset):
    training_worker(CPU)
    WorkerHeartbeat.beat("celery@gpu-builds", 1, 1, timezone.now(), queues=["default"], devices=GPU)  # not training

    response = api.post("/api/runs", {"dataset": dataset.key, **FAST, "device": "gpu"}, format="json")

    assert response.status_code == 400
    assert "celery@trainer: CPU (2 devices" in " ".join(response.json()["device"])
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_gpu_is_accepted_when_a_live_training_worker_reports_one(api, dataset, sent_tasks):
    training_worker(GPU)

    response = api.post(
        "/api/runs", {"dataset": dataset.key, **FAST, "device": "gpu", "dtype": "bfloat16"}, format="json"
    )

    assert response.status_code == 201, response.content
    run = Run.objects.get()
    assert (run.device, run.dtype) == ("gpu", "bfloat16")
    detail = api.get(f"/api/runs/{run.pk}").json()
    assert detail["config"]["device"] == "gpu"
    assert detail["config"]["dtype"] == "bfloat16"
    listed = api.get("/api/runs").json()["results"][0]
    assert (listed["device"], listed["dtype"]) == ("gpu", "bfloat16")


@pytest.mark.django_db
def test_auto_is_accepted_with_no_worker_at_all(api, dataset, sent_tasks):
    response = api.post("/api/runs", {"dataset": dataset.key, **FAST}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["config"]["device"] == "auto"
    assert response.json()["config"]["dtype"] == "float32"


@pytest.mark.django_db
def test_the_launch_form_refuses_gpu_on_the_device_field_and_shows_the_choices_on_the_run_page(page, dataset):
    form = {"dataset": dataset.key, "base_model": "tiny", "method": "full", "chat_template": "gemma"}
    response = page.post("/runs/new/", {**form, "device": "gpu", "dtype": "bfloat16"})

    assert response.status_code == 400
    assert "No live training worker reports a GPU" in response.context["form"].errors["device"][0]
    assert not Run.objects.exists()

    response = page.post("/runs/new/", {**form, "device": "cpu", "dtype": "bfloat16"})
    assert response.status_code == 302
    run = Run.objects.get()
    assert (run.device, run.dtype) == ("cpu", "bfloat16")
    body = page.get(f"/runs/{run.pk}/").content.decode()
    assert "<th>Device</th><td>CPU</td>" in body
    assert "<th>Dtype</th><td>bfloat16</td>" in body


@pytest.mark.django_db
def test_the_job_file_carries_device_and_dtype(dataset):
    from runs.execution import prepare_job

    run = make_run(dataset, device="cpu", dtype="bfloat16")
    job = json.loads(prepare_job(run).read_text())

    assert (job["device"], job["dtype"]) == ("cpu", "bfloat16")


@training_once
@pytest.mark.django_db(transaction=True)
def test_a_bfloat16_run_trains_to_a_finite_falling_loss(dataset):
    run = make_run(dataset, device="cpu", dtype="bfloat16", max_steps=8, checkpoint_every_steps=8)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    losses = [v for _, v in run.metric_series("train_loss")]
    assert len(losses) == 8
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0]
    assert math.isfinite(run.summary["final_eval_loss"])
    assert "bfloat16 on cpu" in log_text(run)
    assert run.summary["devices"]["platform"] == "cpu"
    assert (output(run) / "final" / "model.safetensors").is_file()


@training_once
@pytest.mark.django_db(transaction=True)
def test_two_devices_shard_the_model_and_a_checkpoint_written_on_them_resumes(dataset, settings):
    settings.TRAINING_XLA_FLAGS = TWO_CPUS_FLAGS
    run = make_run(dataset, device="cpu", max_steps=6, checkpoint_every_steps=3, eval_every_steps=3)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    text = log_text(run)
    assert "CPU (2 devices" in text
    assert "mesh fsdp=2 tp=1; parameters sharded over 2 devices" in text
    assert run.summary["devices"]["count"] == 2
    assert run.summary["devices"]["mesh"] == {"fsdp": 2, "tp": 1}
    assert run.devices_used.endswith("mesh fsdp=2 tp=1")
    first = [v for _, v in run.metric_series("train_loss")]
    assert len(first) == 6
    assert all(math.isfinite(v) for v in first)
    assert first[-1] < first[0]

    # The worker died after the step-3 checkpoint: the next attempt restores it onto the two devices.
    shutil.rmtree(output(run) / "checkpoints" / "6")
    shutil.rmtree(output(run) / "final")
    stale = timezone.now() - timedelta(minutes=10)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=stale, finished_at=None)
    assert jobs.reap_kind(Run)["requeued"] == 1

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail[-2000:])
    assert run.summary["resumed_at_step"] == 3
    assert run.summary["steps_done"] == 6
    assert math.isfinite(run.summary["final_train_loss"])
    assert "resumed from the checkpoint at step 3" in log_text(run)
    assert (output(run) / "final" / "model.safetensors").is_file()


@pytest.mark.django_db
def test_the_launch_command_refuses_gpu_and_a_bad_dtype_by_name(dataset):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"^device: No live training worker reports a GPU"):
        call_command("launch_run", "--dataset", dataset.key, "--set", "device=gpu")
    with pytest.raises(CommandError, match=r"^dtype: Must be one of float32, bfloat16"):
        call_command("launch_run", "--dataset", dataset.key, "--set", "dtype=float64")
    assert not Run.objects.exists()


@training_once
@pytest.mark.django_db(transaction=True)
def test_a_queued_gpu_run_on_a_worker_without_one_fails_saying_why(dataset):
    # Accepted while a GPU worker was live; the worker that took it has no CUDA-enabled JAX.
    values = validate_launch({"dataset": dataset.key, **FAST})
    run = Run.objects.create(**{**values, "device": "gpu"})
    run.assign_folder()
    run.save(update_fields=["output_dir", "folder_token"])

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.error.startswith("JAX 0.10.2 found no device for device=gpu")
    assert "make install-gpu" in run.error
    assert "Traceback" not in run.stderr_tail
