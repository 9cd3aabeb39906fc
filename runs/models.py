"""Workers (and, as the runs feature grows, fine-tuning runs)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
