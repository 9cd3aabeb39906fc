"""In a real browser: the experiment-tracker parts of the pages.

First steps on an empty dashboard, live progress of a running run, the runs
table (sort, names and notes, tick to compare), and pickers instead of id boxes
(evaluation compare, regression check). Runs here are rows as a worker leaves
them (no training: the training path has its own browser test).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.models import Run, RunMetric
from runs.regression.gates import create_baseline
from runs.tests.eval_support import hand_evaluation, make_eval_set
from runs.tests.run_support import build_arithmetic_dataset, finished_run, make_run
from traces.tests.test_browser import Watch, launched_chromium, watched_page

from playwright.sync_api import Browser, expect  # isort: skip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with launched_chromium(own_session=True) as browser:
        yield browser


@pytest.fixture
def browser(chromium: Browser, live_server: Any, user: Any) -> Iterator[Watch]:
    with watched_page(chromium, live_server.url, user=user) as watch:
        yield watch


def test_an_empty_dashboard_leads_with_the_first_step(browser: Watch) -> None:
    page = browser.page
    page.goto(browser.url("/"))
    steps = page.locator("#first-steps li")
    expect(steps).to_have_count(4)
    expect(steps.nth(0)).to_have_class(re.compile(r"\bnext\b"))
    browser.shot("first-steps")
    steps.nth(0).get_by_role("link").click()
    expect(page.get_by_role("heading", name="Upload traces")).to_be_visible()


def test_a_running_run_shows_its_progress_on_its_page_and_in_the_list(browser: Watch, user: Any) -> None:
    dataset = build_arithmetic_dataset("progress", count=8)
    run = make_run(dataset, created_by=user, max_steps=40)
    started = timezone.now() - timedelta(seconds=20)
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, started_at=started, heartbeat_at=timezone.now(), summary={"steps_done": 10}
    )
    # As the worker writes them: one point per step, a second apart.
    RunMetric.objects.bulk_create(
        [RunMetric(run=run, name="train_loss", step=s, value=5.0 - 0.05 * s) for s in range(1, 11)]
        + [
            RunMetric(run=run, name="tokens_per_s", step=s, value=900.0, created_at=started + timedelta(seconds=s))
            for s in range(1, 11)
        ]
    )
    page = browser.page
    page.goto(browser.url(f"/runs/{run.pk}/"))
    progress = page.locator(".progress-text").first
    expect(progress).to_contain_text("10 / 40")
    expect(progress).to_contain_text("ETA 30 s")  # 30 steps left at 1 step/s
    expect(progress).to_contain_text("elapsed")
    expect(progress).to_contain_text("1 steps/s")
    browser.shot("run-progress")
    # More steps arrive; the page follows without a reload.
    RunMetric.objects.bulk_create([RunMetric(run=run, name="train_loss", step=s, value=4.0) for s in range(11, 21)])
    Run.objects.filter(pk=run.pk).update(summary={"steps_done": 20}, heartbeat_at=timezone.now())
    expect(progress).to_contain_text("20 / 40", timeout=15_000)
    page.goto(browser.url("/runs/"))
    expect(page.locator(f"#run-{run.pk}, tr:has(a[href='/runs/{run.pk}/'])").first).to_contain_text("20 / 40")


def test_the_runs_table_sorts_names_runs_and_compares_the_ticked_ones(browser: Watch, user: Any) -> None:
    dataset = build_arithmetic_dataset("table", count=8)
    low = finished_run(dataset, created_by=user)
    high = finished_run(dataset, created_by=user)
    Run.objects.filter(pk=high.pk).update(summary={**high.summary, "final_train_loss": 4.5})
    page = browser.page

    # Name and notes, edited on the run's page.
    page.goto(browser.url(f"/runs/{high.pk}/"))
    page.get_by_text("Name and notes").click()
    page.get_by_label("Name").fill("warm start")
    page.get_by_label("Notes").fill("lr 3e-3, then cosine")
    page.locator("#describe-button").click()
    expect(page.locator("#describe")).to_contain_text("lr 3e-3, then cosine")
    expect(page.locator("h1")).to_contain_text("warm start")

    # Sort by final loss, both ways, in place.
    page.goto(browser.url("/runs/"))
    page.get_by_role("link", name=re.compile(r"^Final loss")).click()
    expect(page).to_have_url(re.compile(r"sort="))
    rows = page.locator("#run-table tbody tr")
    first = rows.nth(0).inner_text()
    page.get_by_role("link", name=re.compile(r"^Final loss")).click()
    expect(rows.nth(0)).not_to_have_text(first)
    expect(page.locator("#run-table")).to_contain_text("warm start")
    browser.shot("runs-sorted")

    # Tick both and compare.
    for run in (low, high):
        page.get_by_label(f"select run {run.pk}").check()
    expect(page.locator("#run-compare-form .compare-button")).to_have_text("Compare 2 selected")
    page.locator("#run-compare-form .compare-button").click()
    expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
    expect(page.locator("main")).to_contain_text(f"Run #{low.pk}")
    expect(page.locator("main")).to_contain_text(f"Run #{high.pk}")


def test_pickers_offer_what_fits_instead_of_id_boxes(browser: Watch, user: Any) -> None:
    dataset = build_arithmetic_dataset("pick", count=8)
    first = finished_run(dataset, created_by=user)
    second = finished_run(dataset, created_by=user)
    Run.objects.filter(pk=second.pk).update(name="second try")
    finished_run(dataset, created_by=user)  # never evaluated: not offered
    quiz = make_eval_set("quiz")
    hand_evaluation(first, quiz, {"q1": True, "q2": False, "q3": True, "q4": False})
    hand_evaluation(second, quiz, {"q1": True, "q2": True, "q3": True, "q4": False})
    create_baseline("quiz-gate", first, quiz)
    page = browser.page

    page.goto(browser.url("/evaluations/compare/"))
    options = page.locator("datalist#run-choices option")
    expect(options).to_have_count(2)
    expect(options.nth(0)).to_have_attribute("value", str(second.pk))
    assert "second try" in (options.nth(0).text_content() or "")
    page.get_by_label("Run A").fill(str(first.pk))
    page.get_by_label("Run B").fill(str(second.pk))
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("main")).to_contain_text("improved")
    browser.shot("evaluation-compare-picked")

    page.goto(browser.url("/regression/"))
    expect(page).to_have_title(re.compile(r"^Regression gates"))
    expect(page.locator("datalist#evaluated-runs option")).to_have_count(2)
    page.get_by_label("Baseline").select_option("quiz-gate")
    page.get_by_role("combobox", name="Run").last.fill(str(second.pk))  # an input with a list is a combobox
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("PASS")
