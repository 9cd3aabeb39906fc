"""Issue a user's API token and print it (the only time it can be seen: only its digest is stored)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tunixrt.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print it (with -r, replace the user's token)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "-r", "--reset", action="store_true", help="replace the user's token (the old one stops working)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        existing = ApiToken.objects.filter(user=user).first()
        if existing is not None and not options["reset"]:
            # The old command printed the stored token; a digest cannot be printed back.
            raise CommandError(
                f"{username} already has an API token (starting {existing.prefix}…, created "
                f"{existing.created:%Y-%m-%d %H:%M}). Tokens are stored hashed and cannot be shown again: "
                "run with --reset to replace it."
            )
        key = ApiToken.objects.issue(user)
        self.stdout.write(f"Generated token {key} for user {username}")
