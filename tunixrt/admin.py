from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from tunixrt.models import ApiToken


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
