"""The dataset build form. Validation is the shared `validate_build_spec`."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms

from traces.choices import DatasetKind, DatasetStrategy
from traces.datasets.building import BuildInvalid, validate_build_spec


def parse_trace_ids(text: str) -> list[int] | None:
    """Ids separated by commas or spaces ([] for none), or None when something else is in the text."""
    parts = text.replace(",", " ").split()
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        return None
    return [int(p) for p in parts]


class DatasetBuildForm(forms.Form):
    """The build page. `validate_build_spec` does the checking (shared with API and command)."""

    name = forms.CharField(
        max_length=100, help_text="lowercase letters, digits, - and _; an existing name gets a new version"
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
    kind = forms.ChoiceField(
        choices=DatasetKind.choices, initial=DatasetKind.SFT, required=False,
        help_text="SFT: traces; preference: preference pairs (for DPO and ORPO runs)",
    )
    q = forms.CharField(required=False, label="Search")
    source = forms.CharField(required=False, help_text="pairs: compare, api, import or evaluation")
    tag = forms.CharField(required=False)
    min_steps = forms.CharField(required=False, label="Steps ≥")
    max_steps = forms.CharField(required=False, label="Steps ≤")
    # A date picker; the filter takes ISO 8601 (the picker's "2026-11-30T09:00" is read in the server's zone).
    created_after = forms.CharField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    created_before = forms.CharField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    rating = forms.ChoiceField(
        required=False, choices=[("", "any"), ("good", "good"), ("bad", "bad"), ("unrated", "unrated")]
    )
    label = forms.CharField(required=False)
    trace_ids = forms.CharField(
        required=False, label="Trace ids", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="instead of the filters: these traces (ids separated by commas or spaces)",
    )
    created_by = forms.CharField(required=False, label="Pairs by", help_text="preference: pairs this username made")
    pair_ids = forms.CharField(
        required=False, label="Pair ids", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="preference, instead of the filters: these pairs",
    )
    strategy = forms.ChoiceField(choices=DatasetStrategy.choices, initial=DatasetStrategy.LATEST)
    seed = forms.CharField(
        required=False,
        initial=lambda: str(secrets.randbelow(10_000)),
        help_text="for random: the same seed picks the same traces (a fresh one is filled in)",
    )
    limit = forms.CharField(required=False, initial="1000", help_text="1–1,000,000")
    # 0, as the API and `build_dataset` default to: a split is asked for, never implied.
    validation_fraction = forms.CharField(
        required=False, initial="0", label="Validation fraction",
        help_text="0–0.5; e.g. 0.1 holds a tenth out, for the run's eval loss",
    )
    validation_seed = forms.CharField(required=False, initial="0", label="Validation seed")

    def clean_trace_ids(self) -> list[int] | str:
        ids = parse_trace_ids(self.cleaned_data.get("trace_ids") or "")
        if ids is None:
            raise forms.ValidationError("Give trace ids: whole numbers separated by commas or spaces.")
        return ids or ""

    def clean_pair_ids(self) -> list[int] | str:
        ids = parse_trace_ids(self.cleaned_data.get("pair_ids") or "")
        if ids is None:
            raise forms.ValidationError("Give pair ids: whole numbers separated by commas or spaces.")
        return ids or ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("strategy") != DatasetStrategy.RANDOM:
            data["seed"] = ""  # the pre-filled seed means nothing to the other strategies
        try:
            self.spec = validate_build_spec({k: v for k, v in data.items() if v not in (None, "")})
        except BuildInvalid as exc:
            for key, messages in exc.errors.items():
                self.add_error(key if key in self.fields else None, messages)
        return data
