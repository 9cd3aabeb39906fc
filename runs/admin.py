from django.contrib import admin

from runs.models import WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin[WorkerHeartbeat]):
    list_display = ("hostname", "pid", "concurrency", "started_at", "last_seen")
    readonly_fields = ("hostname", "pid", "concurrency", "started_at", "last_seen")
