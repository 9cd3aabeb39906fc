"""Celery worker hooks: the heartbeat thread (its WorkerHeartbeat row), the training worker's device
probe and its concurrency."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

import click
from celery.signals import worker_init, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

logger = logging.getLogger(__name__)
_stop = threading.Event()


PROBE_TIMEOUT_SECONDS = 300


class DeviceProbe:
    """The training interpreter's JAX devices, probed once in a subprocess (JAX never loads in the worker).

    Runs in its own thread so the worker starts consuming at once; the heartbeat
    thread stores `result` with its next beat once it is there.
    """

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = probe_devices()
        finally:
            self.done.set()


def probe_devices() -> dict[str, Any]:
    """`python -m runs.training.devices` with the training children's interpreter and environment."""
    from runs.childproc import child_env

    command = [settings.TRAINING_PYTHON or sys.executable, "-m", "runs.training.devices"]
    try:
        proc = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            command,
            capture_output=True,
            env=child_env(),
            cwd=str(settings.BASE_DIR),
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    lines = proc.stdout.decode("utf-8", errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        return {"error": f"the probe exited with code {proc.returncode}" + (f": {tail[0]}" if tail else "")}
    return report if isinstance(report, dict) else {"error": "the probe printed no report"}


def _beat_forever(hostname: str, concurrency: int, queues: list[str], probe: DeviceProbe | None) -> None:
    from tunixrt.models import WorkerHeartbeat

    started_at = timezone.now()
    first = True
    stored = False
    while not _stop.is_set():
        try:
            close_old_connections()
            devices = probe.result if probe is not None and probe.done.is_set() and not stored else None
            WorkerHeartbeat.beat(
                hostname,
                os.getpid(),
                concurrency,
                started_at if first else None,
                queues=queues if first else None,
                devices=devices,
            )
            first = False
            stored = stored or devices is not None
        except Exception:
            logger.exception("worker heartbeat failed")
        # Wake early when the probe finishes, so its result shows without waiting a whole beat.
        if probe is not None and not stored and not probe.done.is_set():
            probe.done.wait(settings.WORKER_HEARTBEAT_SECONDS)
            if _stop.is_set():
                break
            continue
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
    """Beat for this worker; a worker consuming the training queue also probes its devices once."""
    hostname = getattr(sender, "hostname", None) or "worker"
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", None) or 1
    queues = sorted(consumed_queues(sender)) if getattr(sender, "app", None) is not None else []
    probe = None
    if settings.TRAINING_QUEUE in queues:
        probe = DeviceProbe()
        threading.Thread(target=probe.run, name="device-probe", daemon=True).start()
    _stop.clear()
    threading.Thread(
        target=_beat_forever, args=(hostname, int(concurrency), queues, probe), name="heartbeat", daemon=True
    ).start()


@worker_shutdown.connect
def stop_heartbeat(**kwargs: Any) -> None:
    _stop.set()
