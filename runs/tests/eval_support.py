"""Helpers for the evaluation tests: eval sets, hand-made evaluations, a tiny model trained to memorise sums.

The run tests' conftest already points RUNS_DIR / MODELS_DIR at the test's
tmp_path and shares one JAX compile cache; `use_eval_folders` adds the registry
folder and shorter evaluation prompts, `record_evaluation_tasks` stands in for
the evaluation queue and `fake_generator` for the generation child.
"""

from __future__ import annotations

import atexit
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from runs.choices import RunStatus
from runs.evaluation.evalsets import import_evalset
from runs.evaluation.running import complete
from runs.execution import execute_run
from runs.models import EvalItem, EvalSet, Evaluation, Prediction, Run, RunMetric
from runs.tests.run_support import finished_run, log_text, make_run
from traces.datasets.building import build_dataset, validate_build_spec
from traces.models import Dataset
from traces.tests.factories import TraceFactory
from tunixrt.tests.task_support import intercept_task

DATA = Path(settings.BASE_DIR).parent / "shared" / "data" / "tunix-rt"
EVAL_V1 = DATA / "eval_v1.jsonl"
EVAL_V2 = DATA / "eval_v2.jsonl"

# The memorised sums: one distribution, short enough that batch 8 × 128 bytes
# holds prompt + reasoning + answer with room to spare. Consecutive operands
# give every prompt its own answer, which the tiny model learns in ~150 steps.
SUMS = [(a, a + 1) for a in range(1, 13)]
CATEGORIES = ("small", "large")
TRAIN: dict[str, Any] = {
    "max_steps": 150,
    "batch_size": 8,
    "max_seq_length": 128,
    "learning_rate": 0.01,
    "warmup_steps": 10,
    "eval_every_steps": 100,
    "checkpoint_every_steps": 150,
    "chat_template": "plain",
}
EVAL_TOKENS = 40


def use_eval_folders(settings: Any, tmp_path: Path) -> Path:
    """REGISTRY_DIR in this test's tmp_path (RUNS_DIR and MODELS_DIR come from the conftest), and
    evaluation prompts clipped to 64 tokens (the sums are ~20) so generation compiles small shapes."""
    settings.REGISTRY_DIR = tmp_path / "registry"
    settings.EVAL_MAX_PROMPT_LENGTH = 64
    return tmp_path


class SentEvaluations(list[tuple[int, ...]]):
    """The argument tuples of every evaluation task sent (instead of reaching a broker)."""


def record_evaluation_tasks(monkeypatch: pytest.MonkeyPatch) -> SentEvaluations:
    """Publishing an evaluation task records its arguments and answers a fake task id."""
    sent = SentEvaluations()

    def record(args: tuple[int, ...]) -> str:
        sent.append(args)
        return f"eval-task-{len(sent)}"

    intercept_task(monkeypatch, "runs.execute_evaluation", record)
    return sent


def jsonl(rows: Iterable[Mapping[str, Any] | str]) -> bytes:
    """JSONL bytes; a str row is written as it is (for malformed lines)."""
    return b"".join((row if isinstance(row, str) else json.dumps(row)).encode() + b"\n" for row in rows)


def item(n: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": f"q{n}", "prompt": f"What is {n} + {n}?", "expected_answer": str(2 * n)}
    row.update(overrides)
    return row


def make_eval_set(
    name: str = "quiz", rows: Iterable[Mapping[str, Any]] | None = None, created_by: Any = None
) -> EvalSet:
    """An eval set imported the normal way; by default 4 items over two categories and difficulties."""
    if rows is None:
        rows = [
            item(1, category="arith", difficulty="easy", section="core"),
            item(2, category="arith", difficulty="hard", section="core"),
            item(3, category="words", difficulty="easy", section="extra"),
            item(4, category="words", difficulty="hard"),
        ]
    return import_evalset(io.BytesIO(jsonl(rows)), name, source="test", user=created_by)


def completed_run(dataset: Dataset, **overrides: Any) -> Run:
    """A completed training run with a hand-made final/ folder (model.safetensors + config.json)."""
    return finished_run(dataset, **overrides)


def hand_evaluation(
    run: Run,
    eval_set: EvalSet,
    verdicts: Mapping[str, bool | tuple[str, bool]],
    *,
    baseline: bool = False,
    finish: bool = True,
    age: timedelta = timedelta(0),
    created_by: Any = None,
) -> Evaluation:
    """An evaluation with one prediction per named item: {item_id: correct} or {item_id: (answer, correct)}.

    With `finish` it is scored by `complete()` like a worker would; `age` moves its creation back in time.
    """
    items = {i.item_id: i for i in EvalItem.objects.filter(eval_set=eval_set)}
    now = timezone.now() - age
    evaluation = Evaluation.objects.create(
        run=run,
        eval_set=eval_set,
        baseline=baseline,
        status=RunStatus.RUNNING,
        total=eval_set.item_count,
        judge_name="exact_or_numeric",
        judge_version="1",
        created_at=now,
        started_at=now,
        created_by=created_by,
    )
    predictions = []
    for n, (item_id, verdict) in enumerate(verdicts.items()):
        answer, correct = verdict if isinstance(verdict, tuple) else (
            items[item_id].expected_answer if verdict else "wrong",
            verdict,
        )
        predictions.append(
            Prediction(
                evaluation=evaluation,
                item=items[item_id],
                raw_output=f"Reasoning:\n1. think\nAnswer: {answer}",
                extracted_answer=answer,
                extraction="answer_marker",
                correct=correct,
                match="exact" if correct else "",
                latency_ms=10.0 * (n + 1),
            )
        )
    Prediction.objects.bulk_create(predictions)
    if finish:
        complete(evaluation)
        evaluation.refresh_from_db()
    return evaluation


def sum_trace(a: int, b: int, category: str = "sums") -> Any:
    return TraceFactory(
        prompt=f"What is {a} + {b}?",
        steps=[{"i": 0, "type": "compute", "content": f"{a} + {b} = {a + b}"}],
        final_answer=str(a + b),
        meta={"source": category, "tags": ["sum"]},
    )


def sums_dataset(name: str = "sums") -> Dataset:
    """Every sum in SUMS as a training example (no validation split: the model should memorise them)."""
    for a, b in SUMS:
        sum_trace(a, b)
    return build_dataset(validate_build_spec({"name": name, "strategy": "all"}))


def sums_eval_set(name: str = "sums-eval") -> EvalSet:
    """The same prompts as the training set, labelled by category, section and difficulty."""
    rows = [
        {
            "id": f"sum-{a}-{b}",
            "prompt": f"What is {a} + {b}?",
            "expected_answer": str(a + b),
            "category": CATEGORIES[int(a >= 10)],
            "section": "core" if n % 2 == 0 else "extra",
            "difficulty": "easy" if a <= 4 else "medium",
        }
        for n, (a, b) in enumerate(SUMS)
    ]
    return make_eval_set(name, rows)


_TRAINED: dict[str, Path] = {}  # per test process: a memorised model's final/ folder, trained once


def trained_sums_run(dataset: Dataset, *, reuse: bool = True) -> Run:
    """A completed run of the tiny preset that really trained on `dataset` (from sums_dataset).

    The first call trains for real (TRAIN settings); later calls (with `reuse`)
    give a new completed run row holding a copy of that trained model, so tests
    that only need *a* trained model do not pay for training again.
    """
    if reuse and "sums" in _TRAINED and (_TRAINED["sums"] / "model.safetensors").is_file():
        run = finished_run(dataset, files=False, **TRAIN)
        shutil.copytree(_TRAINED["sums"], Path(run.output_dir) / "final")
        return run
    run = make_run(dataset, **TRAIN)
    status = execute_run(run.pk, task_id="train-sums")
    run.refresh_from_db()
    assert status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    folder = tempfile.mkdtemp(prefix="tunixrt-test-trained-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    keep = Path(folder) / "final"
    shutil.copytree(Path(run.output_dir) / "final", keep)
    _TRAINED["sums"] = keep
    return run


def final_losses(run: Run) -> list[float]:
    return list(RunMetric.objects.filter(run=run, name="train_loss").order_by("step").values_list("value", flat=True))


FAKE_GENERATOR = '''#!{python}
"""Stands in for `python -m runs.training.generate JOB.json`: answers from a table, no model."""
import json, signal, sys, time
from pathlib import Path

if {ignore_term!r}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
job = json.loads(Path(sys.argv[-1]).read_text())
items = [json.loads(line) for line in Path(job["items_file"]).read_text().splitlines() if line.strip()]
answers = {answers!r}
print("not json: the worker skips this line", flush=True)
print(json.dumps({{"event": "started", "items": len(items)}}), flush=True)
for item in items[: {limit!r}]:
    time.sleep({delay!r})
    output = answers.get(item["prompt"], "I do not know")
    print(json.dumps({{"event": "prediction", "item": item["pk"], "output": output, "latency_ms": 2.5}}), flush=True)
print(json.dumps({{"event": "prediction", "item": 10**9, "output": "not an item of this set"}}), flush=True)
sys.stderr.write({stderr!r})
if {done!r}:
    print(json.dumps({{"event": "done", **{done!r}}}), end={end!r}, flush=True)
sys.exit({exit_code!r})
'''


def fake_generator(
    settings: Any,
    folder: Path,
    answers: Mapping[str, str],
    *,
    limit: int | None = None,
    delay: float = 0.0,
    done: Mapping[str, str] | None = None,
    exit_code: int = 0,
    stderr: str = "",
    ignore_term: bool = False,
    end: str = "\n",
) -> Path:
    """Point TRAINING_PYTHON at a script that answers each prompt from `answers` (to test the worker's side).

    `ignore_term` makes it deaf to SIGTERM (only SIGKILL stops it); `end` ends its last line.
    """
    script = folder / "fake-generator"
    script.write_text(
        FAKE_GENERATOR.format(
            python=sys.executable,
            answers=dict(answers),
            limit=limit,
            delay=delay,
            done=dict(done) if done is not None else {"status": "completed"},
            exit_code=exit_code,
            stderr=stderr,
            ignore_term=ignore_term,
            end=end,
        )
    )
    script.chmod(0o755)
    settings.TRAINING_PYTHON = str(script)
    return script
