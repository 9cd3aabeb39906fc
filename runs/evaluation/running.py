"""Evaluating runs: launch, the worker job, scorecards.

Generation happens in a child process (`runs.training.generate`) like
training; this module claims the row, feeds the child the items, extracts and
judges every answer, and stores every prediction.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q

from runs.childproc import ChildProcess, child_command
from runs.choices import RunMode, RunStatus
from runs.evaluation.judging import JUDGE_NAME, JUDGE_VERSION, extract_answer, judge
from runs.launching import run_directory
from runs.models import EvalItem, EvalSet, Evaluation, Prediction, Run
from runs.validation import resolve_base_model
from tunixrt import jobs

logger = logging.getLogger(__name__)
GROUPS = ("category", "section", "difficulty")


class EvaluationConflict(Exception):
    """The run cannot be evaluated (yet): 409."""


def final_model_dir(run: Run) -> Path | None:
    directory = run_directory(run)
    if directory is None:
        return None
    final = directory / "final"
    return final if (final / "model.safetensors").is_file() else None


def launch_evaluation(
    run: Run, eval_set: EvalSet, *, baseline: bool = False, max_new_tokens: int = 64, user: Any = None
) -> Evaluation:
    """Queue an evaluation of the run's trained model (or, with `baseline`, its untrained base)."""
    if not baseline:
        if run.mode != RunMode.TRAIN or run.status != RunStatus.COMPLETED:
            raise EvaluationConflict(
                f"Run {run.pk} is {run.get_status_display().lower()}"
                f"{' (a dry run)' if run.mode == RunMode.DRY_RUN else ''}: only completed training runs "
                "can be evaluated (or evaluate its base model as a baseline)."
            )
        if final_model_dir(run) is None:
            raise EvaluationConflict(f"Run {run.pk} has no final model on disk.")
    else:
        try:
            resolve_base_model(run.base_model)
        except KeyError:
            raise EvaluationConflict(f"The base model {run.base_model!r} is no longer available.") from None
    if not 1 <= max_new_tokens <= 1024:
        raise ValueError("max_new_tokens must be between 1 and 1024.")
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            run=run,
            eval_set=eval_set,
            baseline=baseline,
            max_new_tokens=max_new_tokens,
            total=eval_set.item_count,
            judge_name=JUDGE_NAME,
            judge_version=JUDGE_VERSION,
            created_by=creator,
        )
        jobs.publish_on_commit(evaluation)
    evaluation.refresh_from_db()
    return evaluation


def _remaining_items(evaluation: Evaluation) -> list[tuple[int, str, str]]:
    """(pk, prompt, expected answer) of the items still without a prediction, in order.

    All of them, unless an earlier attempt was cut short.
    """
    answered = Prediction.objects.filter(evaluation=evaluation).values("item_id")
    items = EvalItem.objects.filter(eval_set=evaluation.eval_set).exclude(pk__in=answered)
    return list(items.order_by("position").values_list("pk", "prompt", "expected_answer"))


def _job(evaluation: Evaluation, directory: Path, items: list[tuple[int, str, str]]) -> Path:
    run = evaluation.run
    directory.mkdir(parents=True, exist_ok=True)
    items_file = directory / "items.jsonl"
    with items_file.open("wb") as f:
        for pk, prompt, _ in items:
            f.write(json.dumps({"pk": pk, "prompt": prompt}).encode() + b"\n")
    if evaluation.baseline:
        model = resolve_base_model(run.base_model)
    else:
        final = final_model_dir(run)
        if final is None:
            raise FileNotFoundError(f"Run {run.pk} has no final model.")
        model = {"kind": "local", "path": str(final)}
    job = {
        "model": model,
        "seed": run.seed,
        "chat_template": run.chat_template,
        "device": run.device,
        "dtype": run.dtype,
        "items_file": str(items_file),
        "max_prompt_length": settings.EVAL_MAX_PROMPT_LENGTH,
        "max_new_tokens": evaluation.max_new_tokens,
        "batch_size": 8,
    }
    path = directory / "job.json"
    path.write_text(json.dumps(job))
    return path


def execute_evaluation(evaluation_id: int, task_id: str = "") -> str:
    """The worker job: claim, generate in a child, judge and store every prediction, score.

    A later attempt (the reaper re-queued it after its worker died) keeps the
    predictions already stored and generates only the missing ones.
    """
    evaluation: Evaluation | None = jobs.claim(Evaluation, evaluation_id, task_id)
    if evaluation is None:
        return "not pending"
    base = run_directory(evaluation.run) or Path(settings.RUNS_DIR) / str(evaluation.run_id)
    items = _remaining_items(evaluation)
    expected = {pk: answer for pk, _, answer in items}
    if not expected:  # every answer is in: an earlier attempt died while scoring
        complete(evaluation)
        return RunStatus.COMPLETED
    try:
        job = _job(evaluation, base / "evaluations" / str(evaluation.pk), items)
    except Exception as exc:  # noqa: BLE001 - recorded on the row
        jobs.finish(evaluation, RunStatus.FAILED, error=f"Could not prepare the evaluation: {exc}")
        return RunStatus.FAILED
    try:
        return EvaluationSupervisor(evaluation, expected).supervise(job)
    except Exception as exc:
        logger.exception("evaluation %s failed", evaluation_id)
        jobs.finish(evaluation, RunStatus.FAILED, error=f"The evaluation failed: {type(exc).__name__}: {exc}")
        return RunStatus.FAILED


class EvaluationSupervisor(ChildProcess):
    """Judges and stores each prediction the generation child emits; relays cancel, enforces the timeout."""

    label = "generation"

    def __init__(self, evaluation: Evaluation, expected: dict[int, str]) -> None:
        super().__init__(evaluation.run.timeout_seconds)
        self.evaluation = evaluation
        self.expected = expected
        self.pending: list[Prediction] = []
        self.done_event: dict[str, Any] = {}
        earlier = Prediction.objects.filter(evaluation=evaluation).aggregate(
            n=Count("id"), right=Count("id", filter=Q(correct=True))
        )
        self.done: int = earlier["n"]
        self.correct: int = earlier["right"]
        self.answered = 0

    def supervise(self, job: Path) -> str:
        return self._conclude(self.run_child(child_command("runs.training.generate", job)))

    def flush(self) -> None:
        if self.pending:
            Prediction.objects.bulk_create(self.pending, batch_size=500, ignore_conflicts=True)
            self.pending.clear()
        jobs.beat(self.evaluation, done=self.done, correct=self.correct)

    def cancel_requested(self) -> bool:
        return self.evaluation.cancel_requested()

    def stdout_line(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("event") == "prediction" and event.get("item") in self.expected:
            # A byte-level model can emit NUL, which PostgreSQL text columns refuse.
            output = str(event.get("output", "")).replace("\x00", "\ufffd")
            answer, how = extract_answer(output)
            verdict = judge(answer, self.expected[event["item"]])
            self.pending.append(
                Prediction(
                    evaluation_id=self.evaluation.pk,
                    item_id=event["item"],
                    raw_output=output[:20_000],
                    extracted_answer=answer[:2000],
                    extraction=how,
                    correct=verdict.correct,
                    match=verdict.method,
                    latency_ms=float(event.get("latency_ms") or 0.0),
                )
            )
            self.done += 1
            self.answered += 1
            self.correct += int(verdict.correct)
        elif event.get("event") == "done":
            self.done_event.update(event)

    def _conclude(self, code: int) -> str:
        evaluation = self.evaluation
        if self.timed_out:
            limit = self.timeout_seconds
            jobs.finish(evaluation, RunStatus.TIMEOUT, error=f"Timed out after {limit} seconds (the run's timeout).")
            return RunStatus.TIMEOUT
        if self.evaluation.cancel_requested() or self.done_event.get("status") == "cancelled":
            jobs.finish(evaluation, RunStatus.CANCELLED, error="Cancelled by request.")
            return RunStatus.CANCELLED
        if code != 0 or self.done_event.get("status") != "completed" or self.answered < len(self.expected):
            last = self.stderr_tail.last_lines(3)
            error = self.done_event.get("error") or f"The generation process exited with code {code}."
            error += " Last output: " + " | ".join(last) if last else ""
            jobs.finish(evaluation, RunStatus.FAILED, error=error)
            return RunStatus.FAILED
        complete(evaluation)
        return RunStatus.COMPLETED


def compute_scorecard(evaluation: Evaluation) -> dict[str, Any]:
    """Accuracy overall and per category, section and difficulty."""
    predictions = Prediction.objects.filter(evaluation=evaluation)
    total = predictions.count()
    correct = predictions.filter(correct=True).count()
    card: dict[str, Any] = {
        "overall": {"n": total, "correct": correct, "accuracy": round(correct / total, 4) if total else None}
    }
    for group in GROUPS:
        rows = (
            predictions.values(f"item__{group}")
            .annotate(n=Count("id"), right=Count("id", filter=Q(correct=True)))
            .order_by(f"item__{group}")
        )
        card[group] = {
            (row[f"item__{group}"] or "—"): {
                "n": row["n"],
                "correct": row["right"],
                "accuracy": round(row["right"] / row["n"], 4),
            }
            for row in rows
        }
    card["latency_ms_mean"] = round(sum(predictions.values_list("latency_ms", flat=True)) / total, 2) if total else None
    return card


def complete(evaluation: Evaluation) -> None:
    """Score the evaluation and make it the run's latest on this eval set."""
    card = compute_scorecard(evaluation)
    overall = card["overall"]
    with transaction.atomic():
        Evaluation.objects.filter(
            run=evaluation.run_id, eval_set=evaluation.eval_set_id, baseline=evaluation.baseline, is_latest=True
        ).update(is_latest=False)
        jobs.finish(
            evaluation,
            RunStatus.COMPLETED,
            scorecard=card,
            accuracy=overall["accuracy"],
            correct=overall["correct"],
            done=overall["n"],
            is_latest=True,
            error="",
        )
