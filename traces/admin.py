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
from django.db import connection, models
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from traces.models import (
    Dataset,
    DatasetMember,
    PreferenceMember,
    PreferencePair,
    Trace,
    TraceLabel,
    TraceReview,
    TraceScore,
)


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


class ReviewInline(admin.TabularInline[TraceReview, Trace]):
    model = TraceReview
    extra = 0
    fields = ("user", "rating", "comment", "rated_at", "updated_at")
    readonly_fields = fields
    can_delete = False


class LabelInline(admin.TabularInline[TraceLabel, Trace]):
    model = TraceLabel
    extra = 0
    fields = ("label", "created_by", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin[Trace]):
    list_display = ("id", "short_prompt", "source", "step_count", "char_count", "created_at")
    list_filter = ("source",)
    search_fields = ("=id", "^content_hash", "=source")
    search_help_text = "Trace id, content-hash prefix (8+ characters) or exact source."
    show_full_result_count = False

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> tuple[Any, bool]:
        """A short number is an id (or a source), never a hash prefix: "1" would also list every trace
        whose SHA-256 starts with 1 (one in sixteen)."""
        term = search_term.strip()
        if term.isdigit() and len(term) < 8:
            return queryset.filter(Q(pk=int(term)) | Q(source=term)), False
        return super().get_search_results(request, queryset, search_term)
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "trace_version", "prompt", "steps", "final_answer", "meta", "source", "tags",
        "step_count", "char_count", "content_hash", "created_at", "created_by",
    )
    inlines = [ScoreInline, ReviewInline, LabelInline]

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


@admin.register(TraceReview)
class TraceReviewAdmin(admin.ModelAdmin[TraceReview]):
    """Who rated and commented on what; maintainers fix or remove a review here."""

    list_display = ("id", "trace_id", "user", "rating", "short_comment", "updated_at")
    list_filter = ("rating",)
    list_select_related = ("user",)
    search_fields = ("=trace__id", "user__username")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    raw_id_fields = ("trace", "user")
    ordering = ("-updated_at", "-id")

    @admin.display(description="Comment")
    def short_comment(self, obj: TraceReview) -> str:
        return obj.comment[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(TraceLabel)
class TraceLabelAdmin(admin.ModelAdmin[TraceLabel]):
    list_display = ("id", "label", "trace_id", "created_by", "created_at")
    list_select_related = ("created_by",)
    search_fields = ("=label", "=trace__id")
    search_help_text = "An exact label or trace id."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    raw_id_fields = ("trace", "created_by")
    ordering = ("label", "trace")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class MemberInline(admin.TabularInline[DatasetMember, Dataset]):
    """The first members only; the full list is the DatasetMember changelist (paginated)."""

    model = DatasetMember
    fields = ("position", "split", "trace")
    readonly_fields = ("position", "split", "trace")
    can_delete = False
    extra = 0
    max_num = 0
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[DatasetMember]:
        qs = super().get_queryset(request).select_related("trace").only(
            "position", "split", "dataset_id", "trace__id", "trace__prompt"
        )
        return qs.order_by("position")[:50]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin[Dataset]):
    list_display = ("key", "status", "member_count", "created_at", "created_by")
    list_filter = ("status",)
    search_fields = ("name", "description")
    readonly_fields = (
        "name", "version", "description", "spec", "status", "error", "stats",
        "created_at", "built_at", "created_by", "members_link",
    )
    fields = readonly_fields

    @admin.display(description="Traces")
    def member_count(self, obj: Dataset) -> Any:
        return obj.stats.get("count", "–")

    @admin.display(description="Members")
    def members_link(self, obj: Dataset) -> str:
        url = reverse("admin:traces_datasetmember_changelist") + f"?dataset__id__exact={obj.pk}"
        return format_html('<a href="{}">All {} members</a>', url, obj.stats.get("count", ""))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipAdmin[M: models.Model](admin.ModelAdmin[M]):
    """Read-only membership of a dataset, paginated by position; fast for 100,000+ members."""

    list_filter = ("split",)
    list_select_related = ("dataset",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("dataset", "position")
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DatasetMember)
class DatasetMemberAdmin(MembershipAdmin[DatasetMember]):
    """Which traces an SFT dataset holds."""

    list_display = ("dataset", "position", "split", "trace_link")
    search_fields = ("=trace__id",)

    @admin.display(description="Trace")
    def trace_link(self, obj: DatasetMember) -> str:
        url = reverse("admin:traces_trace_change", args=[obj.trace_id])
        return format_html('<a href="{}">#{}</a>', url, obj.trace_id)


@admin.register(PreferencePair)
class PreferencePairAdmin(admin.ModelAdmin[PreferencePair]):
    """Read-only pairs; deleting one a dataset holds is refused (its membership is PROTECTed)."""

    list_display = ("id", "short_prompt", "source", "created_by", "created_at")
    list_filter = ("source",)
    list_select_related = ("created_by",)
    search_fields = ("=id", "^content_hash")
    search_help_text = "Pair id or content-hash prefix (8+ characters)."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "prompt",
        "chosen",
        "rejected",
        "source",
        "note",
        "meta",
        "chosen_trace",
        "rejected_trace",
        "chosen_evaluation",
        "rejected_evaluation",
        "eval_item",
        "content_hash",
        "created_at",
        "created_by",
    )

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> tuple[Any, bool]:
        """A short number is an id, never a hash prefix (see TraceAdmin)."""
        term = search_term.strip()
        if term.isdigit() and len(term) < 8:
            return queryset.filter(pk=int(term)), False
        return super().get_search_results(request, queryset, search_term)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PreferencePair]:
        qs = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name == "traces_preferencepair_changelist":
            return qs.defer("chosen", "rejected", "meta")
        return qs

    @admin.display(description="Prompt")
    def short_prompt(self, obj: PreferencePair) -> str:
        return obj.prompt[:120]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PreferenceMember)
class PreferenceMemberAdmin(MembershipAdmin[PreferenceMember]):
    """Which pairs a preference dataset holds."""

    list_display = ("dataset", "position", "split", "pair_id")
    search_fields = ("=pair__id",)
