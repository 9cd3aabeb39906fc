"""Commands: import_evalset, evaluate_run (--wait), check_regression (the CI gate), promote_run."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError

from runs.choices import RunStatus
from runs.evaluation.running import execute_evaluation
from runs.models import EvalItem, EvalSet, Evaluation, ModelVersion
from runs.regression.gates import create_baseline
from runs.tests.eval_support import (
    EVAL_V1,
    EVAL_V2,
    completed_run,
    fake_generator,
    hand_evaluation,
    item,
    jsonl,
    make_eval_set,
    record_evaluation_tasks,
    use_eval_folders,
)
from runs.tests.run_support import finished_run, make_run
from tunixrt.tests.task_support import intercept_task

pytestmark = pytest.mark.django_db
needs_data = pytest.mark.skipif(not EVAL_V1.exists(), reason=f"the shared eval sets are not at {EVAL_V1.parent}")


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


def run_command(*args: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*[str(a) for a in args], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# import_evalset ----------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(("path", "name", "count"), [(EVAL_V1, "eval_v1", 25), (EVAL_V2, "eval_v2", 100)])
def test_import_evalset_imports_the_shared_files(path, name, count):
    out, _ = run_command("import_evalset", path)
    assert out.strip() == f"Imported eval set {name}: {count} items"
    eval_set = EvalSet.objects.get(name=name)
    assert eval_set.item_count == EvalItem.objects.filter(eval_set=eval_set).count() == count
    assert eval_set.source == f"file:{path.name}"


@needs_data
def test_import_evalset_takes_a_name_and_description():
    run_command("import_evalset", EVAL_V1, "--name", "held-out", "--description", "from the predecessor")
    eval_set = EvalSet.objects.get()
    assert (eval_set.name, eval_set.description) == ("held-out", "from the predecessor")


def test_import_evalset_lists_bad_lines_and_imports_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl([item(1), {"id": "q2", "prompt": "p"}, item(1), "{nope", item(5, extra=True)]))
    out = io.StringIO()
    err = io.StringIO()
    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_evalset", str(bad), stdout=out, stderr=err)
    lines = err.getvalue().splitlines()
    assert lines[0] == f"{bad}:2: expected_answer: required (a non-empty string)"
    assert lines[1] == f"{bad}:3: duplicate id 'q1' (first on line 1)"
    assert lines[2].startswith(f"{bad}:4: Malformed JSON")
    assert lines[3] == f"{bad}:5: unknown fields extra"
    assert not EvalSet.objects.exists() and not EvalItem.objects.exists()


def test_import_evalset_refuses_an_empty_file_a_missing_file_and_a_taken_name(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match="The file holds no items"):
        run_command("import_evalset", empty)
    with pytest.raises(CommandError, match="Cannot read"):
        run_command("import_evalset", tmp_path / "missing.jsonl")
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl([item(1)]))
    run_command("import_evalset", good)
    with pytest.raises(CommandError, match="exists already"):
        run_command("import_evalset", good)
    assert EvalSet.objects.count() == 1


# evaluate_run ------------------------------------------------------------------------------


def test_evaluate_run_queues_an_evaluation(dataset, monkeypatch, django_capture_on_commit_callbacks):
    sent = record_evaluation_tasks(monkeypatch)
    make_eval_set("quiz")
    run = completed_run(dataset)
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run_command("evaluate_run", run.pk, "quiz", "--max-new-tokens", 20)
    evaluation = Evaluation.objects.get()
    assert out.strip() == f"Evaluation {evaluation.pk} queued (4 items)."
    assert (evaluation.max_new_tokens, evaluation.baseline) == (20, False)
    assert sent == [(evaluation.pk,)]
    run_command("evaluate_run", make_run(dataset).pk, "quiz", "--baseline")
    assert Evaluation.objects.filter(baseline=True).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999999", "quiz"], "No run 999999."),
        (["RUN", "nope"], "No eval set 'nope'."),
        (["RUN", "quiz", "--max-new-tokens", "0"], "max_new_tokens must be between 1 and 1024."),
    ],
)
def test_evaluate_run_refuses_what_cannot_be_evaluated(dataset, args, message):
    make_eval_set("quiz")
    run = completed_run(dataset)
    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("evaluate_run", *[str(run.pk) if a == "RUN" else a for a in args])
    assert not Evaluation.objects.exists()


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.FAILED])
def test_evaluate_run_refuses_a_run_that_did_not_complete(dataset, status):
    make_eval_set("quiz")
    run = finished_run(dataset, status=status)
    with pytest.raises(CommandError, match="only completed training runs can be evaluated"):
        run_command("evaluate_run", run.pk, "quiz")
    assert not Evaluation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_evaluate_run_wait_prints_the_scorecard(dataset, settings, tmp_path, monkeypatch):
    # A worker that runs the job at once (like an eager queue) with a stand-in generator.
    fake_generator(settings, tmp_path, {"What is 1 + 1?": "Answer: 2", "What is 3 + 3?": "Answer: 6"})

    intercept_task(monkeypatch, "runs.execute_evaluation", lambda args: execute_evaluation(args[0]))
    make_eval_set("quiz")
    run = completed_run(dataset)
    out, _ = run_command("evaluate_run", run.pk, "quiz", "--wait")
    assert "accuracy 0.5000 (2/4)" in out
    assert "  category arith: 0.5000 (1/2)" in out
    assert "  section extra: 1.0000 (1/1)" in out
    assert "  difficulty easy: 1.0000 (2/2)" in out
    assert "—" not in out

    fake_generator(settings, tmp_path, {}, done={}, exit_code=2)
    with pytest.raises(CommandError, match=r"ended failed: The generation process exited with code 2"):
        run_command("evaluate_run", run.pk, "quiz", "--wait")


# check_regression --------------------------------------------------------------------------


@pytest.fixture
def gate(dataset):
    """Baseline `ci` (accuracy 0.75, higher is better, 10 % tolerance) and runs scoring 1.0, 0.75 and 0.25."""
    quiz = make_eval_set("quiz")

    def evaluated(correct: int):
        run = completed_run(dataset)
        hand_evaluation(run, quiz, {f"q{n}": n <= correct for n in range(1, 5)})
        return run

    reference = evaluated(3)
    create_baseline("ci", reference, quiz, tolerance_pct=10.0)
    create_baseline("ci-errors", reference, quiz, metric="error_rate", direction="lower")
    return {"better": evaluated(4), "same": reference, "worse": evaluated(1), "quiz": quiz}


def test_check_regression_passes_and_prints_both_values_and_the_delta(gate):
    out, _ = run_command("check_regression", "--baseline", "ci", "--run", gate["better"].pk)
    assert out.splitlines() == [
        f"accuracy on quiz (higher is better, tolerance 10%): baseline 0.7500, run {gate['better'].pk} 1.0000, "
        "delta +0.2500",
        "PASS",
    ]


def test_check_regression_fails_with_exit_code_1_on_a_regression(gate):
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("check_regression", "--baseline", "ci", "--run", str(gate["worse"].pk), stdout=out)
    assert caught.value.returncode == 1
    assert out.getvalue().splitlines() == [
        f"accuracy on quiz (higher is better, tolerance 10%): baseline 0.7500, run {gate['worse'].pk} 0.2500, "
        "delta -0.5000",
        "REGRESSION: beyond the threshold 0.6750",
    ]


def _from_command_line(*args: str) -> None:
    """What `manage.py check_regression …` does once Django is set up: run_from_argv turns a CommandError
    into the process's exit status. (execute_from_command_line would also run django.setup() again, which
    re-binds the logging handlers to this test's captured stderr, closed when the test ends.)"""
    argv = ["manage.py", "check_regression", *args]
    ManagementUtility(argv).fetch_command("check_regression").run_from_argv(argv)


@pytest.mark.django_db(transaction=True)  # run_from_argv closes the database connections when it ends
def test_check_regression_exits_1_from_the_command_line(gate, capsys):
    # What CI runs: manage.py turns the CommandError into the process's exit status.
    with pytest.raises(SystemExit) as caught:
        _from_command_line("--baseline", "ci", "--run", str(gate["worse"].pk))
    assert caught.value.code == 1
    captured = capsys.readouterr()
    assert "baseline 0.7500" in captured.out and "0.2500" in captured.out and "delta -0.5000" in captured.out
    assert "regression" in captured.err

    _from_command_line("--baseline", "ci", "--run", str(gate["same"].pk))
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "PASS"
    assert "delta +0.0000" in captured.out


def test_check_regression_lower_is_better(gate):
    out, _ = run_command("check_regression", "--baseline", "ci-errors", "--run", gate["better"].pk)
    assert "error_rate on quiz (lower is better, tolerance 0%): baseline 0.2500" in out
    assert out.splitlines()[-1] == "PASS"
    with pytest.raises(CommandError) as caught:
        run_command("check_regression", "--baseline", "ci-errors", "--run", gate["worse"].pk)
    assert caught.value.returncode == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "nope", "--run", "1"], "No baseline 'nope'."),
        (["--baseline", "ci", "--run", "999999"], "No run 999999."),
    ],
)
def test_check_regression_refuses_unknown_names(gate, args, message):
    with pytest.raises(CommandError, match=re.escape(message)) as caught:
        run_command("check_regression", *args)
    assert caught.value.returncode == 1


def test_check_regression_refuses_a_run_without_an_evaluation(gate, dataset):
    fresh = completed_run(dataset)
    with pytest.raises(CommandError, match=f"Run {fresh.pk} has no completed evaluation on quiz"):
        run_command("check_regression", "--baseline", "ci", "--run", fresh.pk)


# promote_run -------------------------------------------------------------------------------


def test_promote_run_makes_the_next_version(dataset, settings):
    run = completed_run(dataset)
    out, _ = run_command("promote_run", run.pk, "reasoner", "--description", "sums")
    first = ModelVersion.objects.get()
    assert out.strip() == f"Promoted run {run.pk} to reasoner:v1 (sha256 {first.checksum})"
    assert first.model.description == "sums"
    out, _ = run_command("promote_run", run.pk, "reasoner")
    assert "reasoner:v2" in out
    assert (Path(settings.REGISTRY_DIR) / "reasoner" / "v2" / "model.safetensors").is_file()


def test_promote_run_refuses_runs_without_a_final_model_and_bad_names(dataset):
    with pytest.raises(CommandError, match=r"No run 999999\."):
        run_command("promote_run", 999999, "reasoner")
    pending = make_run(dataset)
    with pytest.raises(CommandError, match="no final model to promote"):
        run_command("promote_run", pending.pk, "reasoner")
    with pytest.raises(CommandError, match="name"):
        run_command("promote_run", completed_run(dataset).pk, "Not A Slug")
    assert not ModelVersion.objects.exists()
