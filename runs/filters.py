"""Run filters, shared by the history page and the API."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from runs.choices import RunMethod, RunMode, RunStatus
from runs.models import Run


class RunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    dataset = django_filters.CharFilter(method="filter_dataset", max_length=120, label="Dataset (name or name@vN)")
    mode = django_filters.ChoiceFilter(choices=RunMode.choices)
    method = django_filters.ChoiceFilter(choices=RunMethod.choices)
    base_model = django_filters.CharFilter(max_length=200)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Run
        fields: list[str] = []

    def filter_dataset(self, queryset: QuerySet[Run], name: str, value: str) -> Any:
        value = value.strip()
        dataset_name, sep, version = value.rpartition("@v")
        if sep and version.isdigit():
            return queryset.filter(dataset__name=dataset_name, dataset__version=int(version))
        return queryset.filter(dataset__name=value)
