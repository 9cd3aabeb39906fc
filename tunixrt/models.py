"""API tokens, stored as digests; worker heartbeats."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
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


class WorkerHeartbeatQuerySet(models.QuerySet["WorkerHeartbeat"]):
    def live(self) -> WorkerHeartbeatQuerySet:
        """Workers heard from within WORKER_STALE_SECONDS."""
        return self.filter(last_seen__gte=timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS))

    def training(self) -> list[WorkerHeartbeat]:
        """The live workers that consume the training queue (filtered here: SQLite has no JSON `contains`)."""
        return [w for w in self.live().order_by("hostname") if w.consumes_training]


class WorkerHeartbeat(models.Model):
    """A Celery worker's last sign of life, written every few seconds by the worker itself.

    Kept in the database rather than asked of the broker, so it works the same
    with Redis and with the filesystem broker, costs the health page one query,
    and tells which workers died (their row stops moving). A worker consuming
    the training queue also records what accelerators its training interpreter
    sees (`devices`: runs.training.devices.probe(), or {"error": ...}), so a
    launch can tell whether a GPU is there without asking the worker.
    """

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField(default=0)
    concurrency = models.PositiveIntegerField(default=1)
    queues = models.JSONField(default=list, blank=True, help_text="the queues it consumes")
    devices = models.JSONField(
        default=dict, blank=True, help_text="training workers: the JAX devices it sees (empty until probed)"
    )
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    objects = WorkerHeartbeatQuerySet.as_manager()

    def __str__(self) -> str:
        return self.hostname

    @property
    def consumes_training(self) -> bool:
        return settings.TRAINING_QUEUE in (self.queues or [])

    @property
    def has_gpu(self) -> bool:
        return (self.devices or {}).get("platform") == "gpu" and int(self.devices.get("count") or 0) > 0

    @property
    def devices_summary(self) -> str:
        """One line for people: "CPU (2 devices, …)", "GPU × 1 (NVIDIA H200, …)", or why it is unknown."""
        from runs.training.devices import summary

        devices = self.devices or {}
        if devices.get("error"):
            return f"device probe failed: {devices['error']}"
        if not devices:
            return "devices not probed yet"
        return summary(devices)

    @classmethod
    def beat(
        cls,
        hostname: str,
        pid: int,
        concurrency: int,
        started_at: object = None,
        *,
        queues: list[str] | None = None,
        devices: dict[str, object] | None = None,
    ) -> None:
        """Record that the worker is alive; `queues` and `devices` when known (a new start clears devices)."""
        defaults: dict[str, object] = {"pid": pid, "concurrency": concurrency, "last_seen": timezone.now()}
        if started_at is not None:
            defaults["started_at"] = started_at
            defaults["devices"] = {}  # the previous start's probe may no longer hold
        if queues is not None:
            defaults["queues"] = sorted(queues)
        if devices is not None:
            defaults["devices"] = devices
        cls.objects.update_or_create(hostname=hostname, defaults=defaults)
