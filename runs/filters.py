"""Run filters, shared by the history page and the API."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from runs.choices import RunMethod, RunMode, RunObjective, RunStatus
from runs.models import Evaluation, Run
from traces.filters import IntegerFilter, UtcIsoDateTimeFilter
from traces.models import dataset_key_q

DATE_INPUT = forms.DateInput(attrs={"type": "date"})


class RunFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(method="filter_name", max_length=120, label="Name or notes")
    status = django_filters.ChoiceFilter(choices=RunStatus.choices, empty_label="Any status", label="Status")
    dataset = django_filters.CharFilter(method="filter_dataset", max_length=120, label="Dataset (name or name@vN)")
    base_model = django_filters.CharFilter(max_length=200, label="Base model")
    # Short labels: the filter bar fits a phone's width.
    objective = django_filters.ChoiceFilter(
        choices=[(value, value.upper()) for value in RunObjective.values], empty_label="Any", label="Training"
    )
    method = django_filters.ChoiceFilter(choices=RunMethod.choices, empty_label="Any method", label="Method")
    mode = django_filters.ChoiceFilter(choices=RunMode.choices, empty_label="Training and dry runs", label="Kind")
    created_after = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Launched from", widget=DATE_INPUT
    )
    created_before = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Launched before", widget=DATE_INPUT
    )

    class Meta:
        model = Run
        fields: list[str] = []

    def filter_name(self, queryset: QuerySet[Run], name: str, value: str) -> Any:
        value = value.strip()
        return queryset.filter(Q(name__icontains=value) | Q(notes__icontains=value)) if value else queryset

    def filter_dataset(self, queryset: QuerySet[Run], name: str, value: str) -> Any:
        return queryset.filter(dataset_key_q(value.strip(), "dataset__"))


class EvaluationFilter(django_filters.FilterSet):
    """The evaluation list's filters (an invalid value is a 400, never an unfiltered list)."""

    run = IntegerFilter(field_name="run_id", min_value=1, max_value=2**63 - 1, help_text="run id")

    class Meta:
        model = Evaluation
        fields: list[str] = []
