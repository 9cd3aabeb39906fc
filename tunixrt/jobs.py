"""One lifecycle for every background job: fine-tuning runs, evaluations and dataset builds.

The row is the source of truth. Launching saves it `pending` and publishes its
Celery task *by name* once the transaction commits (the worker reads the row by
id, so it must be committed first). A worker claims the row with a guarded
update, beats `heartbeat_at` while it works, and writes the end state with a
guarded update that loses to the reaper if the reaper already ended the attempt.
One reaper (beat, every 30 s) covers every kind: a job whose worker died is
resumed (attempts left) or failed with the reason, a cancel whose worker died is
finished, and a pending job that never reached the broker is published.

Broker outages: a job launched while the broker is unreachable is kept `pending`
with no `queued_at` (nothing lost, no dataset version wasted, the caller is told);
the reaper publishes it once the broker answers again. A pending job whose
message a broker restart lost (Redis without persistence) is published again
after JOB_REQUEUE_SECONDS; duplicates are harmless because only one claim wins.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.apps import apps
from django.conf import settings
from django.db import close_old_connections, connection, models, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

PENDING = "pending"
FAILED = "failed"
# Every model whose rows are jobs, in the order the reaper visits them.
JOB_MODELS = ("runs.Run", "runs.Evaluation", "traces.Dataset")
# A pending row younger than this may still be between its commit and its publish.
PUBLISH_GRACE_SECONDS = 10


class JobNotActive(Exception):
    """A state change asked of a job that already ended (or cannot change that way)."""


class Job(models.Model):
    """The columns and state changes every job kind shares (abstract).

    A concrete kind declares its own `status` field (its choices differ) and the
    class attributes below; everything else is common.
    """

    # Each kind overrides `status` with its own choices; the lifecycle uses pending, failed and the class's
    # running_status / cancel_statuses.
    status = models.CharField(max_length=20, default=PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    worker_host = models.CharField(max_length=255, blank=True, default="")
    attempt = models.PositiveIntegerField(default=1)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="when the task last reached the broker")
    broker_error = models.CharField(
        max_length=500, blank=True, default="", help_text="why the last publish failed (the reaper sends it again)"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    job_label: ClassVar[str] = "job"
    job_task: ClassVar[str] = ""
    # The Celery queue its task goes to: `training` for the kinds that train or sample a model
    # (a worker of their own, so a long run never delays a build or the search indexing).
    job_queue: ClassVar[str] = settings.DEFAULT_QUEUE
    running_status: ClassVar[str] = "running"
    # (cancel requested, cancelled) for kinds that can be cancelled.
    cancel_statuses: ClassVar[tuple[str, str] | None] = None
    # What a new attempt after a lost worker does, for the job's error and log.
    resume_note: ClassVar[str] = "Starting again"

    class Meta:
        abstract = True

    @classmethod
    def working_statuses(cls) -> list[str]:
        """The statuses of a job a worker holds: running, and (where it exists) cancel requested."""
        return [cls.running_status] + ([cls.cancel_statuses[0]] if cls.cancel_statuses else [])

    @property
    def is_active(self) -> bool:
        """Not ended: waiting for a worker, or held by one."""
        return self.status == PENDING or self.status in self.working_statuses()

    @property
    def awaiting_broker(self) -> bool:
        """Saved and pending, but the broker refused its task (the reaper sends it when the broker is back)."""
        return self.status == PENDING and bool(self.broker_error)

    @property
    def queued_notice(self) -> str:
        """What to tell the person who launched it."""
        name = f"{self.job_label.capitalize()} {getattr(self, 'key', self.pk)}"
        if self.awaiting_broker:
            return (
                f"{name} is saved, but the job broker is unreachable: it will be queued automatically "
                "as soon as the broker is back."
            )
        return f"{name} queued."

    def can_resume(self) -> bool:
        """Whether a job whose worker died starts again (another attempt) rather than failing."""
        return self.attempt < settings.RUN_MAX_ATTEMPTS

    def cancel(self) -> None:
        """A pending job is cancelled at once; a running one asks its worker to stop.

        Guarded updates: a worker claiming or finishing the row at the same moment
        never has its status overwritten.
        """
        if self.cancel_statuses is None:
            raise JobNotActive(f"A {self.job_label} cannot be cancelled.")
        requested, cancelled = self.cancel_statuses
        rows = type(self)._default_manager.filter(pk=self.pk)
        now = timezone.now()
        if rows.filter(status=PENDING).update(status=cancelled, finished_at=now, error="Cancelled before it started."):
            self.refresh_from_db()
            return
        rows.filter(status=self.running_status).update(status=requested)
        self.refresh_from_db()
        if self.status != requested:
            # Every kind's own `status` has choices, so Django gave it get_status_display().
            display = self.get_status_display().lower()  # type: ignore[attr-defined]
            raise JobNotActive(f"{self.job_label.capitalize()} {self.pk} is already {display}.")

    def reaper_note(self, text: str) -> None:
        """What the reaper did to this job, for the job's own log (runs keep one; others only their error)."""

    def cancel_requested(self) -> bool:
        """Asked by the worker while it works: has someone asked this job to stop?"""
        if self.cancel_statuses is None:
            return False
        status = type(self)._default_manager.filter(pk=self.pk).values_list("status", flat=True).first()
        return status == self.cancel_statuses[0]


def job_models() -> list[type[Job]]:
    return [apps.get_model(label) for label in JOB_MODELS]


def send(task: str, *args: Any, queue: str | None = None) -> str:
    """Publish a Celery task by its name (no import of any tasks module); its id.

    Without `queue`, route_task chooses (the job kind's queue, else the default one).
    Fails fast with the broker's own error: a request must not hang while the
    broker is away, and every caller has a way to send it again later.
    """
    from tunixrt.celery import app

    options: dict[str, Any] = {"queue": queue} if queue else {}
    return app.send_task(task, args=args, retry=False, **options).id or ""


def route_task(name: str, *args: Any, **kwargs: Any) -> dict[str, str] | None:
    """Celery's router (CELERY_TASK_ROUTES; called with the task's args, kwargs, options): by the task's name.

    So the queue is declared once, on the model, and holds however the task is
    sent (by `send`, `.delay()`, beat); any other task goes to the default queue.
    """
    for model in job_models():
        if model.job_task == name:
            return {"queue": model.job_queue}
    return None


def publish(job: Job) -> bool:
    """Send the job's task to the broker now; False (and the row left pending) when it is unreachable."""
    try:
        task_id = send(job.job_task, job.pk, queue=job.job_queue)
    except Exception as exc:  # noqa: BLE001 - any broker failure means the same: try again later
        logger.warning("could not queue %s %s (the reaper will): %r", job.job_label, job.pk, exc)
        why = f"{type(exc).__name__}: {exc}"[:500]
        type(job)._default_manager.filter(pk=job.pk, status=PENDING).update(broker_error=why)
        job.broker_error = why
        return False
    rows = type(job)._default_manager.filter(pk=job.pk)
    rows.update(celery_task_id=task_id[:64], queued_at=timezone.now(), broker_error="")
    job.broker_error = ""
    return True


def publish_on_commit(job: Job) -> None:
    """Queue the job once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: publish(job))


def claim(model: type[Job], pk: int, task_id: str = "") -> Any:
    """Take a pending job for this worker; None if another worker (or a cancel) got there first."""
    now = timezone.now()
    claimed = model._default_manager.filter(pk=pk, status=PENDING).update(
        status=model.running_status,
        heartbeat_at=now,
        worker_host=socket.gethostname()[:255],
        celery_task_id=task_id[:64],
        error="",
    )
    if not claimed:
        return None
    model._default_manager.filter(pk=pk, started_at__isnull=True).update(started_at=now)
    return model._default_manager.get(pk=pk)


def beat(job: Job, **fields: Any) -> None:
    """The worker is alive and working on this job (plus any progress fields)."""
    type(job)._default_manager.filter(pk=job.pk).update(heartbeat_at=timezone.now(), **fields)


def finish(job: Job, status: str, **fields: Any) -> bool:
    """Write the final state of this attempt, unless the reaper already ended it."""
    fields.setdefault("finished_at", timezone.now())
    return bool(
        type(job)
        ._default_manager.filter(pk=job.pk, status__in=job.working_statuses(), attempt=job.attempt)
        .update(status=status, heartbeat_at=timezone.now(), **fields)
    )


@contextmanager
def heartbeat_thread(job: Job) -> Iterator[None]:
    """Beat the job from a thread while the caller works in one long statement (a dataset build).

    The thread has its own database connection. A beat that cannot be written
    (SQLite while the build holds the write lock) is skipped: the reaper cannot
    write either until the build commits, and then the build has ended it.
    """
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(settings.RUN_HEARTBEAT_SECONDS):
                try:
                    beat(job)
                except Exception as exc:  # noqa: BLE001 - a missed beat is not the job's failure
                    logger.debug("heartbeat of %s %s skipped: %s", job.job_label, job.pk, exc)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name=f"heartbeat-{job.job_label}-{job.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _stale_reason(job: Job) -> str:
    since = job.heartbeat_at or job.started_at or job.created_at
    when = f"{since:%Y-%m-%d %H:%M:%S} UTC" if isinstance(since, datetime) else "its start"
    return f"Worker {job.worker_host or '?'} lost: no heartbeat since {when}."


def reap_kind(model: type[Job]) -> dict[str, int]:
    """Resume, fail or finish one kind's jobs whose worker died; publish those the broker never got."""
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "published": 0}
    now = timezone.now()
    manager = model._default_manager
    cutoff = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    stale = manager.filter(status__in=model.working_statuses()).filter(
        models.Q(heartbeat_at__lt=cutoff) | models.Q(heartbeat_at__isnull=True)
    )
    for job in stale:
        reason = _stale_reason(job)
        status = job.status
        guard = manager.filter(pk=job.pk, status=status, attempt=job.attempt, heartbeat_at=job.heartbeat_at)
        if model.cancel_statuses and status == model.cancel_statuses[0]:
            if guard.update(status=model.cancel_statuses[1], finished_at=now, error=reason):
                counts["cancelled"] += 1
                job.reaper_note(reason)
            continue
        if job.can_resume():
            if guard.update(status=PENDING, attempt=job.attempt + 1, heartbeat_at=None, queued_at=None, error=reason):
                job.attempt += 1
                attempts = f"attempt {job.attempt} of {settings.RUN_MAX_ATTEMPTS}"
                job.reaper_note(f"{reason} {job.resume_note} ({attempts}).")
                publish(job)
                counts["requeued"] += 1
            continue
        why = reason + (" No attempts left." if job.attempt >= settings.RUN_MAX_ATTEMPTS else "")
        if guard.update(status=FAILED, finished_at=now, error=why):
            job.reaper_note(why)
            counts["failed"] += 1

    never_sent = models.Q(queued_at__isnull=True) & models.Q(
        models.Q(started_at__lt=now - timedelta(seconds=PUBLISH_GRACE_SECONDS))
        | models.Q(started_at__isnull=True, created_at__lt=now - timedelta(seconds=PUBLISH_GRACE_SECONDS))
    )
    lost = models.Q(queued_at__lt=now - timedelta(seconds=settings.JOB_REQUEUE_SECONDS))
    for job in manager.filter(status=PENDING).filter(never_sent | lost).order_by("pk")[:500]:
        if publish(job):
            counts["published"] += 1
        else:
            break  # the broker is still away: the next reap tries again
    return counts


def reap() -> dict[str, dict[str, int]]:
    """Every kind's jobs whose worker died: resumed or ended; unsent pending jobs: published."""
    close_old_connections()
    return {model._meta.label: reap_kind(model) for model in job_models()}
