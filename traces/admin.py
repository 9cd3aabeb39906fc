"""Admin for traces and scores, usable with millions of rows.

List pages never load payload columns, never run a full COUNT(*) (the
paginator uses PostgreSQL's estimate when unfiltered) and search by id or
content hash prefix with indexes rather than scanning text.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest

from traces.models import Trace, TraceScore


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Uses the planner's row estimate for an unfiltered PostgreSQL table."""

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if (
            connection.vendor == "postgresql"
            and isinstance(qs, QuerySet)
            and not qs.query.where
        ):
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [qs.model._meta.db_table],
                )
                row = cur.fetchone()
            if row and row[0] > 10_000:
                return int(row[0])
        return super().count


class ScoreInline(admin.TabularInline[TraceScore, Trace]):
    model = TraceScore
    extra = 0
    readonly_fields = ("criteria", "score", "details", "updated_at")
    can_delete = False


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin[Trace]):
    list_display = ("id", "short_prompt", "source", "step_count", "char_count", "created_at")
    list_filter = ("source",)
    search_fields = ("=id", "^content_hash", "=source")
    search_help_text = "Trace id, content-hash prefix or exact source."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "trace_version", "prompt", "steps", "final_answer", "meta", "source", "tags",
        "step_count", "char_count", "content_hash", "created_at", "created_by",
    )
    inlines = [ScoreInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Trace]:
        qs = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name == "traces_trace_changelist":
            # Only the first 120 characters of the prompt are needed in lists.
            return qs.only("id", "prompt", "source", "step_count", "char_count", "created_at")
        return qs

    @admin.display(description="Prompt")
    def short_prompt(self, obj: Trace) -> str:
        return obj.prompt[:120]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TraceScore)
class TraceScoreAdmin(admin.ModelAdmin[TraceScore]):
    list_display = ("id", "trace_id", "criteria", "score", "updated_at")
    list_filter = ("criteria",)
    search_fields = ("=trace__id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    raw_id_fields = ("trace",)
    readonly_fields = ("trace", "criteria", "score", "details", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
