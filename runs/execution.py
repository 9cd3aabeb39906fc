"""The worker side of a run: claim it, start the training child, stream its output into the database.

One child process per run (`python -m runs.training.child`): JAX's metric
listeners are process-global and its caches are never returned, so nothing
of one run may leak into the worker or into the next run. The worker beats the
run's heartbeat, relays cancel requests as SIGTERM (the child stops at its
next step and keeps a checkpoint) and enforces the timeout (SIGTERM, then
SIGKILL).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Max
from django.utils import timezone

from runs import childproc
from runs.childproc import BoundedTail, ChildProcess
from runs.choices import PREFERENCE_OBJECTIVES, LogStream, RunMode, RunObjective, RunStatus
from runs.models import CHILD_KILLED, EvalItem, Run, RunLog, RunMetric
from runs.training import folders, templates
from runs.training.job import JobSpec
from runs.validation import resolve_base_model
from traces.choices import Split
from traces.datasets.exporting import iter_dataset_lines
from traces.models import DatasetMember
from tunixrt import jobs

logger = logging.getLogger(__name__)
LOG_FLUSH_ROWS = 2000


def without_nul(value: Any) -> Any:
    """PostgreSQL text and JSON cannot hold NUL; a byte-level model happily generates it."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


class RunRecorder:
    """Buffers a run's log lines and metric points and writes them in batches."""

    def __init__(self, run: Run) -> None:
        self.run = run
        last = RunLog.objects.filter(run=run).aggregate(m=Max("seq"))["m"]
        self.seq = 0 if last is None else last + 1
        # Plain tuples until written: building model instances would cost more than the write.
        self.logs: list[tuple[int, str, str]] = []
        self.metrics: list[tuple[str, int, float]] = []

    def log(self, text: str, stream: str = LogStream.STDOUT) -> None:
        self.logs.append((self.seq, stream, text[:10_000].replace("\x00", "\ufffd")))
        self.seq += 1

    def metric(self, name: str, step: int, value: float) -> None:
        self.metrics.append((name[:64], max(step, 0), value))

    def log_and_flush(self, text: str) -> None:
        self.log(text, LogStream.SYSTEM)
        self.flush()

    @property
    def pending(self) -> int:
        return len(self.logs) + len(self.metrics)

    def flush(self) -> None:
        if not self.logs and not self.metrics:
            return
        now = timezone.now()
        run_id = self.run.pk
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # COPY is several times faster than multi-row INSERTs for these narrow rows.
                with connection.cursor() as cur:
                    raw = cur.cursor
                    if self.logs:
                        table = RunLog._meta.db_table
                        with raw.copy(f'COPY "{table}" (run_id, seq, stream, text, created_at) FROM STDIN') as copy:
                            for seq, stream, text in self.logs:
                                copy.write_row((run_id, seq, stream, text, now))
                    if self.metrics:
                        table = RunMetric._meta.db_table
                        with raw.copy(f'COPY "{table}" (run_id, name, step, value, created_at) FROM STDIN') as copy:
                            for name, step, value in self.metrics:
                                copy.write_row((run_id, name, step, value, now))
            else:
                RunLog.objects.bulk_create(
                    [RunLog(run_id=run_id, seq=q, stream=s, text=t, created_at=now) for q, s, t in self.logs],
                    batch_size=500,
                )
                RunMetric.objects.bulk_create(
                    [RunMetric(run_id=run_id, name=n, step=s, value=v, created_at=now) for n, s, v in self.metrics],
                    batch_size=500,
                )
        self.logs.clear()
        self.metrics.clear()


def prepare_job(run: Run) -> Path:
    """Write the run's data files and job file into its folder; return the job file.

    Raises FolderNotOwned when the folder is not this run's (see runs.training.folders).
    """
    if run.attempt == 1 and not run.folder_token:
        # A row queued before folders had tokens and not started yet: give it one now.
        run.assign_folder()
        run.save(update_fields=["output_dir", "folder_token"])
    directory = Path(run.output_dir)
    folders.take(directory, run.pk, run.folder_token, first_attempt=run.attempt == 1)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    files = {}
    for split in (Split.TRAIN, Split.VALIDATION):
        path = directory / "data" / f"{split}.jsonl"
        if not path.exists():  # a resumed attempt trains on exactly the same files
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                for line in _dataset_lines(run, split):
                    f.write(line)
            tmp.replace(path)
        files[split] = path
    prompts: list[str] = []
    for split in (Split.VALIDATION, Split.TRAIN):
        with files[split].open("rb") as f:
            for line in f:
                if len(prompts) == 2:
                    break
                # Preference exports carry the prompt rendered in the run's template: keep the question.
                prompts.append(templates.as_head(run.chat_template, json.loads(line)["prompt"])[1])
    spec = JobSpec(
        run_id=run.pk,
        mode=run.mode,
        output_dir=str(directory.resolve()),
        train_file=str(files[Split.TRAIN].resolve()),
        validation_file=str(files[Split.VALIDATION].resolve()),
        base_model=starting_model(run),
        method=run.method,
        objective=run.objective,
        kl_mode=run.kl_mode,
        rewards=run.rewards if run.objective == RunObjective.GRPO else None,
        reference_model=_run_model(run.reference_run) if run.reference_run_id is not None else None,
        parent_run_id=run.parent_id,
        chat_template=run.chat_template,
        device=run.device,
        dtype=run.dtype,
        **run.hyperparameters(),
        sample_prompts=prompts if run.mode == RunMode.TRAIN else [],
        step_time_calibration=Run.objects.exclude(pk=run.pk).step_time_calibration(),
    )
    job = directory / "job.json"
    spec.write(job)
    return job


def _dataset_lines(run: Run, split: str) -> Iterator[bytes]:
    """The split's lines in the run's objective's format.

    DPO/ORPO: preference pairs (`dpo`, in the run's template); GRPO: prompts with the expected
    final answer its correctness reward judges against (runs.training.grpo.read_prompts); SFT:
    training examples.
    """
    if run.objective in PREFERENCE_OBJECTIVES:
        return iter_dataset_lines(run.dataset, "dpo", split, template=run.chat_template)
    if run.objective == RunObjective.GRPO:
        return _prompt_lines(run, split)
    return iter_dataset_lines(run.dataset, "training_example", split)


def _prompt_lines(run: Run, split: str) -> Iterator[bytes]:
    """GRPO prompts: the dataset's split, or, for a run on an eval set, its items as the training prompts.

    A run on an eval set trains on all its items; the dataset's validation split still fills the
    validation file (the engine does not use it; the sample prompts come from it).
    """
    rows: Iterable[tuple[str, str]]
    if run.prompt_eval_set_id is not None and split == Split.TRAIN:
        rows = (
            EvalItem.objects.filter(eval_set_id=run.prompt_eval_set_id)
            .order_by("position")
            .values_list("prompt", "expected_answer")
            .iterator(chunk_size=2000)
        )
    else:
        rows = (
            DatasetMember.objects.filter(dataset=run.dataset, split=split)
            .order_by("position")
            .values_list("trace__prompt", "trace__final_answer")
            .iterator(chunk_size=2000)
        )
    for prompt, answer in rows:
        yield (json.dumps({"prompt": prompt, "answer": answer}, ensure_ascii=False) + "\n").encode()


def _run_model(run: Run | None) -> dict[str, Any]:
    """The job description of a completed run's final model."""
    from runs.evaluation.running import final_model_dir

    final = final_model_dir(run) if run is not None else None
    if run is None or final is None:
        raise FileNotFoundError(f"Run {getattr(run, 'pk', '?')} has no final model on disk any more.")
    return {"kind": "local", "name": f"run {run.pk}", "path": str(final.resolve())}


def starting_model(run: Run) -> dict[str, Any]:
    """What the run trains from: its parent run's final model, else its base model."""
    if run.parent_id is not None:
        return _run_model(run.parent)
    return resolve_base_model(run.base_model)


def execute_run(run_id: int, task_id: str = "") -> str:
    """Run one claimed run to its end; returns the final status (or why nothing ran)."""
    run: Run | None = jobs.claim(Run, run_id, task_id)
    if run is None:
        return "not pending"
    recorder = RunRecorder(run)
    recorder.log(f"attempt {run.attempt} on {socket.gethostname()}", LogStream.SYSTEM)
    try:
        job = prepare_job(run)
    except Exception as exc:
        logger.exception("run %s: preparing the job failed", run_id)
        recorder.flush()
        reason = str(exc) if isinstance(exc, folders.FolderNotOwned) else f"{type(exc).__name__}: {exc}"
        jobs.finish(run, RunStatus.FAILED, error=f"Could not prepare the run: {reason}")
        return RunStatus.FAILED
    recorder.flush()
    return Supervisor(run, recorder, job).supervise()


class Supervisor(ChildProcess):
    """Feeds one training child's output into the database; beats, relays cancel, enforces the timeout."""

    label = "training"

    def __init__(self, run: Run, recorder: RunRecorder, job: Path) -> None:
        super().__init__(run.timeout_seconds)
        self.run = run
        self.recorder = recorder
        self.job = job
        self.stdout_tail = BoundedTail(settings.TUNIX_OUTPUT_MAX_BYTES)
        self.done: dict[str, Any] | None = None
        self.summary: dict[str, Any] = {}
        self.last_beat = time.monotonic()

    def supervise(self) -> str:
        return self._conclude(self.run_child(childproc.child_command("runs.training.child", self.job)))

    def note(self, text: str) -> None:
        self.recorder.log(text, LogStream.SYSTEM)

    def flush(self) -> None:
        self.recorder.flush()

    def flush_due(self) -> bool:
        return self.recorder.pending >= LOG_FLUSH_ROWS

    def cancel_requested(self) -> bool:
        return self.run.cancel_requested()

    def tick(self, now: float) -> None:
        if now - self.last_beat >= settings.RUN_HEARTBEAT_SECONDS:
            self.last_beat = now
            # The summary so far (steps done, data and model report) shows progress on the pages.
            jobs.beat(self.run, summary=self.summary)

    def stdout_line(self, raw: bytes) -> None:
        self.stdout_tail.add(raw + b"\n")
        try:
            event = json.loads(raw)
            kind = event["event"]
        except (ValueError, KeyError, TypeError):
            self.recorder.log(raw.decode("utf-8", errors="replace"))
            return
        if kind == "metric":
            value = event.get("value")
            if isinstance(value, int | float) and value == value:
                self.recorder.metric(str(event.get("name")), int(event.get("step") or 0), float(value))
        elif kind == "step":
            self.summary["steps_done"] = event["step"]
            self.recorder.log(f"step {event['step']}: loss {event['loss']:.4f}")
        elif kind == "log":
            self.recorder.log(str(event.get("text", "")))
        elif kind == "done":
            self.done = without_nul(event)
            self.summary.update(without_nul(event.get("summary") or {}))
        elif kind == "grpo_samples":
            # The latest sampled completions with their per-function rewards, shown live on the run page.
            self.summary["grpo_samples"] = without_nul(event.get("samples") or [])
            self.summary["grpo_samples_step"] = event.get("step")
            self.recorder.log(f"sampled completions at step {event.get('step')}")
        elif kind == "devices":
            self.summary["devices"] = {k: v for k, v in event.items() if k not in ("event", "t")}
        elif kind in ("data", "model", "dry_run", "started"):
            fields = {k: v for k, v in event.items() if k not in ("event", "t")}
            self.summary.update(fields)
            self.recorder.log(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in fields.items()))
        elif kind == "checkpoint":
            if isinstance(event.get("saved"), list):  # the end-of-training inventory, not a new save
                self.recorder.log("checkpoints kept: steps " + ", ".join(str(s) for s in event["saved"]))
            else:
                self.recorder.log(f"checkpoint saved at step {event.get('step')}")
        else:
            self.recorder.log(f"{kind}: {json.dumps({k: v for k, v in event.items() if k not in ('event', 't')})}")

    def stderr_line(self, raw: bytes) -> None:
        super().stderr_line(raw)
        text = raw.decode("utf-8", errors="replace").rstrip()
        if text:
            self.recorder.log(text, LogStream.STDERR)

    def _conclude(self, code: int) -> str:
        close_old_connections()
        done = self.done or {}
        fields: dict[str, Any] = {
            "exit_code": code,
            "summary": self.summary,
            "stdout_tail": self.stdout_tail.text(),
            "stderr_tail": self.stderr_tail.text(),
        }
        current = Run.objects.filter(pk=self.run.pk).values_list("status", flat=True).first()
        if self.timed_out:
            status, error = RunStatus.TIMEOUT, f"Timed out after {self.run.timeout_seconds} seconds."
        elif self.cancel_sent or current == RunStatus.CANCEL_REQUESTED:
            status, error = RunStatus.CANCELLED, "Cancelled by request."
        elif code == 0 and done.get("status") == "completed":
            status, error = RunStatus.COMPLETED, ""
        else:
            status = RunStatus.FAILED
            error = done.get("error") or (self.summary.get("problem") if self.summary else None) or ""
            if self.killed_from_outside(code):
                error = CHILD_KILLED
            elif not error:
                last = self.stderr_tail.last_lines(3)
                error = f"The training process exited with code {code}." + (
                    " Last output: " + " | ".join(last) if last else ""
                )
        self.recorder.log(f"finished: {status}" + (f" ({error})" if error else ""), LogStream.SYSTEM)
        self.recorder.flush()
        jobs.finish(self.run, status, error=error, **fields)
        return str(status)
