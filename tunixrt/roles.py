"""Roles: who may do what, for the API, the pages, the commands and the templates alike.

A user's role is the highest of the role groups they are in: `viewer` (read,
export, download), `member` (also create, launch, evaluate, and cancel, retry
or delete their own work) or `maintainer` (all of it for everyone, registry
promotion, regression baselines). Superusers are maintainers; a user in no
role group is a viewer (least privilege). An object's owner is its
`created_by`; an object nobody owns (NULL, e.g. imported by an operator) is
changed by maintainers only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError
from django.db import transaction
from rest_framework.permissions import SAFE_METHODS, BasePermission

if TYPE_CHECKING:  # rest_framework.views reads DEFAULT_PERMISSION_CLASSES, which names this module
    from rest_framework.request import Request
    from rest_framework.views import APIView

_CACHE_ATTR = "_tunixrt_role"


class Role(enum.IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    NONE = 0  # anonymous or inactive: nothing at all
    VIEWER = 1
    MEMBER = 2
    MAINTAINER = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ROLE_GROUPS = {Role.VIEWER: "viewer", Role.MEMBER: "member", Role.MAINTAINER: "maintainer"}
_ROLE_BY_GROUP = {name: role for role, name in ROLE_GROUPS.items()}


class Action(enum.StrEnum):
    """What a request or command does, as far as roles are concerned."""

    VIEW = "view"  # read, list, export, download, compare, check a gate
    CREATE = "create"  # capture traces, build datasets, create eval sets, launch, evaluate, score
    CHANGE = "change"  # cancel, retry, delete: one's own work, or anyone's for a maintainer
    PROMOTE = "promote"  # registry promotion
    BASELINES = "baselines"  # create and delete regression baselines
    MAINTAIN = "maintain"  # any other state change nobody declared: maintainers only (fail closed)


_NEEDS = {
    Action.VIEW: Role.VIEWER,
    Action.CREATE: Role.MEMBER,
    Action.CHANGE: Role.MEMBER,
    Action.PROMOTE: Role.MAINTAINER,
    Action.BASELINES: Role.MAINTAINER,
    Action.MAINTAIN: Role.MAINTAINER,
}

_WHAT = {
    Action.VIEW: "Reading",
    Action.CREATE: "Creating, launching and evaluating",
    Action.CHANGE: "Cancelling, retrying and deleting",
    Action.PROMOTE: "Promoting a run to the model registry",
    Action.BASELINES: "Creating and deleting regression baselines",
    Action.MAINTAIN: "This action",
}


def highest_role(group_names: Iterable[str]) -> Role:
    """The role a non-superuser in these groups has: the highest role group, else viewer."""
    return max((_ROLE_BY_GROUP[n] for n in group_names if n in _ROLE_BY_GROUP), default=Role.VIEWER)


def role_of(user: Any) -> Role:
    """The user's role, looked up once per user object (one query; none for superusers).

    The request's user object lives as long as the request, so the answer is
    cached on it; `grant` clears it.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return Role.NONE
    if user.is_superuser:
        return Role.MAINTAINER
    cached: Role | None = getattr(user, _CACHE_ATTR, None)
    if cached is None:
        cached = highest_role(user.groups.filter(name__in=_ROLE_BY_GROUP).values_list("name", flat=True))
        setattr(user, _CACHE_ATTR, cached)
    return cached


def role_rank_sql(user_pk_sql: str, user_model: Any) -> str:
    """A scalar SQL expression: the highest role-group rank of one user (NULL when in none).

    The token lookup selects it with the user, so an API call's role check needs no query of its own.
    """
    groups = user_model._meta.get_field("groups")
    through = groups.remote_field.through
    user_column = through._meta.get_field(groups.m2m_field_name()).column
    group_column = through._meta.get_field(groups.m2m_reverse_field_name()).column
    cases = " ".join(f"WHEN '{name}' THEN {int(role)}" for role, name in ROLE_GROUPS.items())
    return (
        f'(SELECT MAX(CASE g."name" {cases} END) FROM "{through._meta.db_table}" m'  # noqa: S608 - names, not input
        f' INNER JOIN "{Group._meta.db_table}" g ON g."id" = m."{group_column}"'
        f' WHERE m."{user_column}" = {user_pk_sql})'
    )


def remember_role(user: Any, rank: int | None) -> None:
    """Keep the role read along with the user (see role_rank_sql), as role_of() would cache it."""
    setattr(user, _CACHE_ATTR, Role(rank) if rank else Role.VIEWER)


def owns(user: Any, obj: Any) -> bool:
    """Whether `obj.created_by` is this user (an object nobody owns belongs to no one)."""
    owner_id = getattr(obj, "created_by_id", None)
    return owner_id is not None and user is not None and owner_id == user.pk


def can(user: Any, action: Action, obj: Any = None) -> bool:
    """May `user` do `action` (to `obj`, for CHANGE: members only to their own)?"""
    if _NEEDS[action] == Role.VIEWER:
        # Every active user reads: no query on the hot read paths.
        return user is not None and user.is_authenticated and user.is_active
    role = role_of(user)
    if role < _NEEDS[action]:
        return False
    if action == Action.CHANGE and obj is not None and role < Role.MAINTAINER:
        return owns(user, obj)
    return True


def can_change(user: Any, obj: Any) -> bool:
    return can(user, Action.CHANGE, obj)


def _noun(obj: Any) -> str:
    return str(obj._meta.verbose_name) if hasattr(obj, "_meta") else "object"


def explain(user: Any, action: Action, obj: Any = None) -> str:
    """Why `can(user, action, obj)` is false, naming the role that would be needed."""
    role = role_of(user)
    you = f"you are a {role.label}" if role > Role.NONE else "you are not logged in"
    needed = _NEEDS[action]
    if action == Action.CHANGE and obj is not None and role >= needed:
        noun = _noun(obj)
        return (
            f"Only the {noun}'s owner or a maintainer may cancel, retry or delete this {noun}; "
            f"{you} and it is not yours."
        )
    if action == Action.CHANGE:
        return f"{_WHAT[action]} needs the member role (for your own work) or the maintainer role; {you}."
    return f"{_WHAT[action]} needs the {needed.label} role; {you}."


def require(user: Any, action: Action, obj: Any = None) -> None:
    """Raise Django's PermissionDenied (a 403 page) unless `user` may do `action`."""
    if not can(user, action, obj):
        raise PermissionDenied(explain(user, action, obj))


def grant(user: Any, role: Role) -> None:
    """Put `user` in exactly one role group (creating the group if a database reset removed it)."""
    if role == Role.NONE:
        raise ValueError("Choose viewer, member or maintainer.")
    with transaction.atomic():
        target, _ = Group.objects.get_or_create(name=ROLE_GROUPS[role])
        user.groups.remove(*Group.objects.filter(name__in=_ROLE_BY_GROUP).exclude(pk=target.pk))
        user.groups.add(target)
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


class RolePermission(BasePermission):
    """The API's door: each view declares what its actions do in `role_actions`.

    Keys are viewset action names (`create`, `destroy`, `cancel`, …) or, on plain
    API views, lower-case HTTP methods. An undeclared read is VIEW; an
    undeclared write is MAINTAIN, so a new endpoint is closed until declared.
    A denial is a 403 whose `detail` names the role needed.
    """

    message = "You do not have permission to perform this action."

    def _action(self, request: Request, view: APIView) -> Action:
        declared: dict[str, Action] = getattr(view, "role_actions", {})
        method = (request.method or "").lower()
        # A viewset names the action its router mapped the method to; a plain view has a handler per method.
        name: str | None
        if hasattr(view, "action_map"):
            name = getattr(view, "action", None)
        else:
            name = method if hasattr(view, method) else None
        if name is None:
            return Action.VIEW  # nothing handles this method: let the view answer its 405 (or 404)
        if name in declared:
            return declared[name]
        return Action.VIEW if request.method in SAFE_METHODS else Action.MAINTAIN

    def has_permission(self, request: Request, view: APIView) -> bool:
        action = self._action(request, view)
        # Ownership is checked per object (has_object_permission); here only the role.
        if can(request.user, action):
            return True
        self.message = explain(request.user, action)
        return False

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        action = self._action(request, view)
        if can(request.user, action, obj):
            return True
        self.message = explain(request.user, action, obj)
        return False


def command_user(username: str | None, action: Action) -> Any:
    """The user a management command acts for (`--user`), once their role allows `action`.

    Without a username the command acts as the operator who runs it: None,
    unrestricted (whoever can run manage.py owns the installation anyway).
    """
    if not username:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user {username!r}.")
    if not user.is_active:
        raise CommandError(f"User {username!r} is inactive.")
    if not can(user, action):
        raise CommandError(explain(user, action))
    return user

