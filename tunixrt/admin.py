"""Users in the admin show their role; roles are the viewer, member and maintainer groups."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from tunixrt.roles import highest_role, role_of

User = get_user_model()


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
