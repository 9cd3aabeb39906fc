"""A real evaluation: a tiny model trained to memorise sums beats its untrained base on them.

Nothing is mocked: the run trains with Tunix in its child process, each
evaluation generates with Tunix's sampler in its own child, and the worker
function extracts, judges and stores every prediction.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from django.core.management import call_command

from runs.choices import RunStatus
from runs.evaluation.judging import JUDGE_NAME, JUDGE_VERSION
from runs.evaluation.running import execute_evaluation, launch_evaluation
from runs.models import Evaluation, Prediction
from runs.registry.promotion import ARCHIVE, promote
from runs.tests.eval_support import (
    EVAL_TOKENS,
    SUMS,
    SentEvaluations,
    final_losses,
    record_evaluation_tasks,
    sums_dataset,
    sums_eval_set,
    trained_sums_run,
    use_eval_folders,
)
from tunixrt.tests.task_support import intercept_task

# Training runs outside any test transaction (its worker closes old connections).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def sent_evaluations(monkeypatch) -> SentEvaluations:
    return record_evaluation_tasks(monkeypatch)


def _evaluate(run, eval_set, sent: SentEvaluations, *, baseline: bool) -> Evaluation:
    evaluation = launch_evaluation(run, eval_set, baseline=baseline, max_new_tokens=EVAL_TOKENS)
    assert sent[-1] == (evaluation.pk,), "queued after commit, by id"
    assert evaluation.status == RunStatus.PENDING
    status = execute_evaluation(evaluation.pk, task_id=f"task-{evaluation.pk}")
    evaluation.refresh_from_db()
    assert status == RunStatus.COMPLETED, evaluation.error
    return evaluation


def test_a_trained_model_beats_its_untrained_base_and_every_answer_is_stored(sent_evaluations):
    dataset = sums_dataset()
    run = trained_sums_run(dataset, reuse=False)
    losses = final_losses(run)
    assert len(losses) == run.max_steps
    assert losses[0] > 4.5, "a random byte model starts near ln(259)"
    assert min(losses[-10:]) < 0.05, f"the sums were not memorised: last losses {losses[-10:]}"
    eval_set = sums_eval_set()

    trained = _evaluate(run, eval_set, sent_evaluations, baseline=False)
    base = _evaluate(run, eval_set, sent_evaluations, baseline=True)

    for evaluation in (trained, base):
        assert evaluation.status == RunStatus.COMPLETED
        assert evaluation.error == ""
        assert (evaluation.judge_name, evaluation.judge_version) == (JUDGE_NAME, JUDGE_VERSION)
        assert evaluation.celery_task_id == f"task-{evaluation.pk}"
        assert evaluation.total == evaluation.done == len(SUMS)
        assert evaluation.is_latest, "the trained and the base model each have their latest"
        assert evaluation.started_at is not None and evaluation.finished_at is not None
        assert evaluation.finished_at >= evaluation.started_at
        predictions = list(Prediction.objects.filter(evaluation=evaluation).select_related("item"))
        assert sorted(p.item.item_id for p in predictions) == sorted(f"sum-{a}-{b}" for a, b in SUMS)
        for p in predictions:
            assert p.raw_output != ""
            assert "\x00" not in p.raw_output
            assert p.extraction in ("answer_marker", "last_line", "last_number", "none")
            assert p.latency_ms > 0
            assert p.correct == (p.match in ("exact", "numeric"))
        assert evaluation.correct == sum(p.correct for p in predictions)
        card = evaluation.scorecard
        assert card["overall"] == {"n": len(SUMS), "correct": evaluation.correct, "accuracy": evaluation.accuracy}
        assert set(card["category"]) == {"small", "large"}
        assert set(card["section"]) == {"core", "extra"}
        assert set(card["difficulty"]) == {"easy", "medium"}
        for group in ("category", "section", "difficulty"):
            assert sum(row["n"] for row in card[group].values()) == len(SUMS)
            assert sum(row["correct"] for row in card[group].values()) == evaluation.correct
        assert card["latency_ms_mean"] > 0

    assert trained.accuracy is not None and base.accuracy is not None
    assert trained.accuracy > base.accuracy, (trained.accuracy, base.accuracy)
    assert trained.accuracy >= 0.75, "the model memorised its training prompts"
    right = Prediction.objects.filter(evaluation=trained, correct=True).select_related("item").first()
    assert right is not None
    assert right.extraction == "answer_marker"
    assert right.extracted_answer == right.item.expected_answer
    assert f"Answer: {right.item.expected_answer}" in right.raw_output

    # The trained model goes into the registry as an exact copy.
    version = promote(run, "sums-reasoner")
    final = Path(run.output_dir) / "final"
    assert version.metrics[f"accuracy/{eval_set.name}"] == trained.accuracy
    with tarfile.open(Path(version.path) / ARCHIVE) as tar:
        names = {m.name.removeprefix("sums-reasoner-v1/"): m for m in tar.getmembers() if m.isfile()}
        assert {"model.safetensors", "config.json"} <= set(names)
        packed = tar.extractfile(names["model.safetensors"]).read()  # type: ignore[union-attr]
    assert packed == (final / "model.safetensors").read_bytes()


def test_evaluate_run_wait_shows_a_real_scorecard(monkeypatch):
    # The queue runs the job at once, as a worker would.
    intercept_task(monkeypatch, "runs.execute_evaluation", lambda args: execute_evaluation(args[0]))
    run = trained_sums_run(sums_dataset())  # the model trained above, when it ran first
    sums_eval_set()
    out = io.StringIO()
    call_command("evaluate_run", str(run.pk), "sums-eval", "--wait", "--max-new-tokens", str(EVAL_TOKENS), stdout=out)
    evaluation = Evaluation.objects.get()
    assert evaluation.status == RunStatus.COMPLETED
    lines = out.getvalue().splitlines()
    assert lines[0] == f"Evaluation {evaluation.pk} queued ({len(SUMS)} items)."
    overall = evaluation.scorecard["overall"]
    assert f"accuracy {overall['accuracy']:.4f} ({overall['correct']}/{len(SUMS)})" in lines
    assert any(line.startswith("  category small: ") for line in lines)
    assert any(line.startswith("  difficulty medium: ") for line in lines)
