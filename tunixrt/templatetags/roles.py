"""Template filters that show only the buttons and links a user may use (tunixrt.roles decides)."""

from __future__ import annotations

from typing import Any

from django import template

from tunixrt.roles import Action, can_change, role_of
from tunixrt.roles import can as _can

register = template.Library()


@register.filter
def can(user: Any, action: str) -> bool:
    """`{% if user|can:"create" %}`: create, promote, baselines (no object involved)."""
    return _can(user, Action(action))


@register.filter(name="can_change")
def can_change_filter(user: Any, obj: Any) -> bool:
    """`{% if user|can_change:run %}`: cancel, retry or delete this object."""
    return can_change(user, obj)


@register.filter
def role(user: Any) -> str:
    return role_of(user).label
