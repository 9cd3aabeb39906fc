"""Cost estimates: memory per device, seconds per step calibrated by this installation's runs, MFU."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import execute_run, prepare_job
from runs.models import Run
from runs.tests.run_support import finished_run, make_run
from runs.training import estimates
from runs.training.estimates import MB, ModelShape, memory_estimate
from runs.training.job import PRESETS

TINY = ModelShape.from_preset(PRESETS["tiny"])
TINY_PARAMS = 328_832
# Qwen3-0.6B's dimensions (config.json): the 151,936-token vocabulary makes the logits large.
QWEN3_06B = ModelShape(
    num_layers=28,
    embed_dim=1024,
    hidden_dim=3072,
    num_heads=16,
    head_dim=128,
    num_kv_heads=8,
    vocab_size=151_936,
)
QWEN3_06B_PARAMS = 596_049_920


def test_bfloat16_halves_weights_and_gradients_but_not_the_float32_optimizer_or_logits():
    f32 = memory_estimate(QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=4, seq_len=512)
    bf16 = memory_estimate(
        QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=4, seq_len=512, dtype="bfloat16"
    )

    assert f32.weights == QWEN3_06B_PARAMS * 4
    assert bf16.weights == f32.weights / 2
    assert bf16.gradients == f32.gradients / 2
    assert bf16.optimizer == f32.optimizer == QWEN3_06B_PARAMS * 8
    assert bf16.logits == f32.logits
    # XLA on CPU keeps bfloat16 activations in float32; on a GPU they are half as wide.
    assert bf16.activations == f32.activations
    bf16_gpu = memory_estimate(
        QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=4, seq_len=512, dtype="bfloat16", platform="gpu"
    )
    f32_gpu = memory_estimate(
        QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=4, seq_len=512, platform="gpu"
    )
    assert bf16_gpu.activations - bf16_gpu.logits < f32_gpu.activations - f32_gpu.logits
    assert bf16.total < f32.total


def test_fsdp_divides_weights_gradients_and_optimizer_over_the_devices_and_the_batch_too():
    one = memory_estimate(QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=8, seq_len=256)
    four = memory_estimate(QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=8, seq_len=256, devices=4)
    replicated = memory_estimate(
        QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=8, seq_len=256, devices=4, sharded=False
    )

    assert four.weights == one.weights / 4
    assert four.gradients == one.gradients / 4
    assert four.optimizer == one.optimizer / 4
    assert four.activations == pytest.approx(one.activations / 4)
    assert four.overhead == one.overhead
    assert replicated.weights == one.weights
    assert replicated.activations == four.activations
    assert four.as_dict()["device_count"] == 4
    with pytest.raises(ValueError, match="devices"):
        memory_estimate(TINY, TINY_PARAMS, TINY_PARAMS, batch_size=8, seq_len=128, devices=0)


def test_lora_keeps_gradients_and_optimizer_state_for_its_adapters_only():
    lora_params = 10_092_544  # rank 16 on every projection of Qwen3-0.6B
    full = memory_estimate(QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=4, seq_len=512)
    lora = memory_estimate(QWEN3_06B, QWEN3_06B_PARAMS + lora_params, lora_params, batch_size=4, seq_len=512)

    assert lora.gradients == lora_params * 4
    assert lora.optimizer == lora_params * 8
    assert lora.weights > full.weights
    assert full.total - lora.total > 5 * QWEN3_06B_PARAMS  # about 12 bytes per frozen parameter saved


def test_a_large_vocabulary_makes_the_logits_outweigh_several_layers_of_activations():
    memory = memory_estimate(QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS, batch_size=8, seq_len=1024)
    tiny = memory_estimate(TINY, TINY_PARAMS, TINY_PARAMS, batch_size=8, seq_len=1024)

    # 8 × 1024 tokens × 151,936 × 4 bytes × 4 copies, × what XLA:CPU holds beyond them.
    assert memory.logits == 8 * 1024 * 151_936 * 16 * estimates.ACTIVATION_FACTOR["cpu"]
    assert memory.logits / MB == pytest.approx(18_992 * estimates.ACTIVATION_FACTOR["cpu"], rel=1e-3)
    one_layer = (memory.activations - memory.logits) / QWEN3_06B.num_layers
    assert memory.logits > 5 * one_layer
    assert tiny.logits < tiny.activations / 10  # a 259-symbol byte vocabulary: negligible


def test_fits_compares_the_total_with_the_device_memory_less_headroom():
    kwargs: dict[str, Any] = {"batch_size": 8, "seq_len": 128}
    memory = memory_estimate(TINY, TINY_PARAMS, TINY_PARAMS, **kwargs)
    roomy = memory_estimate(TINY, TINY_PARAMS, TINY_PARAMS, **kwargs, device_memory=int(memory.total * 2))
    tight = memory_estimate(TINY, TINY_PARAMS, TINY_PARAMS, **kwargs, device_memory=int(memory.total * 1.05))
    unknown = memory_estimate(TINY, TINY_PARAMS, TINY_PARAMS, **kwargs, device_memory=None)

    assert roomy.fits is True
    assert tight.fits is False  # less than 10% to spare
    assert unknown.fits is None
    h100 = 80 * 2**30
    qwen = (QWEN3_06B, QWEN3_06B_PARAMS, QWEN3_06B_PARAMS)
    assert memory_estimate(*qwen, batch_size=1, seq_len=512, device_memory=h100).fits is True
    # Logits alone: 32 × 4096 × 151,936 × 16 bytes ≈ 296 GiB.
    assert memory_estimate(*qwen, batch_size=32, seq_len=4096, device_memory=h100).fits is False


def test_an_unknown_dtype_is_refused_by_name():
    with pytest.raises(ValueError, match="float8"):
        memory_estimate(TINY, TINY_PARAMS, TINY_PARAMS, batch_size=8, seq_len=128, dtype="float8")


def test_lora_steps_cost_fewer_flops_than_full_ones_and_attention_grows_with_the_square():
    full = estimates.step_flops(TINY, TINY_PARAMS, TINY_PARAMS, lora=False, batch_size=8, seq_len=128)
    lora = estimates.step_flops(TINY, TINY_PARAMS + 32_768, 32_768, lora=True, batch_size=8, seq_len=128)
    longer = estimates.step_flops(TINY, TINY_PARAMS, TINY_PARAMS, lora=False, batch_size=8, seq_len=256)

    assert full == 6 * TINY_PARAMS * 1024 + 12 * 8 * 128 * 128 * 4 * 32 * 2
    assert lora < full
    assert longer > 2 * full


def test_the_step_time_fit_recovers_overhead_rate_and_the_lora_overhead():
    truth = estimates.StepModel(overhead=0.25, flops_per_s=40e9, lora_overhead=0.02)
    points = [(flops, lora, truth.seconds(flops, lora)) for flops in (1e9, 5e9, 2e10, 8e10) for lora in (False, True)]

    fitted = estimates.fit_step_time(points)

    assert fitted.overhead == pytest.approx(0.25)
    assert fitted.flops_per_s == pytest.approx(40e9)
    assert fitted.lora_overhead == pytest.approx(0.02)
    full_only = estimates.fit_step_time([p for p in points if not p[1]])
    assert full_only.lora_overhead == 0.0 and full_only.flops_per_s == pytest.approx(40e9)
    with pytest.raises(ValueError, match="at least 2"):
        estimates.fit_step_time([(1e9, False, 1.0)])
    with pytest.raises(ValueError, match="do not determine"):
        estimates.fit_step_time([(1e9, False, 1.0), (1e9, False, 1.0)])


def test_a_gpu_step_estimate_scales_with_the_chips_peak():
    flops = 3.5e13  # a Qwen3-0.6B step of 8 × 1024 tokens
    h200 = estimates.seconds_per_step(flops, "gpu", device_kind="NVIDIA H200")
    a100 = estimates.seconds_per_step(flops, "gpu", device_kind="NVIDIA A100-SXM4-80GB")
    unknown = estimates.seconds_per_step(flops, "gpu", device_kind="Some Future GPU")

    assert h200 == pytest.approx(0.0054 + flops / (0.19 * 494e12))
    assert a100 > 2.5 * h200
    assert unknown == pytest.approx(0.0054 + flops / 95e12)  # the H200 fit itself
    assert estimates.seconds_per_step(flops, "gpu", device_kind="NVIDIA H200", dtype="bfloat16") < h200


def test_mfu_uses_the_chips_peak_and_knows_no_figure_for_an_unknown_chip():
    assert estimates.peak_flops("NVIDIA H200", "bfloat16") == 989e12
    assert estimates.peak_flops("NVIDIA A100-SXM4-80GB", "float32") == 156e12
    assert estimates.mfu(989e12 * 0.5, 1.0, "NVIDIA H100 80GB HBM3", "bfloat16") == pytest.approx(0.5)
    assert estimates.mfu(989e12, 1.0, "NVIDIA H100 80GB HBM3", "bfloat16", devices=4) == pytest.approx(0.25)
    assert estimates.mfu(1e12, 1.0, "cpu", "float32") is None


def test_the_run_estimate_applies_the_platforms_correction_and_names_its_basis():
    args = (TINY, TINY_PARAMS, TINY_PARAMS)
    kwargs: dict[str, Any] = {"lora": False, "batch_size": 8, "seq_len": 128, "dtype": "float32", "devices": 1}
    default = estimates.run_estimate(*args, **kwargs, device_memory=None, platform="cpu")
    calibrated = estimates.run_estimate(
        *args,
        **kwargs,
        device_memory=2**34,
        platform="cpu",
        calibration={"cpu": {"factor": 2.0, "runs": 3}, "gpu": {"factor": 9.0, "runs": 1}},
    )

    assert default["calibration_basis"] == "default calibration"
    assert calibrated["calibration_basis"] == "calibrated on 3 runs of this installation"
    assert calibrated["model_seconds_per_step"] == default["model_seconds_per_step"]
    assert calibrated["estimated_seconds_per_step"] == pytest.approx(2 * default["model_seconds_per_step"], abs=2e-4)
    assert default["fits"] is None and calibrated["fits"] is True
    assert calibrated["device_memory_mb"] == 16384
    assert set(estimates.ESTIMATE_KEYS) <= set(calibrated)


def _completed(dataset, platform: str, measured: float, estimated: float, minutes_ago: int, **overrides) -> Run:
    run = finished_run(dataset, files=False, **overrides)
    summary = {**run.summary, "platform": platform, "seconds_per_step": measured, "model_seconds_per_step": estimated}
    Run.objects.filter(pk=run.pk).update(summary=summary, finished_at=timezone.now() - timedelta(minutes=minutes_ago))
    return run


@pytest.mark.django_db
def test_the_calibration_is_the_median_ratio_of_the_last_completed_training_runs_per_platform(dataset):
    _completed(dataset, "cpu", 0.3, 0.1, 5)  # 3.0
    _completed(dataset, "cpu", 0.2, 0.1, 4)  # 2.0
    _completed(dataset, "cpu", 0.5, 0.1, 3)  # 5.0
    _completed(dataset, "gpu", 0.05, 0.1, 2)  # 0.5
    _completed(dataset, "cpu", 9.0, 0.1, 1, mode="dry_run")  # a dry run measures nothing
    failed = _completed(dataset, "cpu", 9.0, 0.1, 1)
    Run.objects.filter(pk=failed.pk).update(status=RunStatus.FAILED)
    _completed(dataset, "cpu", 0.0, 0.1, 1)  # no steady-state step: skipped
    finished_run(dataset, files=False)  # from before the breakdown: no model_seconds_per_step

    assert Run.objects.step_time_calibration() == {
        "cpu": {"factor": 3.0, "runs": 3},
        "gpu": {"factor": 0.5, "runs": 1},
    }
    assert Run.objects.step_time_calibration(limit=2) == {
        "cpu": {"factor": 3.5, "runs": 2},  # the newest two: 5.0 and 2.0
        "gpu": {"factor": 0.5, "runs": 1},
    }


@pytest.mark.django_db
def test_a_fresh_installation_has_no_calibration_and_the_job_file_carries_the_current_one(dataset):
    run = make_run(dataset)
    assert json.loads(Path(prepare_job(run)).read_text())["step_time_calibration"] == {}

    _completed(dataset, "cpu", 0.4, 0.1, 1)
    later = make_run(dataset)
    job = json.loads(Path(prepare_job(later)).read_text())

    assert job["step_time_calibration"] == {"cpu": {"factor": 4.0, "runs": 1}}


def _with_estimate(run: Run, device_memory: int, **measured: float) -> Run:
    estimate = estimates.run_estimate(
        TINY,
        TINY_PARAMS,
        TINY_PARAMS,
        lora=False,
        batch_size=8,
        seq_len=128,
        dtype="float32",
        devices=1,
        device_memory=device_memory,
        platform="cpu",
        calibration={"cpu": {"factor": 1.5, "runs": 4}},
    )
    Run.objects.filter(pk=run.pk).update(summary={**run.summary, **estimate, **measured})
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_the_run_page_shows_the_estimate_table_beside_the_measured_speed(page, dataset):
    run = _with_estimate(finished_run(dataset, files=False), 16 * 2**30, seconds_per_step=0.0512)

    text = page.get(f"/runs/{run.pk}/").content.decode()

    section = text[text.index('id="estimate"') :]
    assert '<span class="badge completed" id="estimate-fits">fits</span>' in section
    assert f"<tr><th>weights</th><td>{run.summary['weights_mb']}</td></tr>" in section
    for label in ("gradients", "optimizer state", "activations", "of which logits", "runtime overhead"):
        assert f"<tr><th>{label}</th>" in section, label
    assert f"<strong>{run.summary['total_mb']}</strong>" in section
    assert "<tr><th>available</th><td>16,384</td></tr>" in section
    assert "1 × cpu" in section and "float32" in section
    assert "(calibrated on 4 runs of this installation)" in section
    assert "<tr><th>measured seconds per step</th><td>0.0512</td></tr>" in section
    assert "<tr><th>tokens per second</th><td>5,000</td></tr>" in section
    assert "model FLOPs utilisation" not in section  # a CPU run has no peak to compare with
    # Shown once, in the estimate table, not again among the summary's keys.
    assert "<th>weights_mb</th>" not in text


@pytest.mark.django_db
def test_a_run_that_does_not_fit_says_so_and_a_gpu_run_shows_its_mfu(page, dataset):
    run = _with_estimate(finished_run(dataset, files=False), 64 * 2**20, mfu=0.4123, peak_device_mb=70123.5)

    text = page.get(f"/runs/{run.pk}/").content.decode()

    assert '<span class="badge failed" id="estimate-fits">does not fit</span>' in text
    assert "<tr><th>model FLOPs utilisation</th><td>41%</td></tr>" in text
    assert "<tr><th>measured peak on the device</th><td>70,123.5</td></tr>" in text


@pytest.mark.django_db
def test_the_runs_list_shows_tokens_per_second(page, dataset):
    run = finished_run(dataset, files=False)
    older = make_run(dataset)

    text = page.get("/runs/").content.decode()

    assert ">Tokens/s</a></th>" in text
    row = text[text.index(f'<tr id="run-{run.pk}"') :]
    assert '<td class="num">5,000</td>' in row[: row.index("</tr>")]
    pending = text[text.index(f'<tr id="run-{older.pk}"') :]
    assert '<td class="num">–</td>' in pending[: pending.index("</tr>")]


@pytest.mark.django_db
def test_the_api_returns_the_estimate_of_a_run(api, dataset):
    run = _with_estimate(finished_run(dataset, files=False), 16 * 2**30)
    bare = finished_run(dataset, files=False)

    body = api.get(f"/api/runs/{run.pk}").json()

    assert body["estimate"]["fits"] is True
    assert body["estimate"]["total_mb"] == run.summary["total_mb"]
    assert dict(body["estimate"]["memory"])["weights"] == run.summary["weights_mb"]
    assert body["estimate"]["calibration_basis"] == "calibrated on 4 runs of this installation"
    assert body["summary"]["optimizer_mb"] == run.summary["optimizer_mb"]
    assert api.get(f"/api/runs/{bare.pk}").json()["estimate"] is None


@pytest.mark.django_db(transaction=True)
def test_a_completed_run_calibrates_the_estimate_of_the_next_one(dataset):
    first = make_run(dataset, max_steps=8, eval_every_steps=100, checkpoint_every_steps=100)
    assert execute_run(first.pk) == RunStatus.COMPLETED
    first.refresh_from_db()
    measured, formula = first.summary["seconds_per_step"], first.summary["model_seconds_per_step"]
    assert first.summary["calibration_basis"] == "default calibration"
    assert measured > 0 and formula > 0

    second = make_run(dataset, mode="dry_run")
    assert execute_run(second.pk) == RunStatus.COMPLETED

    second.refresh_from_db()
    assert second.summary["calibration_basis"] == "calibrated on 1 run of this installation"
    assert second.summary["calibration_factor"] == pytest.approx(measured / formula, rel=1e-2)
    assert second.summary["estimated_seconds_per_step"] == pytest.approx(measured, rel=2e-2, abs=2e-4)
