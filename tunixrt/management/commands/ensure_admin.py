"""Create the first admin account, with a random password printed once."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create a superuser with a random password, only when no user exists yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="where the app is served")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.exists():
            self.stdout.write(f"Users exist already; log in at {options['url']} with your account.")
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=options["username"], email="", password=password)
        bar = "=" * 64
        self.stdout.write(
            f"{bar}\n tunix-rt admin account created (the password is shown only this once)\n"
            f"   URL:      {options['url']}\n   username: {options['username']}\n"
            f"   password: {password}\n{bar}"
        )
