"""Celery worker hooks: the heartbeat thread (its WorkerHeartbeat row) and the training worker's concurrency."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import click
from celery.signals import worker_init, worker_ready, worker_shutdown
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


def consumed_queues(worker: Any) -> set[str]:
    """The queues a worker consumes (all the configured ones unless -Q chose)."""
    queues = worker.app.amqp.queues
    return set(queues.consume_from or queues)


@worker_init.connect
def size_training_worker(sender: Any = None, **kwargs: Any) -> None:
    """A worker consuming only the training queue runs TRAINING_WORKER_CONCURRENCY tasks unless -c said.

    Each training child uses every core, so CELERY_WORKER_CONCURRENCY (sized for
    builds and indexing) would oversubscribe the machine. Celery's command line
    fills --concurrency from CELERY_WORKER_CONCURRENCY (the setting, or the
    variable itself) when -c is not given, so click tells whether it was; the pool
    is sized after this signal. Outside the command line (tests) nothing changes.
    """
    if sender is None or consumed_queues(sender) != {settings.TRAINING_QUEUE}:
        return
    context = click.get_current_context(silent=True)
    if context is None or context.get_parameter_source("concurrency") == click.core.ParameterSource.COMMANDLINE:
        return
    sender.concurrency = settings.TRAINING_WORKER_CONCURRENCY


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
