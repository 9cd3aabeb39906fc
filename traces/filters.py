"""The trace filters, shared by the list page, the API and (later) dataset builds."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms

from traces.models import Trace, TraceQuerySet


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class TraceFilter(django_filters.FilterSet):
    """source, tag, created range, step-count range and full-text `q`."""

    q = django_filters.CharFilter(method="filter_q", label="Search", max_length=500)
    source = django_filters.CharFilter(field_name="source", max_length=128)
    tag = django_filters.CharFilter(method="filter_tag", max_length=64)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    min_steps = IntegerFilter(
        field_name="step_count", lookup_expr="gte", min_value=0, max_value=1000
    )
    max_steps = IntegerFilter(
        field_name="step_count", lookup_expr="lte", min_value=0, max_value=1000
    )

    class Meta:
        model = Trace
        fields: list[str] = []

    def filter_q(self, queryset: TraceQuerySet, name: str, value: str) -> Any:
        return queryset.search(value)

    def filter_tag(self, queryset: TraceQuerySet, name: str, value: str) -> Any:
        return queryset.with_tag(value.strip()) if value.strip() else queryset
