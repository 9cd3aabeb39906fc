from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from runs.models import Run, RunLog, RunMetric


@admin.register(Run)
class RunAdmin(admin.ModelAdmin[Run]):
    """Runs with their log and metric counts; the lines and points themselves are never loaded here."""

    list_display = ("id", "status", "mode", "dataset", "base_model", "method", "attempt", "created_at")
    list_filter = ("status", "mode", "method")
    search_fields = ("=id", "dataset__name", "base_model")
    list_select_related = ("dataset",)
    show_full_result_count = False
    readonly_fields = [f.name for f in Run._meta.fields] + ["log_lines", "metric_points"]
    exclude = ()

    @admin.display(description="Log lines")
    def log_lines(self, obj: Run) -> int:
        return RunLog.objects.filter(run=obj).count()

    @admin.display(description="Metric points")
    def metric_points(self, obj: Run) -> int:
        return RunMetric.objects.filter(run=obj).count()

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("stdout_tail", "stderr_tail", "summary")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
