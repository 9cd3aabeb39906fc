"""Worker heartbeat: a daemon thread in each Celery worker updates its WorkerHeartbeat row."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

logger = logging.getLogger(__name__)
_stop = threading.Event()


def _beat_forever(hostname: str, concurrency: int) -> None:
    from tunixrt.models import WorkerHeartbeat

    started_at = timezone.now()
    first = True
    while not _stop.is_set():
        try:
            close_old_connections()
            WorkerHeartbeat.beat(hostname, os.getpid(), concurrency, started_at if first else None)
            first = False
        except Exception:
            logger.exception("worker heartbeat failed")
        _stop.wait(settings.WORKER_HEARTBEAT_SECONDS)
    connection.close()


@worker_ready.connect
def start_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    hostname = getattr(sender, "hostname", None) or "worker"
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", None) or 1
    _stop.clear()
    threading.Thread(
        target=_beat_forever, args=(hostname, int(concurrency)), name="heartbeat", daemon=True
    ).start()


@worker_shutdown.connect
def stop_heartbeat(**kwargs: Any) -> None:
    _stop.set()
