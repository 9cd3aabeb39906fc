"""A checkpoint folder under MODELS_DIR (Hugging Face Qwen3 layout) is a base model: `local:<folder>`."""

from __future__ import annotations

import shutil

import pytest
from django.db import connection

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.tests.run_support import RANDOM_INIT_LOSS, log_text, make_run, output
from runs.validation import base_model_choices, resolve_base_model

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason="two training runs back to back are slow on 2 CPU cores; they run on the PostgreSQL + Redis pass",
    ),
]


def test_a_trained_model_fine_tunes_again_from_a_local_checkpoint(dataset, settings):
    # A finished run's final/ folder is a checkpoint in the HF Qwen3 layout.
    first = make_run(dataset)
    assert execute_run(first.pk) == RunStatus.COMPLETED
    first.refresh_from_db()
    shutil.copytree(output(first) / "final", settings.MODELS_DIR / "arith-base")

    assert ("local:arith-base", "arith-base (local checkpoint)") in base_model_choices()
    assert resolve_base_model("local:arith-base") == {
        "kind": "local",
        "name": "arith-base",
        "path": str(settings.MODELS_DIR / "arith-base"),
    }

    second = make_run(dataset, base_model="local:arith-base")
    assert execute_run(second.pk) == RunStatus.COMPLETED

    second.refresh_from_db()
    assert second.status == RunStatus.COMPLETED, (second.error, log_text(second)[-3000:])
    loaded = second.summary
    # It starts where the first run ended, far below a random model's loss.
    assert first.summary["first_train_loss"] > RANDOM_INIT_LOSS - 0.5
    assert loaded["first_train_loss"] < RANDOM_INIT_LOSS - 1.5
    assert loaded["first_train_loss"] < first.summary["first_train_loss"] - 1.5
    assert loaded["parameters"] == first.summary["parameters"]
    assert "'kind': 'local'" in log_text(second)
    final = output(second) / "final"
    assert (final / "model.safetensors").is_file()
    assert (final / "config.json").is_file()
    assert (final / "tokenizer_config.json").is_file()
