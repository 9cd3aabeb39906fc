"""LoRA runs (qwix) train only the adapters and export the model with them merged in."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.db import connection
from safetensors.numpy import load_file

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.tests.run_support import TINY_PARAMETERS, log_text, make_run, output

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason="LoRA training is slow on 2 CPU cores; it runs once, on the PostgreSQL + Redis pass",
    ),
]


def test_a_lora_run_completes_and_exports_a_merged_model(dataset):
    run = make_run(dataset, method="lora", lora_rank=4, lora_alpha=8, learning_rate=0.02, max_steps=15)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    summary = run.summary
    lora = summary["lora_parameters"]
    assert lora > 0
    assert summary["trainable_parameters"] == lora
    assert summary["parameters"] == TINY_PARAMETERS + lora
    assert summary["base_parameters"] == TINY_PARAMETERS
    assert summary["steps_done"] == 15
    assert summary["final_train_loss"] < summary["first_train_loss"]
    assert "LoRA rank 4 alpha 8.0 applied" in log_text(run)

    base = load_file(str(output(run) / "base" / "model.safetensors"))
    merged = load_file(str(output(run) / "final" / "model.safetensors"))
    assert merged.keys() == base.keys()  # a plain model: no adapter tensors left
    assert not any("lora" in key for key in merged)
    assert all(merged[k].shape == base[k].shape for k in base)
    # The adapters changed the projections; everything else is the frozen base.
    for adapted in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        assert not np.allclose(merged[adapted], base[adapted]), adapted
    np.testing.assert_array_equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    np.testing.assert_array_equal(merged["model.norm.weight"], base["model.norm.weight"])
    assert json.loads((output(run) / "final" / "config.json").read_text())["model_type"] == "qwen3"
    assert json.loads((output(run) / "final" / "tunixrt.json").read_text())["method"] == "lora"
