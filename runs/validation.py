"""Validation of run launches: one function shared by the API, the launch form and `launch_run`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.basemodels import LOCAL_PREFIX, find_base_model, trainable_models
from runs.choices import (
    ChatTemplate,
    KlMode,
    RunDevice,
    RunDtype,
    RunMethod,
    RunMode,
    RunObjective,
    RunStatus,
)
from runs.hyperparameters import BOUNDS, Bound
from runs.training import templates
from runs.training.job import PRESETS
from runs.training.rewards import DEFAULT_SPEC, RewardSpecInvalid, validate_spec
from traces.choices import DatasetStatus, Split
from traces.models import Dataset

Errors = dict[str, list[str]]


CHOICES: dict[str, tuple[list[str], str]] = {
    "objective": (list(RunObjective.values), RunObjective.SFT),
    "method": (list(RunMethod.values), RunMethod.FULL),
    "kl_mode": (list(KlMode.values), KlMode.KL),
    # Omitted or "auto": the base model's own template, stored concretely (see default_template).
    "chat_template": ([templates.AUTO, *ChatTemplate.values], templates.AUTO),
    "device": (list(RunDevice.values), RunDevice.AUTO),
    "dtype": (list(RunDtype.values), RunDtype.FLOAT32),
    "mode": (list(RunMode.values), RunMode.TRAIN),
}
KNOWN = {"dataset", "base_model", "parent", "reference_run", "rewards", "prompt_eval_set", *BOUNDS, *CHOICES}
# The dataset kind each objective trains on (traces.Dataset.kind; datasets from before kinds are "sft").
DATASET_KIND = {
    RunObjective.SFT: "sft",
    RunObjective.DPO: "preference",
    RunObjective.ORPO: "preference",
    RunObjective.GRPO: "sft",
}


def as_written(value: float) -> str:
    """A bound as people write it: 1,000,000 and 0.0000001, not 1e+06 and 1e-07."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return format(Decimal(repr(float(value))), "f")


class LaunchInvalid(ValueError):
    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def local_models() -> list[str]:
    """Folders under MODELS_DIR that the catalog finds usable and the trainer can train."""
    return [m.name for m in trainable_models()]


def base_model_choices() -> list[tuple[str, str]]:
    presets = [(name, preset.label) for name, preset in PRESETS.items()]
    return presets + [(f"{LOCAL_PREFIX}{name}", f"{name} (local checkpoint)") for name in local_models()]


def resolve_base_model(value: str) -> dict[str, Any]:
    """The job description of a base model name; never a path taken from the request."""
    if value in PRESETS:
        return {"kind": "preset", "name": value}
    name = value.removeprefix(LOCAL_PREFIX)
    if value.startswith(LOCAL_PREFIX) and name in local_models():
        return {"kind": "local", "name": name, "path": str(Path(settings.MODELS_DIR) / name)}
    raise KeyError(value)


def gpu_unavailable() -> str:
    """Why a run cannot ask for a GPU now (empty when a live training worker reports one).

    Checked at launch only: `auto` is always accepted and uses a GPU where the worker has one;
    a queued `gpu` run whose worker later loses its GPU fails in the child with JAX's error.
    """
    from tunixrt.models import WorkerHeartbeat

    workers = WorkerHeartbeat.objects.training()
    if any(w.has_gpu for w in workers):
        return ""
    if not workers:
        return (
            "No live training worker reports a GPU (no worker consuming the training queue is running). "
            "Choose auto or cpu, or start a GPU worker (make install-gpu)."
        )
    seen = "; ".join(f"{w.hostname}: {w.devices_summary}" for w in workers)
    return f"No live training worker reports a GPU ({seen}). Choose auto or cpu, or start a GPU worker."


def default_template(base_model: str) -> str:
    """The chat template a run on this base model gets unless it names one (BaseModel.default_chat_template)."""
    if base_model in PRESETS:
        return str(ChatTemplate.GEMMA)
    entry = find_base_model(base_model)
    return entry.default_chat_template if entry and entry.default_chat_template else templates.DEFAULT


def default_value(name: str) -> Any:
    """A hyperparameter's launch default (the timeout's is a setting)."""
    if name == "timeout_seconds":
        return settings.RUN_DEFAULT_TIMEOUT_SECONDS
    return BOUNDS[name].default


def _number(errors: Errors, name: str, raw: Any, bound: Bound) -> Any:
    if isinstance(raw, bool):
        errors[name] = ["Must be a number."]
        return None
    try:
        if bound.kind is int:
            value: Any = int(raw) if not isinstance(raw, float) or raw.is_integer() else None
            if value is None:
                raise ValueError
        else:
            value = float(raw)
            if math.isnan(value) or math.isinf(value):
                raise ValueError
    except (TypeError, ValueError):
        errors[name] = ["A whole number is required." if bound.kind is int else "Must be a number."]
        return None
    if not bound.low <= value <= bound.high:
        errors[name] = [f"Ensure this value is between {as_written(bound.low)} and {as_written(bound.high)}."]
        return None
    return value


def _completed_run(errors: Errors, name: str, raw: Any) -> Any:
    """The completed training run with a final model that `raw` names (an id), or None with the error set."""
    from runs.evaluation.running import final_model_dir
    from runs.models import Run

    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit():
        errors[name] = ["Must be a run id (a whole number)."]
        return None
    run = Run.objects.filter(pk=int(str(raw).strip())).first()
    if run is None:
        errors[name] = [f"No run {raw}."]
        return None
    if run.status != RunStatus.COMPLETED or run.mode != RunMode.TRAIN:
        errors[name] = [f"Run {run.pk} is not a completed training run ({run.get_status_display().lower()})."]
        return None
    if final_model_dir(run) is None:
        errors[name] = [f"Run {run.pk} has no final model on disk."]
        return None
    return run


def _check_lineage(data: Mapping[str, Any], values: dict[str, Any], errors: Errors) -> None:
    """`parent` (the run whose final model this one starts from) and DPO's `reference_run`.

    A child run keeps its parent's base model (the one its tokenizer and evaluation baseline
    come from) and, unless it names one, its chat template.
    """
    raw = data.get("parent")
    if raw not in (None, ""):
        parent = _completed_run(errors, "parent", raw)
        if parent is not None:
            values["parent"] = parent
            given = data.get("base_model")
            if given not in (None, "", parent.base_model):
                errors["base_model"] = [
                    f"A run started from run {parent.pk} keeps its base model {parent.base_model!r}; "
                    "leave base_model out."
                ]
            else:
                errors.pop("base_model", None)
                values["base_model"] = parent.base_model
            if data.get("chat_template") in (None, "", templates.AUTO):
                values["chat_template"] = parent.chat_template
    raw = data.get("reference_run")
    if raw not in (None, ""):
        if values.get("objective") != RunObjective.DPO:
            errors["reference_run"] = ["Only a DPO run has a reference model (ORPO, SFT and GRPO take none here)."]
            return
        reference = _completed_run(errors, "reference_run", raw)
        if reference is not None:
            if "base_model" in values and reference.base_model != values["base_model"]:
                errors["reference_run"] = [
                    f"Run {reference.pk} was trained from {reference.base_model!r}, not {values['base_model']!r}: "
                    "the reference must share the run's tokenizer."
                ]
            else:
                values["reference_run"] = reference


def _check_grpo_sources(data: Mapping[str, Any], values: dict[str, Any], errors: Errors) -> None:
    """GRPO's reward weights (`rewards`, default DEFAULT_SPEC) and optional prompt eval set.

    Both belong to GRPO only: another objective naming one is refused, and stores neither.
    """
    from runs.models import EvalSet

    grpo = values.get("objective") == RunObjective.GRPO
    raw = data.get("rewards")
    if raw is None or raw == "":
        values["rewards"] = dict(DEFAULT_SPEC) if grpo else None
    elif not grpo:
        errors["rewards"] = ["Only a GRPO run has reward weights."]
    else:
        try:
            values["rewards"] = validate_spec(raw, "rewards")
        except RewardSpecInvalid as exc:
            for key, reason in exc.errors.items():
                errors[key] = [reason[:1].upper() + reason[1:] + "."]
    raw = data.get("prompt_eval_set")
    values["prompt_eval_set"] = None
    if raw in (None, ""):
        return
    if not grpo:
        errors["prompt_eval_set"] = ["Only a GRPO run trains on an eval set's prompts."]
        return
    eval_set = EvalSet.objects.filter(name=raw).first() if isinstance(raw, str) else None
    if eval_set is None:
        errors["prompt_eval_set"] = [f"No eval set {raw!r}."]
    elif not eval_set.items.exists():
        errors["prompt_eval_set"] = [f"Eval set {eval_set.name} has no items."]
    else:
        values["prompt_eval_set"] = eval_set


def validate_launch(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a launch request; return Run field values or raise LaunchInvalid naming each bad field."""
    errors: Errors = {}
    for field in data:
        if field not in KNOWN:
            errors[str(field)] = ["Unknown field."]
    values: dict[str, Any] = {}

    key = data.get("dataset")
    if not isinstance(key, str) or not key:
        errors["dataset"] = ["This field is required (a dataset key such as name@v1)."]
    else:
        try:
            dataset = Dataset.objects.by_key(key)
        except Dataset.DoesNotExist:
            errors["dataset"] = [f"No dataset {key!r}."]
        else:
            if dataset.status != DatasetStatus.READY:
                errors["dataset"] = [f"Dataset {key} is {dataset.status}, not ready."]
            elif not (
                dataset.members.filter(split=Split.TRAIN).exists() or int((dataset.stats or {}).get("train") or 0)
            ):
                errors["dataset"] = [f"Dataset {key} has no training examples."]
            else:
                values["dataset"] = dataset

    base = data.get("base_model") or "tiny"
    if not isinstance(base, str):
        errors["base_model"] = ["Must be a preset name or local:<folder>."]
    else:
        try:
            resolve_base_model(base)
            values["base_model"] = base
        except KeyError:
            known = ", ".join(name for name, _ in base_model_choices())
            entry = find_base_model(base)
            if entry is not None:
                errors["base_model"] = [
                    f"Base model {base!r} cannot be trained: {entry.reason} Choose one of: {known}."
                ]
            else:
                errors["base_model"] = [f"Unknown base model {base!r}; choose one of: {known}."]

    for name, (choices, default) in CHOICES.items():
        raw = data.get(name)
        if raw in (None, ""):
            values[name] = default
        elif raw not in choices:
            errors[name] = [f"Must be one of {', '.join(choices)}."]
        else:
            values[name] = raw

    for name, bound in BOUNDS.items():
        raw = data.get(name)
        if raw is None or raw == "":
            values[name] = default_value(name)
            continue
        value = _number(errors, name, raw, bound)
        if value is not None:
            values[name] = value

    _check_lineage(data, values, errors)
    _check_grpo_sources(data, values, errors)
    objective = values.get("objective")
    chosen = values.get("dataset")
    if objective is not None and chosen is not None:
        dataset = chosen
        # Datasets gain their kind with preference datasets; until then every dataset is an SFT one.
        kind = getattr(dataset, "kind", None)
        wanted = DATASET_KIND[RunObjective(objective)]
        if kind is not None and kind != wanted:
            errors["dataset"] = [
                f"Dataset {dataset.key} is a {kind} dataset; a {objective} run needs a {wanted} dataset."
            ]

    if values.get("chat_template") == templates.AUTO and "base_model" in values:
        values["chat_template"] = default_template(values["base_model"])
    if "warmup_steps" in values and "max_steps" in values and values["warmup_steps"] > values["max_steps"]:
        errors["warmup_steps"] = ["Must not exceed max_steps."]
    if values.get("device") == RunDevice.GPU:
        problem = gpu_unavailable()
        if problem:
            errors["device"] = [problem]
    if errors:
        raise LaunchInvalid(errors)
    return values
