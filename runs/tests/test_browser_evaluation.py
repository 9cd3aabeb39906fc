"""In a real browser: evaluate a trained run from its page, watch the scorecard appear, find it on the leaderboard.

Uses the browser set-up of traces/tests/test_browser.py (system Chromium through
Playwright, skipped when it is missing unless REQUIRE_BROWSER=1). A Celery
worker runs in a thread of this process, so the evaluation goes the whole way:
form → on_commit → broker → worker → Tunix generation child → database →
htmx polling → reload with the scorecard.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.models import Evaluation, Prediction
from runs.tests.eval_support import SUMS, TRAIN, sums_dataset, sums_eval_set, use_eval_folders
from runs.tests.run_support import log_text, make_run
from traces.tests.test_browser import Watch, launched_chromium, watched_page
from tunixrt.celery import app as celery_app

from playwright.sync_api import Browser, expect  # isort: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason=(
            "real training and evaluation through a Celery worker thread; it runs once, on the "
            "PostgreSQL + Redis pass"
        ),
    ),
]


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


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
def worker(empty_queue: None) -> Iterator[None]:
    """A Celery worker in a thread of this process, consuming from the configured broker."""
    with start_worker(celery_app, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        yield


def test_evaluate_a_run_from_its_page_and_find_it_on_the_leaderboard(browser: Watch, worker: None) -> None:
    # A real, short training run of the tiny model (the compile cache makes it quick).
    run = make_run(sums_dataset(), **{**TRAIN, "max_steps": 20, "checkpoint_every_steps": 20})
    assert execute_run(run.pk) == RunStatus.COMPLETED, log_text(run)[-3000:]
    sums_eval_set()
    page = browser.page

    page.goto(browser.url(f"/runs/{run.pk}/"))
    form = page.locator("#evaluate")
    expect(form.get_by_label("Eval set")).to_have_value("sums-eval")
    form.get_by_label("Max new tokens").fill("24")
    browser.shot("evaluate-form")
    form.get_by_role("button", name="Evaluate").click()

    expect(page).to_have_url(re.compile(r"/evaluations/\d+/$"))
    evaluation_id = int(re.search(r"/evaluations/(\d+)/$", page.url).group(1))  # type: ignore[union-attr]
    expect(page.get_by_role("heading", name=f"Evaluation #{evaluation_id}")).to_be_visible()
    expect(page.locator("#progress")).to_contain_text(f"/ {len(SUMS)} answered")

    # The progress fragment polls; when the evaluation ends the page reloads with the scorecard.
    expect(page.locator("#evaluation-status")).to_have_text("Completed", timeout=180_000)
    evaluation = Evaluation.objects.get(pk=evaluation_id)
    assert evaluation.status == RunStatus.COMPLETED, evaluation.error
    assert evaluation.max_new_tokens == 24
    assert evaluation.celery_task_id, "a worker ran it"
    expect(page.locator("#accuracy")).to_have_text(f"{evaluation.accuracy:.3f}")
    expect(page.locator("#scorecard")).to_contain_text(f"({evaluation.correct}/{len(SUMS)})")
    expect(page.get_by_role("heading", name="By category")).to_be_visible()
    expect(page.locator("#progress")).not_to_have_attribute("hx-trigger", re.compile("every"))
    expect(page.locator("table.predictions tbody tr")).to_have_count(len(SUMS))
    assert Prediction.objects.filter(evaluation=evaluation).count() == len(SUMS)
    browser.shot("evaluation-detail")

    # "Wrong only" keeps just the misses.
    wrong = Prediction.objects.filter(evaluation=evaluation, correct=False).count()
    page.locator("#wrong-only").click()
    expect(page).to_have_url(re.compile(r"\?wrong=1$"))
    expect(page.locator("table.predictions tbody tr.wrong")).to_have_count(wrong)
    expect(page.locator("table.predictions tbody tr.right")).to_have_count(0)

    # The leaderboard of the eval set has the run, linked to this evaluation.
    page.locator(".page-head .actions").get_by_role("link", name="Leaderboard").click()
    expect(page).to_have_url(re.compile(r"/leaderboard/\?eval_set=sums-eval$"))
    row = page.locator("#leaderboard tbody tr").filter(has=page.get_by_role("link", name=f"run #{run.pk}"))
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"{evaluation.correct}/{len(SUMS)}")
    expect(row).to_contain_text("sums@v1")
    accuracy = evaluation.accuracy
    assert accuracy is not None
    expect(row.get_by_role("link", name=f"{accuracy * 100:.1f} %")).to_have_attribute(
        "href", f"/evaluations/{evaluation_id}/"
    )
    browser.shot("leaderboard")
