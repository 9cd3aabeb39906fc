"""The admin: API tokens (look and revoke), users with their role (viewer, member, maintainer groups), workers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from tunixrt.models import ApiToken, WorkerHeartbeat
from tunixrt.roles import highest_role, role_of

User = get_user_model()


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    """Tokens can be looked at and deleted (revoked) here; only their owner or `drf_create_token` issues one,
    since the plaintext is shown once, at issue."""

    list_display = ("user", "prefix", "created")
    search_fields = ("user__username", "=prefix")
    list_select_related = ("user",)
    readonly_fields = ("user", "prefix", "created")
    exclude = ("digest",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RoleUserAdmin(UserAdmin):  # type: ignore[type-arg]
    list_display = ("username", "email", "role", "is_active", "is_superuser", "last_login")
    list_filter = ("groups", "is_superuser", "is_active")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="role")
    def role(self, user: Any) -> str:
        if user.is_superuser or not user.is_active:
            return role_of(user).label
        return highest_role(g.name for g in user.groups.all()).label


admin.site.unregister(User)
admin.site.register(User, RoleUserAdmin)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin[WorkerHeartbeat]):
    list_display = ("hostname", "pid", "concurrency", "queues", "devices_summary", "started_at", "last_seen")
    readonly_fields = ("hostname", "pid", "concurrency", "queues", "devices", "started_at", "last_seen")
