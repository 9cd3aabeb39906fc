"""Give a user a role (viewer, member, maintainer), or list everyone's role."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tunixrt.roles import ROLE_GROUPS, Role, grant, highest_role, role_of

ROLES = {name: role for role, name in ROLE_GROUPS.items()}


class Command(BaseCommand):
    help = (
        "Put USERNAME in exactly one role group: viewer (read, export, download), member (also create, "
        "launch, evaluate; cancel, retry and delete their own work) or maintainer (everything, for everyone). "
        "Superusers are maintainers whatever their groups. --list shows every user's role."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?")
        parser.add_argument("role", nargs="?", choices=list(ROLES))
        parser.add_argument("--list", action="store_true", help="list users and their roles")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            if options["username"]:
                raise CommandError("--list takes no username.")
            self._list()
            return
        if not options["username"] or not options["role"]:
            raise CommandError("Give a username and a role (viewer, member or maintainer), or --list.")
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        role = ROLES[options["role"]]
        grant(user, role)
        note = " (a superuser: a maintainer whatever the group)" if user.is_superuser and role < Role.MAINTAINER else ""
        self.stdout.write(f"{user.get_username()} is now a {role.label}{note}.")

    def _list(self) -> None:
        users = get_user_model().objects.order_by("username").prefetch_related("groups")
        for user in users:
            if user.is_superuser or not user.is_active:
                role = role_of(user)
            else:  # from the prefetched groups, not one query per user
                role = highest_role(g.name for g in user.groups.all())
            extra = " (superuser)" if user.is_superuser else " (inactive)" if not user.is_active else ""
            self.stdout.write(f"{user.get_username()}\t{role.label if role else 'none'}{extra}")
