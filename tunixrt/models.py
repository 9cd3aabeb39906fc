"""API tokens, stored as digests; worker heartbeats."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PREFIX_LENGTH = 8


def token_digest(key: str) -> str:
    """The stored form of a token: its SHA-256, hex.

    A token is 160 random bits, so a fast hash is enough: nothing short of the
    token itself finds a preimage, and a slow KDF would cost every API request.
    """
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def issue(self, user: User) -> str:
        """A new token for `user`, replacing (and so revoking) any other; returns the plaintext.

        The plaintext is stored nowhere: show it once, then it is gone.
        """
        key = secrets.token_hex(20)  # 40 characters, like the tokens before them
        with transaction.atomic():
            self.update_or_create(
                user=user,
                defaults={"digest": token_digest(key), "prefix": key[:PREFIX_LENGTH], "created": timezone.now()},
            )
        return key


class ApiToken(models.Model):
    """A user's API token (one per user): the SHA-256 of the key and its first characters for display."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="api_token"
    )
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=PREFIX_LENGTH)
    created = models.DateTimeField(default=timezone.now)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}…"


class WorkerHeartbeat(models.Model):
    """A Celery worker's last sign of life, written every few seconds by the worker itself.

    Kept in the database rather than asked of the broker, so it works the same
    with Redis and with the filesystem broker, costs the health page one query,
    and tells which workers died (their row stops moving).
    """

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField(default=0)
    concurrency = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.hostname

    @classmethod
    def beat(cls, hostname: str, pid: int, concurrency: int, started_at: object = None) -> None:
        defaults: dict[str, object] = {"pid": pid, "concurrency": concurrency, "last_seen": timezone.now()}
        if started_at is not None:
            defaults["started_at"] = started_at
        cls.objects.update_or_create(hostname=hostname, defaults=defaults)
