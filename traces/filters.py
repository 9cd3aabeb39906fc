"""The trace filters, shared by the list page, the API and dataset builds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from traces.choices import PairSource
from traces.models import PreferencePair, PreferencePairQuerySet, Trace, TraceQuerySet


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


# PostgreSQL refuses UTC offsets beyond ±15:59 ("time zone displacement out of range").
MAX_UTC_OFFSET = dt.timedelta(hours=15, minutes=59)


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 with a UTC offset within ±15:59 and an instant inside datetime's range in UTC."""

    def to_python(self, value: Any) -> dt.datetime | None:
        parsed: dt.datetime | None = super().to_python(value)
        if parsed is None:
            return None
        offset = parsed.utcoffset()
        if offset is not None and abs(offset) > MAX_UTC_OFFSET:
            raise forms.ValidationError("The UTC offset must be between -15:59 and +15:59.", code="invalid")
        try:
            # The database layer converts to UTC; an OverflowError there would be a 500.
            parsed.astimezone(dt.UTC)
        except OverflowError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        return parsed


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class TraceFilter(django_filters.FilterSet):
    """source, tag, created range, step-count range, full-text `q`, and the human review: rating and label."""

    q = django_filters.CharFilter(method="filter_q", label="Search", max_length=500)
    source = django_filters.CharFilter(field_name="source", max_length=128)
    tag = django_filters.CharFilter(method="filter_tag", max_length=64)
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    min_steps = IntegerFilter(
        field_name="step_count", lookup_expr="gte", min_value=0, max_value=1000
    )
    max_steps = IntegerFilter(
        field_name="step_count", lookup_expr="lte", min_value=0, max_value=1000
    )

    rating = django_filters.ChoiceFilter(
        method="filter_rating", choices=[("good", "good"), ("bad", "bad"), ("unrated", "unrated")],
        help_text="the current (newest) rating: good, bad or unrated",
    )
    label = django_filters.CharFilter(method="filter_label", max_length=64, help_text="a label people gave")

    class Meta:
        model = Trace
        fields: list[str] = []

    def filter_q(self, queryset: TraceQuerySet, name: str, value: str) -> Any:
        return queryset.search(value)

    def filter_tag(self, queryset: TraceQuerySet, name: str, value: str) -> Any:
        return queryset.with_tag(value.strip()) if value.strip() else queryset

    def filter_rating(self, queryset: TraceQuerySet, name: str, value: str) -> Any:
        return queryset.rated(value)

    def filter_label(self, queryset: TraceQuerySet, name: str, value: str) -> Any:
        return queryset.with_label(value.strip()) if value.strip() else queryset


class PairFilter(django_filters.FilterSet):
    """source, who made it (`created_by`, a username), created range, and `q` over prompt, chosen and rejected."""

    q = django_filters.CharFilter(method="filter_q", label="Search", max_length=500)
    source = django_filters.ChoiceFilter(choices=PairSource.choices)
    created_by = django_filters.CharFilter(
        field_name="created_by__username", max_length=150, label="Created by", help_text="a username"
    )
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = PreferencePair
        fields: list[str] = []

    def filter_q(self, queryset: PreferencePairQuerySet, name: str, value: str) -> Any:
        return queryset.search(value)
