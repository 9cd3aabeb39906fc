"""The launch form; runs.validation.validate_launch does the checking."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from runs.choices import ChatTemplate, KlMode, RunDevice, RunDtype, RunMethod, RunMode, RunObjective, RunStatus
from runs.hyperparameters import BOUNDS, OBJECTIVE_FIELDS
from runs.models import RUN_NAME_MAX, RUN_NOTES_MAX, EvalSet, Run
from runs.presentation import label
from runs.training import templates
from runs.training.rewards import DEFAULT_SPEC, MAX_WEIGHT
from runs.training.rewards import NAMES as REWARD_NAMES
from runs.validation import LaunchInvalid, as_written, base_model_choices, default_value, validate_launch
from traces.choices import DatasetStatus
from traces.models import Dataset
from tunixrt.models import WorkerHeartbeat

REWARD_HELP = {
    "correctness": "1 when the judge accepts the answer as the expected one",
    "format": "Reasoning: line, numbered steps, Answer: line (0 to 1)",
    "length": "minus the share of the token budget used (-1 to 0)",
}


class RunLaunchForm(forms.Form):
    dataset = forms.ChoiceField(choices=[])
    base_model = forms.ChoiceField(choices=[])
    objective = forms.ChoiceField(
        choices=RunObjective.choices,
        initial=RunObjective.SFT,
        required=False,  # omitted: SFT, as before methods existed
        label="Training method",
        help_text="SFT on an SFT dataset; DPO or ORPO on a preference dataset",
    )
    method = forms.ChoiceField(choices=RunMethod.choices, initial=RunMethod.FULL, label="Weights trained")
    parent = forms.ChoiceField(
        choices=[],
        required=False,
        label="Start from",
        help_text="a completed run's final model instead of the base model (keeps its base model)",
    )
    reference_run = forms.ChoiceField(
        choices=[],
        required=False,
        label="Reference model",
        help_text="DPO: the frozen model the policy is compared against",
    )
    kl_mode = forms.ChoiceField(choices=KlMode.choices, initial=KlMode.KL, required=False, label="KL mode")
    prompt_eval_set = forms.ChoiceField(
        choices=[],
        required=False,
        label="Prompts",
        help_text="GRPO: the dataset's prompts, or an eval set's (each item's expected answer is judged)",
    )
    dry_run = forms.BooleanField(required=False, label="Dry run (validate and estimate, no training)")
    chat_template = forms.ChoiceField(
        choices=[(templates.AUTO, templates.AUTO_LABEL), *ChatTemplate.choices], initial=templates.AUTO
    )
    device = forms.ChoiceField(choices=RunDevice.choices, initial=RunDevice.AUTO, required=False)
    dtype = forms.ChoiceField(choices=RunDtype.choices, initial=RunDtype.FLOAT32, required=False, label="Dtype")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        datasets = Dataset.objects.filter(status=DatasetStatus.READY).order_by("-created_at", "-id")[:200]
        dataset_field = cast(forms.ChoiceField, self.fields["dataset"])
        dataset_field.choices = [
            (d.key, f"{d.key} ({d.stats.get('train', 0)} train / {d.stats.get('validation', 0)} val)") for d in datasets
        ]
        cast(forms.ChoiceField, self.fields["base_model"]).choices = base_model_choices()
        finished = Run.objects.filter(status=RunStatus.COMPLETED, mode=RunMode.TRAIN).order_by("-created_at", "-id")
        runs = [(str(r.pk), f"{r.title} — {r.objective} {r.method}, {r.base_model}") for r in finished[:100]]
        cast(forms.ChoiceField, self.fields["parent"]).choices = [("", "The base model"), *runs]
        cast(forms.ChoiceField, self.fields["reference_run"]).choices = [("", "The model the run starts from"), *runs]
        sets = EvalSet.objects.order_by("name")[:200]
        cast(forms.ChoiceField, self.fields["prompt_eval_set"]).choices = [
            ("", "The dataset's train split"),
            *((s.name, f"eval set {s.name} ({s.item_count} items)") for s in sets),
        ]
        for name in REWARD_NAMES:
            self.fields[f"reward_{name}"] = forms.CharField(
                required=False,
                initial=DEFAULT_SPEC.get(name, 0.0),
                label=f"Reward weight: {name}",
                help_text=f"GRPO: {REWARD_HELP[name]} (0–{MAX_WEIGHT:g}; 0 leaves it out)",
            )
        for name, bound in BOUNDS.items():
            self.fields[name] = forms.CharField(
                required=False,
                initial=default_value(name),
                help_text=f"{bound.help} ({as_written(bound.low)}–{as_written(bound.high)})",
                label=label(name),
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        weights = {name: data.pop(f"reward_{name}", None) for name in REWARD_NAMES}
        payload = {k: v for k, v in data.items() if k != "dry_run" and v not in (None, "")}
        payload["mode"] = "dry_run" if data.get("dry_run") else "train"
        if payload.get("objective") == RunObjective.GRPO:
            # The inputs are shown for GRPO only, but always sent: other objectives ignore them.
            payload["rewards"] = self._reward_weights(weights)
        else:
            payload.pop("prompt_eval_set", None)
        for name in ("dataset", "base_model"):
            if name not in payload and self.data.get(name):
                payload[name] = self.data[name]
        if payload.get("parent"):
            payload.pop("base_model", None)  # a run started from another keeps that run's base model
        try:
            self.values = validate_launch(payload)
        except LaunchInvalid as exc:
            for key, messages in exc.errors.items():
                field = f"reward_{key.removeprefix('rewards.')}" if key.startswith("rewards.") else key
                self.add_error(field if field in self.fields else None, messages)
        return data

    def _reward_weights(self, weights: dict[str, Any]) -> dict[str, Any]:
        """The reward inputs as a spec for validate_launch (blank: 0; not a number: kept, refused there)."""
        spec: dict[str, Any] = {}
        for name, raw in weights.items():
            text = str(raw or "").strip()
            try:
                spec[name] = float(text) if text else 0.0
            except ValueError:
                spec[name] = text
        return spec

    def reward_fields(self) -> list[forms.BoundField]:
        """One weight per reward function (GRPO only)."""
        return [self[f"reward_{name}"] for name in REWARD_NAMES]

    def hyperparameter_fields(self) -> list[tuple[forms.BoundField, str]]:
        """Each hyperparameter with the objectives it belongs to ("" for all), for the form's show/hide."""
        return [(self[name], " ".join(OBJECTIVE_FIELDS.get(name, ()))) for name in BOUNDS]

    def objective_fields(self) -> list[tuple[forms.BoundField, str]]:
        """The choices that only some objectives use."""
        return [
            (self["parent"], ""),
            (self["reference_run"], "dpo"),
            (self["kl_mode"], "grpo"),
            (self["prompt_eval_set"], "grpo"),
        ]

    def device_fields(self) -> list[forms.BoundField]:
        return [self["device"], self["dtype"]]

    def training_workers(self) -> list[WorkerHeartbeat]:
        """The live training workers with the devices they reported, shown beside the device choice."""
        return WorkerHeartbeat.objects.training()


class RunDescribeForm(forms.Form):
    """A run's name and notes (the run page's inline editor)."""

    name = forms.CharField(max_length=RUN_NAME_MAX, required=False, help_text="what people call this run")
    notes = forms.CharField(
        max_length=RUN_NOTES_MAX, required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="free text"
    )
