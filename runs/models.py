"""Fine-tuning runs with their logs and metrics, evaluations, regression baselines and registered models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import RowNumber
from django.utils import timezone

from runs.choices import (
    TERMINAL_STATUSES,
    ChatTemplate,
    KlMode,
    LogStream,
    RunDevice,
    RunDtype,
    RunMethod,
    RunMode,
    RunObjective,
    RunStatus,
)
from runs.hyperparameters import BOUNDS, model_field
from runs.training import folders
from runs.training.rewards import NAMES as REWARD_NAMES
from tunixrt.jobs import Job

RUN_NAME_MAX, RUN_NOTES_MAX = 120, 10_000
PROGRESS_WINDOW = 30  # steps over which a run's speed (and so its ETA) is measured


@dataclass(frozen=True, slots=True)
class Progress:
    done: int
    total: int
    elapsed_seconds: float | None
    steps_per_second: float | None
    tokens_per_second: float | None
    eta_seconds: float | None

    @property
    def percent(self) -> float:
        return round(100 * min(self.done, self.total) / self.total, 1) if self.total else 0.0


# What a run was launched with (what retry copies and compare diffs).
CONFIG_FIELDS = (
    "base_model",
    "objective",
    "method",
    "parent",
    "reference_run",
    "chat_template",
    "device",
    "dtype",
    "mode",
    "kl_mode",
    "rewards",
    "prompt_eval_set",
    *BOUNDS,
)


RUN_LINKS = ("parent", "reference_run")


# The failure reason when something outside tunix-rt SIGKILLed the training child.
CHILD_KILLED = (
    "The training process was killed (SIGKILL) — often the out-of-memory killer: "
    "try a smaller batch size or max sequence length."
)


def reward_text(rewards: dict[str, float] | None) -> str | None:
    """A reward spec as people read it: "correctness × 1 + format × 0.5" (zero weights left out)."""
    if not rewards:
        return None
    # In the functions' own order: PostgreSQL's jsonb does not keep the keys' order.
    order = {name: i for i, name in enumerate(REWARD_NAMES)}
    named = sorted(rewards.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    return " + ".join(f"{name} × {weight:g}" for name, weight in named if weight) or None


# How many of this installation's last completed runs calibrate the step-time estimate.
CALIBRATION_RUNS = 20


class RunQuerySet(models.QuerySet["Run"]):
    def step_time_calibration(self, limit: int = CALIBRATION_RUNS) -> dict[str, dict[str, float]]:
        """{platform: {"factor", "runs"}}: the median measured/estimated seconds per step.

        Over the last `limit` completed training runs of each platform that recorded both
        the measured figure and the formula's own (uncalibrated) estimate, so a correction
        never compounds on an earlier one. The worker passes it to the child (JobSpec).
        """
        from runs.training.estimates import calibration_factor

        summaries = (
            self.filter(
                status=RunStatus.COMPLETED,
                mode=RunMode.TRAIN,
                summary__has_key="model_seconds_per_step",
            )
            .filter(summary__has_key="seconds_per_step")
            .order_by("-finished_at", "-id")
            .values_list("summary", flat=True)[: limit * 5]
        )
        ratios: dict[str, list[float]] = {}
        for summary in summaries:
            measured, estimated = summary.get("seconds_per_step"), summary.get("model_seconds_per_step")
            platform = str(summary.get("platform") or "cpu")
            bucket = ratios.setdefault(platform, [])
            numbers = isinstance(measured, int | float) and isinstance(estimated, int | float)
            if len(bucket) < limit and numbers and measured > 0 and estimated > 0:
                bucket.append(measured / estimated)
        calibration: dict[str, dict[str, float]] = {}
        for platform, values in ratios.items():
            factor, runs = calibration_factor(values)
            if runs:
                calibration[platform] = {"factor": round(factor, 4), "runs": runs}
        return calibration


class Run(Job):
    """A Tunix fine-tuning run (or dry run) of a base model on a dataset.

    The row is the source of truth for status; the worker claims it with a
    guarded update, beats `heartbeat_at`, and streams logs and metrics into
    RunLog and RunMetric. Files (checkpoints, final model) live in `output_dir`,
    a folder named `<id>-<folder_token>` that only this run writes to (see
    runs.training.folders); rows from before the token existed have an empty one
    and the folder `<id>`.
    """

    dataset = models.ForeignKey("traces.Dataset", on_delete=models.PROTECT, related_name="runs")
    # What people call the run and what they noted about it (editable any time, never part of its config).
    name = models.CharField(max_length=RUN_NAME_MAX, blank=True, default="")
    notes = models.TextField(max_length=RUN_NOTES_MAX, blank=True, default="")
    base_model = models.CharField(max_length=200)
    method = models.CharField(max_length=8, choices=RunMethod.choices, default=RunMethod.FULL)
    objective = models.CharField(
        max_length=8,
        choices=RunObjective.choices,
        default=RunObjective.SFT,
        help_text="what the run optimises: SFT, DPO or ORPO on preference pairs, GRPO on rewards",
    )
    # The completed run whose final model this one starts from (SFT → DPO → GRPO chains).
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="the completed run whose final model this run starts from (empty: the base model)",
    )
    # DPO's frozen reference: a completed run's final model; empty means the model the run starts from.
    reference_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="DPO: the completed run whose final model is the reference (empty: the starting model)",
    )
    kl_mode = models.CharField(
        max_length=12, choices=KlMode.choices, default=KlMode.KL, help_text="GRPO: KL divergence estimator"
    )
    # GRPO: {reward function: weight} (runs.training.rewards); empty for the other objectives.
    rewards = models.JSONField(
        null=True, blank=True, help_text="GRPO: the reward, a weighted sum of named reward functions"
    )
    # GRPO: the eval set whose items (prompt, expected answer) are the prompts, instead of the dataset's.
    prompt_eval_set = models.ForeignKey(
        "runs.EvalSet",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="grpo_runs",
        help_text="GRPO: train on this eval set's prompts instead of the dataset's",
    )
    chat_template = models.CharField(max_length=16, choices=ChatTemplate.choices, default=ChatTemplate.GEMMA)
    device = models.CharField(
        max_length=8, choices=RunDevice.choices, default=RunDevice.AUTO, help_text="where the training child runs"
    )
    dtype = models.CharField(
        max_length=10, choices=RunDtype.choices, default=RunDtype.FLOAT32, help_text="parameters and computation"
    )
    # The hyperparameters: columns derived from runs.hyperparameters (type, default, range, help).
    lora_rank = model_field("lora_rank")
    lora_alpha = model_field("lora_alpha")
    learning_rate = model_field("learning_rate")
    max_steps = model_field("max_steps")
    batch_size = model_field("batch_size")
    max_seq_length = model_field("max_seq_length")
    warmup_steps = model_field("warmup_steps")
    weight_decay = model_field("weight_decay")
    seed = model_field("seed")
    eval_every_steps = model_field("eval_every_steps")
    checkpoint_every_steps = model_field("checkpoint_every_steps")
    timeout_seconds = model_field("timeout_seconds")
    beta = model_field("beta")
    lambda_orpo = model_field("lambda_orpo")
    label_smoothing = model_field("label_smoothing")
    max_prompt_length = model_field("max_prompt_length")
    max_response_length = model_field("max_response_length")
    num_generations = model_field("num_generations")
    temperature = model_field("temperature")
    top_p = model_field("top_p")
    max_tokens_to_generate = model_field("max_tokens_to_generate")
    grpo_beta = model_field("grpo_beta")
    epsilon = model_field("epsilon")
    mode = models.CharField(max_length=8, choices=RunMode.choices, default=RunMode.TRAIN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    exit_code = models.IntegerField(null=True, blank=True)
    stdout_tail = models.TextField(blank=True, default="")
    stderr_tail = models.TextField(blank=True, default="")
    summary = models.JSONField(default=dict, blank=True)
    output_dir = models.CharField(max_length=500, blank=True, default="")
    folder_token = models.CharField(max_length=16, blank=True, default="")

    job_label = "run"
    job_task = "runs.execute_run"
    job_queue = settings.TRAINING_QUEUE
    cancel_statuses = (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELLED)
    resume_note = "Resuming from the last checkpoint"

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
    def title(self) -> str:
        """How pages name the run: "#12 · lr sweep 3e-4" or "#12"."""
        return f"#{self.pk} · {self.name}" if self.name else f"#{self.pk}"

    def describe(self, *, name: str | None = None, notes: str | None = None) -> list[str]:
        """Set the name and/or notes (stripped); returns the fields that changed (saved)."""
        changed = []
        for field, value in (("name", name), ("notes", notes)):
            if value is not None and getattr(self, field) != value.strip():
                setattr(self, field, value.strip())
                changed.append(field)
        if changed:
            self.save(update_fields=changed)
        return changed

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def can_resume(self) -> bool:
        """A training run resumes from its last checkpoint; a dry run is cheap to retry by hand."""
        return self.mode == RunMode.TRAIN and super().can_resume()

    @property
    def killed_by_system(self) -> bool:
        """Failed because its training child was SIGKILLed from outside (usually out of memory)."""
        return self.status == RunStatus.FAILED and self.error.startswith(CHILD_KILLED)

    def reaper_note(self, text: str) -> None:
        from runs.execution import RunRecorder

        RunRecorder(self).log_and_flush(text)

    def assign_folder(self) -> None:
        """Name the run's own folder with a fresh token (the caller saves both fields)."""
        self.folder_token = folders.new_token()
        self.output_dir = str(folders.folder_path(Path(settings.RUNS_DIR), self.pk, self.folder_token))

    def config(self) -> dict[str, object]:
        """The launch settings (what retry copies and compare diffs)."""
        # The run links by id, the eval set by name: what the API shows and a launch takes.
        values = {name: getattr(self, f"{name}_id" if name in RUN_LINKS else name) for name in CONFIG_FIELDS}
        values["prompt_eval_set"] = self.prompt_eval_set.name if self.prompt_eval_set is not None else None
        return values

    def config_for_people(self) -> dict[str, object]:
        """The launch settings as pages show them: choices by their labels ("Full fine-tune", not "full")."""
        return {name: self.display_value(name) for name in CONFIG_FIELDS}

    def display_value(self, name: str) -> object:
        """One launch setting as pages show it (dtype keeps its own name: its label is advice for the form)."""
        if name in RUN_LINKS:
            linked = getattr(self, name)
            return linked.title if linked is not None else None
        if name == "prompt_eval_set":
            return self.prompt_eval_set.name if self.prompt_eval_set is not None else None
        if name == "rewards":
            return reward_text(self.rewards)
        display = getattr(self, f"get_{name}_display", None)
        return display() if callable(display) and name != "dtype" else getattr(self, name)

    @property
    def devices_used(self) -> str:
        """What the training child ran on, as it reported ("CPU (2 devices, …), mesh fsdp=2 tp=1"); empty before."""
        from runs.training.devices import summary

        report = (self.summary or {}).get("devices")
        if not isinstance(report, dict):
            return ""
        mesh = report.get("mesh")
        if isinstance(mesh, dict) and mesh:
            # Named in a fixed order: PostgreSQL's jsonb does not keep the keys' order.
            return summary(report) + f", mesh fsdp={mesh.get('fsdp')} tp={mesh.get('tp')}"
        return summary(report)

    def lineage(self, limit: int = 20) -> list[Run]:
        """The runs this one descends from, oldest first, ending with itself (parent links, at most `limit`)."""
        chain: list[Run] = [self]
        seen = {self.pk}
        current = self
        while current.parent_id is not None and len(chain) < limit:
            parent = Run.objects.select_related("dataset").filter(pk=current.parent_id).first()
            if parent is None or parent.pk in seen:
                break
            chain.append(parent)
            seen.add(parent.pk)
            current = parent
        return chain[::-1]

    @property
    def is_preference(self) -> bool:
        return self.objective in (RunObjective.DPO, RunObjective.ORPO)

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in BOUNDS}

    @property
    def estimate(self) -> dict[str, Any] | None:
        """The child's cost estimate (runs.training.estimates) beside what was measured, for the run page.

        None for a run whose child has not reported its model yet (or that predates the breakdown).
        """
        summary = self.summary or {}
        if "total_mb" not in summary:
            return None
        memory = [
            (label, summary.get(key))
            for label, key in (
                ("weights", "weights_mb"),
                ("gradients", "gradients_mb"),
                ("optimizer state", "optimizer_mb"),
                ("activations", "activations_mb"),
                ("of which logits", "logits_mb"),
                ("runtime overhead", "overhead_mb"),
                ("reference model", "reference_mb"),
            )
            if key != "reference_mb" or summary.get(key)
        ]
        return {
            "memory": memory,
            "total_mb": summary.get("total_mb"),
            "device_memory_mb": summary.get("device_memory_mb"),
            "devices": summary.get("device_count"),
            "platform": summary.get("platform"),
            "device_kind": summary.get("device_kind"),
            "dtype": summary.get("dtype"),
            "fits": summary.get("fits"),
            "estimated_seconds_per_step": summary.get("estimated_seconds_per_step"),
            "seconds_per_step": summary.get("seconds_per_step") or None,
            "calibration_basis": summary.get("calibration_basis"),
            "tokens_per_s": summary.get("tokens_per_s"),
            "mfu": summary.get("mfu"),
            "peak_rss_mb": summary.get("peak_rss_mb"),
            "peak_device_mb": summary.get("peak_device_mb"),
        }

    def metric_series(self, name: str, max_points: int = 500) -> list[tuple[int, float]]:
        """(step, value) points of one metric, thinned in the database to about `max_points`.

        Keeps every k-th recorded point (k = points / max_points, counted in step
        order, so a metric logged every 50 steps thins as evenly as one logged every
        step) plus the last point: a 100,000-step run costs the same to draw as a
        short one.
        """
        points = RunMetric.objects.filter(run=self, name=name)
        count = points.count()
        if count == 0:
            return []
        stride = max(1, -(-count // max(max_points, 1)))
        if stride == 1:
            return list(points.order_by("step", "id").values_list("step", "value"))
        # ROW_NUMBER() is 1-based: keep rows 1, 1 + k, 1 + 2k, ... (the first point, then every k-th).
        numbered = points.annotate(
            _n=models.Window(RowNumber(), order_by=(models.F("step").asc(), models.F("id").asc()))
        )
        kept = numbered.annotate(_m=(models.F("_n") - 1) % stride).filter(_m=0)
        series = list(kept.order_by("step", "id").values_list("step", "value"))
        last = points.order_by("-step", "-id").values_list("step", "value").first()
        if last is not None and series[-1] != last:
            series.append(last)
        return series

    def progress(self) -> Progress:
        """Where the run is: steps done of max_steps, elapsed, speed and (while running) the time left.

        Speed is measured over the last steps the child reported (their tokens_per_s points,
        one per step): steps between the first and last write over the time between them,
        so compilation and loading do not count. One indexed query.
        """
        done = int(self.summary.get("steps_done") or 0)
        total = int(self.max_steps)
        recent = list(
            RunMetric.objects.filter(run=self, name="tokens_per_s")
            .order_by("-step")
            .values_list("step", "value", "created_at")[:PROGRESS_WINDOW]
        )
        steps_per_s = tokens_per_s = None
        if recent:
            tokens_per_s = float(recent[0][1])
            span = (recent[0][2] - recent[-1][2]).total_seconds()
            if span > 0 and recent[0][0] > recent[-1][0]:
                steps_per_s = (recent[0][0] - recent[-1][0]) / span
        if steps_per_s is None and self.summary.get("seconds_per_step"):
            steps_per_s = 1 / float(self.summary["seconds_per_step"])
        eta = None
        if self.is_active and steps_per_s and done < total:
            eta = (total - done) / steps_per_s
        return Progress(done, total, self.duration_seconds, steps_per_s, tokens_per_s, eta)

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


class Evaluation(Job):
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
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    job_label = "evaluation"
    job_task = "runs.execute_evaluation"
    job_queue = settings.TRAINING_QUEUE
    cancel_statuses = (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELLED)
    resume_note = "Generating the answers still missing"

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
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


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
