"""Every launch field is checked once (runs.validation) and refused by name from the API, the form and the command."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.choices import RunMethod, RunMode, RunStatus
from runs.models import Run
from runs.tests.checkpoint_support import write_checkpoint
from runs.validation import validate_launch
from traces.choices import DatasetStatus, Split
from traces.models import Dataset, DatasetMember
from traces.tests.factories import make_trace

pytestmark = pytest.mark.django_db

# (field, value, part of the message); "json" marks values only JSON can carry.
OUT_OF_RANGE: list[tuple[str, Any, str]] = [
    ("learning_rate", 0, "between"),
    ("learning_rate", 1.5, "between"),
    ("learning_rate", 1e-9, "between"),
    ("max_steps", 0, "between"),
    ("max_steps", 1_000_001, "between"),
    ("batch_size", 0, "between"),
    ("batch_size", 513, "between"),
    ("max_seq_length", 8, "between"),
    ("max_seq_length", 9000, "between"),
    ("warmup_steps", -1, "between"),
    ("weight_decay", -0.1, "between"),
    ("weight_decay", 1.5, "between"),
    ("seed", -1, "between"),
    ("seed", 2**31, "between"),
    ("eval_every_steps", 0, "between"),
    ("checkpoint_every_steps", 0, "between"),
    ("timeout_seconds", 5, "between"),
    ("timeout_seconds", 8 * 24 * 3600, "between"),
    ("lora_rank", 0, "between"),
    ("lora_rank", 257, "between"),
    ("lora_alpha", 0, "between"),
]
WRONG_TYPE: list[tuple[str, Any, str]] = [
    ("max_steps", 1.5, "whole number"),
    ("max_steps", "ten", "whole number"),
    ("batch_size", "8x", "whole number"),
    ("learning_rate", "fast", "number"),
    ("learning_rate", "nan", "number"),
    ("weight_decay", "inf", "number"),
]
BAD_CHOICES = [
    ("method", "qlora", "Must be one of"),
    ("mode", "train_fast", "Must be one of"),
    ("chat_template", "vicuna", "Must be one of"),
]
BAD_BASE_MODELS = ["gpt2", "../x", "/etc", "/etc/passwd", "local:../x", "local:/etc", "local:missing", "local:"]


@pytest.fixture
def ready(dataset: Dataset) -> str:
    return dataset.key


def api_errors(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/runs", body, format="json")
    assert response.status_code == 400, response.content
    errors: dict[str, Any] = response.json()
    return errors


def page_errors(page: Any, data: dict[str, Any]) -> dict[str, Any]:
    form = {"base_model": "tiny", "method": "full", "chat_template": "gemma", **data}
    response = page.post("/runs/new/", form)
    assert response.status_code == 400, response.content[:2000]
    html = response.content.decode()
    assert 'class="error"' in html or "error-box" in html
    errors: dict[str, Any] = response.context["form"].errors
    return errors


def command_error(dataset: str, **values: Any) -> str:
    args = ["launch_run", "--dataset", dataset]
    if "base_model" in values:
        args += ["--preset", str(values.pop("base_model"))]
    for name, value in values.items():
        args += ["--set", f"{name}={value}"]
    with pytest.raises(CommandError) as info:
        call_command(*args)
    return str(info.value)


@pytest.mark.parametrize(("field", "value", "message"), OUT_OF_RANGE + WRONG_TYPE)
def test_a_bad_hyperparameter_is_refused_by_name_everywhere(api, page, ready, field, value, message):
    errors = api_errors(api, {"dataset": ready, field: value})
    assert list(errors) == [field]
    assert message in " ".join(errors[field])

    form_errors = page_errors(page, {"dataset": ready, field: value})
    assert list(form_errors) == [field]
    assert message in " ".join(form_errors[field])

    text = command_error(ready, **{field: value})
    assert text.startswith(f"{field}: ")
    assert message in text
    assert Run.objects.count() == 0


def test_a_boolean_is_not_a_number(api, ready):
    for field in ("learning_rate", "max_steps", "seed"):
        errors = api_errors(api, {"dataset": ready, field: True})
        assert list(errors) == [field]
    assert Run.objects.count() == 0


def test_numbers_may_arrive_as_text_or_whole_floats(ready):
    values = validate_launch({"dataset": ready, "max_steps": "12", "batch_size": 4.0, "learning_rate": "0.002"})
    assert values["max_steps"] == 12
    assert values["batch_size"] == 4
    assert values["learning_rate"] == 0.002


def test_missing_values_take_the_defaults(ready, settings):
    settings.RUN_DEFAULT_TIMEOUT_SECONDS = 1234
    values = validate_launch({"dataset": ready})
    assert values["base_model"] == "tiny"
    assert values["method"] == RunMethod.FULL
    assert values["mode"] == RunMode.TRAIN
    assert values["max_steps"] == 100
    assert values["timeout_seconds"] == 1234


def test_warmup_longer_than_training_is_refused(api, page, ready):
    errors = api_errors(api, {"dataset": ready, "max_steps": 5, "warmup_steps": 6})
    assert list(errors) == ["warmup_steps"]
    assert "max_steps" in errors["warmup_steps"][0]
    assert list(page_errors(page, {"dataset": ready, "max_steps": "5", "warmup_steps": "6"})) == ["warmup_steps"]
    assert command_error(ready, max_steps=5, warmup_steps=6).startswith("warmup_steps: ")
    assert Run.objects.count() == 0


@pytest.mark.parametrize(("field", "value", "message"), BAD_CHOICES)
def test_an_unknown_choice_is_refused_by_name(api, page, ready, field, value, message):
    errors = api_errors(api, {"dataset": ready, field: value})
    assert list(errors) == [field]
    assert message in errors[field][0]
    if field != "mode":  # the form has a dry-run checkbox instead of a mode field
        assert field in page_errors(page, {"dataset": ready, field: value})
    assert command_error(ready, **{field: value}).startswith(f"{field}: ")
    assert Run.objects.count() == 0


def test_unknown_fields_are_refused_by_name(api, ready):
    errors = api_errors(api, {"dataset": ready, "epochs": 3, "output_dir": "/tmp/x"})
    assert errors == {"epochs": ["Unknown field."], "output_dir": ["Unknown field."]}
    assert command_error(ready, epochs=3) == "epochs: Unknown field."
    assert Run.objects.count() == 0


def test_a_body_that_is_not_an_object_is_refused(api):
    response = api.post("/api/runs", [1, 2], format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


@pytest.mark.parametrize("base_model", BAD_BASE_MODELS)
def test_an_unknown_or_path_like_base_model_is_refused(api, page, ready, settings, base_model):
    # A real checkpoint folder outside MODELS_DIR: paths must never reach it.
    outside = settings.MODELS_DIR.parent / "x"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (outside / "model.safetensors").write_bytes(b"")
    errors = api_errors(api, {"dataset": ready, "base_model": base_model})
    assert list(errors) == ["base_model"]
    assert "Unknown base model" in errors["base_model"][0]
    assert "tiny" in errors["base_model"][0]  # it lists what may be chosen
    assert list(page_errors(page, {"dataset": ready, "base_model": base_model})) == ["base_model"]
    assert command_error(ready, base_model=base_model).startswith("base_model: Unknown base model")
    assert Run.objects.count() == 0


def test_a_base_model_that_is_not_text_is_refused(api, ready):
    assert list(api_errors(api, {"dataset": ready, "base_model": ["tiny"]})) == ["base_model"]


def test_a_local_folder_without_weights_is_not_a_base_model(api, ready, settings):
    write_checkpoint(settings.MODELS_DIR / "empty", "qwen3", tokenizer="byte")
    (settings.MODELS_DIR / "empty" / "model.safetensors").unlink()
    errors = api_errors(api, {"dataset": ready, "base_model": "local:empty"})
    assert list(errors) == ["base_model"]
    assert "No *.safetensors weights." in errors["base_model"][0]
    write_checkpoint(settings.MODELS_DIR / "empty", "qwen3", tokenizer="byte")
    assert validate_launch({"dataset": ready, "base_model": "local:empty"})["base_model"] == "local:empty"


@pytest.mark.parametrize("key", ["nope@v1", "arith@v2", "arith", "", "arith@vx", "../arith@v1"])
def test_an_unknown_dataset_is_refused(api, page, ready, key):
    errors = api_errors(api, {"dataset": key} if key else {})
    assert list(errors) == ["dataset"]
    assert list(page_errors(page, {"dataset": key})) == ["dataset"]
    if key:
        assert command_error(key).startswith("dataset: ")
    assert Run.objects.count() == 0


@pytest.mark.parametrize("status", [DatasetStatus.PENDING, DatasetStatus.BUILDING, DatasetStatus.FAILED])
def test_a_dataset_that_is_not_ready_is_refused(api, page, status):
    Dataset.objects.create(name="unready", version=1, status=status)
    errors = api_errors(api, {"dataset": "unready@v1"})
    assert errors["dataset"] == [f"Dataset unready@v1 is {status}, not ready."]
    # The form only offers ready datasets.
    assert list(page_errors(page, {"dataset": "unready@v1"})) == ["dataset"]
    assert command_error("unready@v1") == f"dataset: Dataset unready@v1 is {status}, not ready."
    assert Run.objects.count() == 0


def test_a_dataset_without_training_examples_is_refused(api):
    held_out = Dataset.objects.create(name="held-out", version=1)
    DatasetMember.objects.create(dataset=held_out, trace=make_trace(), position=0, split=Split.VALIDATION)
    errors = api_errors(api, {"dataset": "held-out@v1"})
    assert errors["dataset"] == ["Dataset held-out@v1 has no training examples."]
    assert Run.objects.count() == 0


def test_every_bad_field_is_named_at_once(api, ready):
    errors = api_errors(
        api, {"dataset": ready, "max_steps": 0, "learning_rate": "x", "method": "qlora", "base_model": "../x"}
    )
    assert set(errors) == {"max_steps", "learning_rate", "method", "base_model"}


def test_a_valid_launch_saves_a_pending_run_and_queues_it_after_commit(
    api, ready, sent_tasks, django_capture_on_commit_callbacks
):
    body = {"dataset": ready, "max_steps": 30, "method": "lora", "lora_rank": 4, "lora_alpha": 8, "seed": 7}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/api/runs", body, format="json")
        assert sent_tasks == []  # nothing reaches the broker before the row is committed
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == RunStatus.PENDING
    assert data["dataset"] == ready
    assert data["created_by"] == "alice"
    assert data["config"]["max_steps"] == 30
    assert data["config"]["method"] == "lora"
    assert data["config"]["lora_rank"] == 4
    assert data["config"]["lora_alpha"] == 8.0
    assert data["config"]["seed"] == 7
    run = Run.objects.get()
    assert run.folder_token
    assert run.output_dir.endswith(f"/runs/{run.pk}-{run.folder_token}")
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent_tasks == [(run.pk,)]  # the task takes the run's id, never the instance
    run.refresh_from_db()
    assert run.celery_task_id == "task-1"
    assert run.status == RunStatus.PENDING


def test_a_valid_page_launch_redirects_to_the_new_run(page, ready, sent_tasks, django_capture_on_commit_callbacks):
    form = {
        "dataset": ready,
        "base_model": "tiny",
        "method": "full",
        "chat_template": "plain",
        "max_steps": "25",
        "dry_run": "on",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post("/runs/new/", form)
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert run.mode == RunMode.DRY_RUN
    assert run.chat_template == "plain"
    assert run.max_steps == 25
    assert run.created_by is not None and run.created_by.username == "alice"
    assert sent_tasks == [(run.pk,)]


def test_the_command_launches_with_overrides(ready, sent_tasks, capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("launch_run", "--dataset", ready, "--set", "max_steps=15", "--set", "mode=dry_run")
    run = Run.objects.get()
    assert capsys.readouterr().out.strip() == f"Run {run.pk} queued (dry_run, tiny, {ready})."
    assert run.max_steps == 15
    assert run.created_by is None
    assert sent_tasks == [(run.pk,)]


def test_the_command_refuses_a_malformed_override(ready):
    with pytest.raises(CommandError, match="NAME=VALUE"):
        call_command("launch_run", "--dataset", ready, "--set", "max_steps")
    assert Run.objects.count() == 0


def test_the_api_takes_json_only(api, ready):
    response = api.post("/api/runs", {"dataset": ready, "max_steps": "12"}, format="multipart")
    assert response.status_code == 415
    assert Run.objects.count() == 0
