"""The launch form; runs.validation.validate_launch does the checking."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from runs.choices import ChatTemplate, RunDevice, RunDtype, RunMethod
from runs.hyperparameters import BOUNDS
from runs.models import RUN_NAME_MAX, RUN_NOTES_MAX
from runs.presentation import label
from runs.training import templates
from runs.validation import LaunchInvalid, as_written, base_model_choices, default_value, validate_launch
from traces.choices import DatasetStatus
from traces.models import Dataset
from tunixrt.models import WorkerHeartbeat


class RunLaunchForm(forms.Form):
    dataset = forms.ChoiceField(choices=[])
    base_model = forms.ChoiceField(choices=[])
    method = forms.ChoiceField(choices=RunMethod.choices, initial=RunMethod.FULL)
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
            (d.key, f"{d.key} ({d.stats.get('train', 0)} train / {d.stats.get('validation', 0)} val)")
            for d in datasets
        ]
        cast(forms.ChoiceField, self.fields["base_model"]).choices = base_model_choices()
        for name, bound in BOUNDS.items():
            self.fields[name] = forms.CharField(
                required=False,
                initial=default_value(name),
                help_text=f"{bound.help} ({as_written(bound.low)}–{as_written(bound.high)})",
                label=label(name),
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        payload = {k: v for k, v in data.items() if k != "dry_run" and v not in (None, "")}
        payload["mode"] = "dry_run" if data.get("dry_run") else "train"
        for name in ("dataset", "base_model"):
            if name not in payload and self.data.get(name):
                payload[name] = self.data[name]
        try:
            self.values = validate_launch(payload)
        except LaunchInvalid as exc:
            for key, messages in exc.errors.items():
                self.add_error(key if key in self.fields else None, messages)
        return data

    def hyperparameter_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in BOUNDS]

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
