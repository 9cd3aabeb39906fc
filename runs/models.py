"""Workers (and, as the runs feature grows, fine-tuning runs)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from runs.choices import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ChatTemplate,
    LogStream,
    RunMethod,
    RunMode,
    RunStatus,
)
from runs.training import folders


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


CONFIG_FIELDS = (
    "base_model",
    "method",
    "lora_rank",
    "lora_alpha",
    "learning_rate",
    "max_steps",
    "batch_size",
    "max_seq_length",
    "warmup_steps",
    "weight_decay",
    "seed",
    "eval_every_steps",
    "checkpoint_every_steps",
    "chat_template",
    "timeout_seconds",
    "mode",
)


# The failure reason when something outside tunix-rt SIGKILLed the training child.
CHILD_KILLED = (
    "The training process was killed (SIGKILL) — often the out-of-memory killer: "
    "try a smaller batch size or max sequence length."
)


class RunNotActive(Exception):
    """A state change asked of a run that already ended (or has not)."""


class RunQuerySet(models.QuerySet["Run"]):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def stale(self, seconds: int) -> RunQuerySet:
        """Running runs whose worker has not beaten its heartbeat for `seconds`."""
        cutoff = timezone.now() - timedelta(seconds=seconds)
        return self.filter(status__in=(RunStatus.RUNNING, RunStatus.CANCEL_REQUESTED)).filter(
            models.Q(heartbeat_at__lt=cutoff) | models.Q(heartbeat_at__isnull=True)
        )


class Run(models.Model):
    """A Tunix fine-tuning run (or dry run) of a base model on a dataset.

    The row is the source of truth for status; the worker claims it with a
    guarded update, beats `heartbeat_at`, and streams logs and metrics into
    RunLog and RunMetric. Files (checkpoints, final model) live in `output_dir`,
    a folder named `<id>-<folder_token>` that only this run writes to (see
    runs.training.folders); rows from before the token existed have an empty one
    and the folder `<id>`.
    """

    dataset = models.ForeignKey("traces.Dataset", on_delete=models.PROTECT, related_name="runs")
    base_model = models.CharField(max_length=200)
    method = models.CharField(max_length=8, choices=RunMethod.choices, default=RunMethod.FULL)
    lora_rank = models.PositiveIntegerField(default=8)
    lora_alpha = models.FloatField(default=16.0)
    learning_rate = models.FloatField(default=3e-3)
    max_steps = models.PositiveIntegerField(default=100)
    batch_size = models.PositiveIntegerField(default=8)
    max_seq_length = models.PositiveIntegerField(default=256)
    warmup_steps = models.PositiveIntegerField(default=5)
    weight_decay = models.FloatField(default=0.0)
    seed = models.PositiveIntegerField(default=0)
    eval_every_steps = models.PositiveIntegerField(default=20)
    checkpoint_every_steps = models.PositiveIntegerField(default=50)
    chat_template = models.CharField(max_length=16, choices=ChatTemplate.choices, default=ChatTemplate.GEMMA)
    timeout_seconds = models.PositiveIntegerField(default=3600)
    mode = models.CharField(max_length=8, choices=RunMode.choices, default=RunMode.TRAIN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    worker_host = models.CharField(max_length=255, blank=True, default="")
    attempt = models.PositiveIntegerField(default=1)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    stdout_tail = models.TextField(blank=True, default="")
    stderr_tail = models.TextField(blank=True, default="")
    summary = models.JSONField(default=dict, blank=True)
    output_dir = models.CharField(max_length=500, blank=True, default="")
    folder_token = models.CharField(max_length=16, blank=True, default="")

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="run_newest_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def killed_by_system(self) -> bool:
        """Failed because its training child was SIGKILLed from outside (usually out of memory)."""
        return self.status == RunStatus.FAILED and self.error.startswith(CHILD_KILLED)

    def cancel(self) -> None:
        """A pending run is cancelled at once; a running one asks its worker to stop the child.

        Guarded updates: a worker claiming or finishing the row at the same
        moment never has its status overwritten.
        """
        now = timezone.now()
        pending = Run.objects.filter(pk=self.pk, status=RunStatus.PENDING)
        if pending.update(status=RunStatus.CANCELLED, finished_at=now, error="Cancelled before it started."):
            self.refresh_from_db()
            return
        Run.objects.filter(pk=self.pk, status=RunStatus.RUNNING).update(status=RunStatus.CANCEL_REQUESTED)
        self.refresh_from_db()
        if self.status != RunStatus.CANCEL_REQUESTED:
            raise RunNotActive(f"Run {self.pk} is already {self.get_status_display().lower()}.")

    def assign_folder(self) -> None:
        """Name the run's own folder with a fresh token (the caller saves both fields)."""
        self.folder_token = folders.new_token()
        self.output_dir = str(folders.folder_path(Path(settings.RUNS_DIR), self.pk, self.folder_token))

    def config(self) -> dict[str, object]:
        """The launch settings (what retry copies and compare diffs)."""
        return {name: getattr(self, name) for name in CONFIG_FIELDS}

    def metric_series(self, name: str, max_points: int = 500) -> list[tuple[int, float]]:
        """(step, value) points of one metric, thinned in the database to about `max_points`.

        Keeps every k-th step (k = last step / max_points) plus the last point,
        so a 100,000-step run costs the same to draw as a short one.
        """
        points = RunMetric.objects.filter(run=self, name=name)
        last = points.order_by("-step").values_list("step", "value").first()
        if last is None:
            return []
        stride = max(1, -(-last[0] // max(max_points, 1)))
        if stride > 1:
            points = points.annotate(_m=models.F("step") % stride).filter(_m=0)
        series = list(points.order_by("step", "id").values_list("step", "value"))
        if series[-1][0] != last[0]:
            series.append(last)
        return series

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return round((end - self.started_at).total_seconds(), 1)


class RunLog(models.Model):
    """One log line of a run, numbered per run so clients can ask for "lines after N"."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs")
    seq = models.PositiveIntegerField()
    stream = models.CharField(max_length=8, choices=LogStream.choices, default=LogStream.STDOUT)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runlog_run_seq")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq}"


class RunMetric(models.Model):
    """One metric point (train_loss, eval_loss, perplexity, grad_norm, learning_rate, tokens_per_s)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=64)
    step = models.PositiveIntegerField()
    value = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["run", "name", "step"], name="runmetric_series_idx")]

    def __str__(self) -> str:
        return f"{self.run_id} {self.name}@{self.step}={self.value}"


class EvalSet(models.Model):
    """A held-out set of questions with expected answers, imported from JSONL or a dataset split."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    source = models.CharField(max_length=200, blank=True, default="")
    item_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["-created_at", "-id"], name="evalset_newest_idx")]

    def __str__(self) -> str:
        return self.name


class EvalItem(models.Model):
    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="items")
    item_id = models.CharField(max_length=200)
    position = models.PositiveIntegerField()
    prompt = models.TextField()
    expected_answer = models.TextField()
    category = models.CharField(max_length=100, blank=True, default="")
    difficulty = models.CharField(max_length=100, blank=True, default="")
    section = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["eval_set", "item_id"], name="evalitem_unique_id"),
            models.UniqueConstraint(fields=["eval_set", "position"], name="evalitem_position"),
        ]

    def __str__(self) -> str:
        return f"{self.eval_set_id}:{self.item_id}"


class EvaluationQuerySet(models.QuerySet["Evaluation"]):
    def active(self) -> EvaluationQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)


class Evaluation(models.Model):
    """A run's model (or, with `baseline`, its untrained base) answering every item of an eval set."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="evaluations")
    eval_set = models.ForeignKey(EvalSet, on_delete=models.PROTECT, related_name="evaluations")
    baseline = models.BooleanField(default=False, help_text="the untrained base model, not the trained one")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    max_new_tokens = models.PositiveIntegerField(default=64)
    judge_name = models.CharField(max_length=50, blank=True, default="")
    judge_version = models.CharField(max_length=20, blank=True, default="")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)
    accuracy = models.FloatField(null=True, blank=True)
    scorecard = models.JSONField(default=dict, blank=True)
    is_latest = models.BooleanField(default=False, help_text="the run's latest completed evaluation on this set")
    error = models.TextField(blank=True, default="")
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = EvaluationQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="evaluation_newest_idx"),
            models.Index(fields=["eval_set", "is_latest", "-accuracy"], name="evaluation_leaderboard_idx"),
            models.Index(fields=["run", "eval_set", "-finished_at"], name="evaluation_run_set_idx"),
        ]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} of run {self.run_id} on {self.eval_set_id}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def cancel(self) -> None:
        """Pending: cancelled at once; running: the worker stops the generation after its batch."""
        pending = Evaluation.objects.filter(pk=self.pk, status=RunStatus.PENDING)
        if pending.update(status=RunStatus.CANCELLED, finished_at=timezone.now(), error="Cancelled before it started."):
            self.refresh_from_db()
            return
        Evaluation.objects.filter(pk=self.pk, status=RunStatus.RUNNING).update(status=RunStatus.CANCEL_REQUESTED)
        self.refresh_from_db()
        if self.status != RunStatus.CANCEL_REQUESTED:
            raise RunNotActive(f"Evaluation {self.pk} is already {self.get_status_display().lower()}.")


class Prediction(models.Model):
    """One generated answer: raw output, extracted answer, verdict and latency."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="predictions")
    item = models.ForeignKey(EvalItem, on_delete=models.CASCADE, related_name="+")
    raw_output = models.TextField()
    extracted_answer = models.TextField()
    extraction = models.CharField(max_length=20)
    correct = models.BooleanField()
    match = models.CharField(max_length=20, blank=True, default="")
    latency_ms = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["evaluation", "item"], name="prediction_once_per_item")]
        indexes = [models.Index(fields=["evaluation", "correct"], name="prediction_eval_correct_idx")]

    def __str__(self) -> str:
        return f"{self.evaluation_id}:{self.item_id} {'✓' if self.correct else '✗'}"


class Direction(models.TextChoices):
    HIGHER = "higher", "Higher is better"
    LOWER = "lower", "Lower is better"


class RegressionBaseline(models.Model):
    """A metric value of a reference run on an eval set that later runs must not fall below (or above)."""

    name = models.SlugField(max_length=100, unique=True)
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="+")
    eval_set = models.ForeignKey(EvalSet, on_delete=models.PROTECT, related_name="+")
    metric = models.CharField(max_length=50, default="accuracy")
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.HIGHER)
    tolerance_pct = models.FloatField(default=0.0)
    value = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class RegisteredModel(models.Model):
    """A named model whose versions are promoted runs."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """An immutable copy of a run's final model with its checksum, metrics and provenance."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions")
    checksum = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    path = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("model", "-version")
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="modelversion_unique")]

    def __str__(self) -> str:
        return f"{self.model.name}:v{self.version}"
