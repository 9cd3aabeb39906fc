"""In a real browser, the whole preference flow: mark a preference on the compare page, build a
preference dataset, launch a DPO run, watch it finish live, evaluate it.

Uses the browser set-up of traces/tests/test_browser.py (system Chromium through
Playwright, skipped when it is missing unless REQUIRE_BROWSER=1). A Celery
worker runs in a thread of this process, so the run and the evaluation go the
whole way: form → on_commit → broker → worker → Tunix child → database → htmx
polling.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from runs.choices import RunStatus
from runs.models import Evaluation, Prediction, Run, RunMetric
from runs.tests.eval_support import make_eval_set, use_eval_folders
from runs.tests.preference_support import DPO_FAST, mean, series, toy_pair
from traces.models import Dataset, PreferencePair
from traces.tests.factories import make_trace
from traces.tests.test_browser import Watch, launched_chromium, watched_page
from traces.validation import validate_pair
from tunixrt.celery import app as celery_app

from playwright.sync_api import Browser, expect  # isort: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason=(
            "a real preference run and evaluation through a Celery worker thread; it runs once, on the "
            "PostgreSQL + Redis pass"
        ),
    ),
]

# DPO_FAST's shapes (the compile cache serves them) over more steps, so that the page polls the run
# several times while it trains.
DPO_LIVE = {**DPO_FAST, "max_steps": 60, "eval_every_steps": 30, "checkpoint_every_steps": 30}
IMPORTED_PAIRS = 79  # with the one marked in the browser: 80, a fifth held out for validation
EVAL_ITEMS = 4
# What the launch form is given (DPO_LIVE), as typed.
TYPED = ("max_steps", "learning_rate", "warmup_steps", "batch_size", "eval_every_steps",
         "checkpoint_every_steps", "timeout_seconds", "max_prompt_length", "max_response_length")


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Any) -> None:
    use_eval_folders(settings, tmp_path)
    settings.EVAL_MAX_PROMPT_LENGTH = DPO_FAST["max_prompt_length"]  # the toy prompts in the gemma template


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Chromium for this module only."""
    with launched_chromium(own_session=True) as browser:
        yield browser


@pytest.fixture
def browser(chromium: Browser, live_server: Any, user: Any) -> Iterator[Watch]:
    """A page logged in as `user`; after the test it must not have broken any rule (CSP, foreign requests)."""
    with watched_page(chromium, live_server.url, user) as watch:
        yield watch


@pytest.fixture
def worker(settings: Any, empty_queue: None) -> Iterator[None]:
    """A Celery worker in a thread of this process, consuming from the configured broker."""
    settings.RUN_HEARTBEAT_SECONDS = 1
    with start_worker(celery_app, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        yield


def toy_pairs(count: int) -> list[dict[str, str]]:
    """`count` distinct toy format preferences (numbered reasoning and the right result over a bare wrong answer)."""
    rng = random.Random(0)
    triples = itertools.islice(itertools.product(range(1, 10), repeat=3), 7, None, 7)
    return [toy_pair(a, b, c, rng) for a, b, c in itertools.islice(triples, count)]


def test_mark_a_preference_build_a_dataset_launch_dpo_watch_it_and_evaluate_it(
    browser: Watch, worker: None
) -> None:
    # Pairs imported earlier (the same toy preference as the training tests), and two traces
    # answering one prompt: the reasoned, right one and a bare, wrong one.
    PreferencePair.objects.ingest([validate_pair(p) for p in toy_pairs(IMPORTED_PAIRS)], "import")
    prompt = "Q: 4 apples, 5 more, 2 eaten. How many?"
    good = make_trace(
        prompt=prompt,
        steps=[{"i": 0, "type": "add", "content": "4+5=9"}, {"i": 1, "type": "subtract", "content": "9-2=7"}],
        final_answer="7",
    )
    bad = make_trace(prompt=prompt, steps=[{"i": 0, "type": "guess", "content": "about 8"}], final_answer="8")
    make_eval_set("apples", [
        {"id": f"apples-{n}", "prompt": p["prompt"], "expected_answer": p["chosen"].rsplit(" ", 1)[-1]}
        for n, p in enumerate(toy_pairs(EVAL_ITEMS))
    ])
    page = browser.page

    # 1. The compare page: A (the wrong one) against B; B is better.
    page.goto(browser.url(f"/traces/compare/?base={bad.pk}&other={good.pk}"))
    page.locator("#preference [name=note]").fill("B shows its steps and adds up")
    page.get_by_role("button", name="B is better").click()
    expect(page.locator("#preference-result")).to_contain_text("Recorded preference pair")
    marked = PreferencePair.objects.get(chosen_trace=good)
    assert marked.rejected_trace_id == bad.pk
    browser.shot("flow-preference")

    # 2. The build page: a preference dataset of every pair, a fifth held out.
    page.goto(browser.url("/datasets/new/"))
    form = page.locator("#build-form")
    form.locator("[name=kind]").select_option("preference")
    form.locator("[name=name]").fill("flow-prefs")
    form.locator("[name=strategy]").select_option("random")
    form.locator("[name=seed]").fill("1")
    form.locator("[name=validation_fraction]").fill("0.2")
    form.locator("[name=validation_fraction]").blur()
    page.wait_for_load_state("networkidle")
    expect(page.locator("#preview .match-count")).to_have_text(str(IMPORTED_PAIRS + 1))
    page.locator("#build-button").click()
    expect(page).to_have_url(re.compile(r"/datasets/flow-prefs@v1/$"))
    expect(page.locator("#stat-count")).to_have_text(str(IMPORTED_PAIRS + 1))
    dataset = Dataset.objects.get(name="flow-prefs", version=1)
    assert dataset.kind == "preference"
    assert dataset.stats["train"] == 64 and dataset.stats["validation"] == 16
    browser.shot("flow-dataset")

    # 3. The launch form: choosing DPO shows its fields and hides those of other methods.
    page.goto(browser.url("/runs/new/"))
    expect(page.get_by_role("heading", name="Launch a run")).to_be_visible()
    launch = page.locator("#launch-form")
    beta, lambda_orpo = launch.locator("#id_beta"), launch.locator("#id_lambda_orpo")
    seq, generations = launch.locator("#id_max_seq_length"), launch.locator("#id_num_generations")
    expect(beta).to_be_hidden()  # SFT by default
    expect(seq).to_be_visible()
    launch.locator("#id_dataset").select_option(dataset.key)
    launch.locator("#id_base_model").select_option("tiny")
    launch.get_by_label("Training method").select_option("dpo")
    expect(beta).to_be_visible()
    expect(launch.locator("#id_label_smoothing")).to_be_visible()
    expect(launch.locator("#id_max_response_length")).to_be_visible()
    expect(launch.locator("#id_reference_run")).to_be_visible()
    for hidden in (lambda_orpo, seq, generations, launch.locator("#id_kl_mode")):
        expect(hidden).to_be_hidden()
    launch.get_by_label("Training method").select_option("orpo")  # and back: the form follows each choice
    expect(lambda_orpo).to_be_visible()
    expect(beta).to_be_hidden()
    launch.get_by_label("Training method").select_option("dpo")
    expect(beta).to_be_visible()
    beta.fill("0.1")
    launch.locator("#id_method").select_option("full")
    for name in TYPED:
        launch.locator(f"#id_{name}").fill(str(DPO_LIVE[name]))
    browser.shot("flow-launch")
    page.locator("#launch-button").click()

    # 4. The run page: queued, then live progress and preference charts, then completed.
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))  # type: ignore[union-attr]
    expect(page.locator(".messages")).to_contain_text(f"Run {run_id} queued.")
    run = Run.objects.get(pk=run_id)
    steps = DPO_LIVE["max_steps"]
    assert (run.objective, run.dataset_id, run.beta, run.max_steps) == ("dpo", dataset.pk, 0.1, steps)
    expect(page.locator("#run-objective")).to_have_text("DPO")
    # Watch it as a person would: the status fragment polls every 2 s; note what it shows until it ends.
    status, progress = page.locator("#run-status"), page.locator("#status [data-run-progress] .progress-text")
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        shown = (status.text_content() or "").strip()
        line = (progress.text_content() or "").strip() if progress.count() else ""
        if not seen or seen[-1] != (shown, line):
            seen.append((shown, line))
        if shown in ("Completed", "Failed", "Cancelled", "Timed out"):
            break
        page.wait_for_timeout(200)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, seen)
    # It was shown running, part of the way (the page did not just reload at the end).
    counted = [(shown, re.match(rf"(\d+) / {steps}", line)) for shown, line in seen]
    during = [int(m.group(1)) for shown, m in counted if shown == "Running" and m]
    assert any(0 < done < steps for done in during), seen
    assert during == sorted(during), seen  # the step count only moves forward
    expect(page.locator("#status")).not_to_have_attribute("hx-trigger", re.compile("every"))
    expect(progress).to_contain_text(f"{steps} / {steps}")
    for key, legend in (
        ("preference-accuracy", "train reward accuracy"),
        ("preference-margin", "train reward margin"),
        ("preference-rewards", "train reward chosen"),
        ("preference-logps", "train logp rejected"),
    ):
        panel = page.locator(f'#chart [data-chart="{key}"]')
        expect(panel.locator("canvas").first).to_be_visible()  # drawn by uPlot
        expect(panel.locator(".u-legend")).to_contain_text(legend)
    expect(page.locator('#chart [data-chart="preference-accuracy"] .u-legend')).to_contain_text("eval reward accuracy")
    expect(page.locator("#log")).to_contain_text("finished: completed")
    # What the charts draw is what the run learned: the preferred format wins more often by the end.
    accuracy = series(run, "train_reward_accuracy")
    assert len(accuracy) == steps
    assert mean(accuracy[-4:]) > mean(accuracy[:3])
    assert RunMetric.objects.filter(run=run, name="eval_reward_margin").exists()
    browser.shot("flow-run")

    # 5. Evaluate it from its page; the evaluation page polls until the scorecard is there.
    evaluate = page.locator("#evaluate")
    expect(evaluate.get_by_label("Eval set")).to_have_value("apples")
    evaluate.get_by_label("Max new tokens").fill("24")
    evaluate.get_by_role("button", name="Evaluate").click()
    expect(page).to_have_url(re.compile(r"/evaluations/\d+/$"))
    evaluation_id = int(re.search(r"/evaluations/(\d+)/$", page.url).group(1))  # type: ignore[union-attr]
    expect(page.locator("#progress")).to_contain_text(f"/ {EVAL_ITEMS} answered")
    expect(page.locator("#evaluation-status")).to_have_text("Completed", timeout=180_000)
    evaluation = Evaluation.objects.get(pk=evaluation_id)
    assert evaluation.status == RunStatus.COMPLETED, evaluation.error
    assert (evaluation.run_id, evaluation.baseline, evaluation.max_new_tokens) == (run_id, False, 24)
    assert evaluation.celery_task_id, "a worker ran it"
    expect(page.locator("#accuracy")).to_have_text(f"{evaluation.accuracy:.3f}")
    expect(page.locator("table.predictions tbody tr")).to_have_count(EVAL_ITEMS)
    assert Prediction.objects.filter(evaluation=evaluation).count() == EVAL_ITEMS
    browser.shot("flow-evaluation")

    # Back on the run page the evaluation is listed with its accuracy.
    page.goto(browser.url(f"/runs/{run_id}/"))
    row = page.locator("#evaluate tbody tr").filter(has=page.get_by_role("link", name=str(evaluation_id), exact=True))
    expect(row.locator(".badge")).to_have_text("Completed")
    expect(row).to_contain_text(f"{evaluation.accuracy:.3f}")
