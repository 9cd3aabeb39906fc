"""In a real browser: metric charts become interactive uPlot charts, and stay readable without JavaScript.

Uses the browser set-up of traces/tests/test_browser.py (system Chromium through
Playwright, skipped when it is missing unless REQUIRE_BROWSER=1); every page must
stay free of console errors (the CSP reports there). Metrics are written straight
into the database: no training.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.models import Run, RunMetric
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set, use_eval_folders
from runs.tests.run_support import make_run
from traces.tests.test_browser import Watch, launched_chromium, watched_page

from playwright.sync_api import Browser, Locator, Page, expect  # isort: skip

pytestmark = pytest.mark.browser


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


def run_with_metrics(dataset: Any, status: str = RunStatus.COMPLETED, steps: int = 60) -> Run:
    """A run with a noisy falling train loss, an eval loss every 10 steps and a learning rate."""
    run = make_run(dataset)
    Run.objects.filter(pk=run.pk).update(status=status, started_at=timezone.now(), heartbeat_at=timezone.now())
    record(run, 1, steps)
    run.refresh_from_db()
    return run


def record(run: Run, first: int, last: int) -> None:
    points = []
    for step in range(first, last + 1):
        zigzag = 0.4 * (step % 2)  # noise for the smoothing to remove
        points.append(RunMetric(run=run, name="train_loss", step=step, value=4 * math.exp(-step / 30) + zigzag))
        points.append(RunMetric(run=run, name="learning_rate", step=step, value=0.00002))
        if step % 10 == 0:
            points.append(RunMetric(run=run, name="eval_loss", step=step, value=4 * math.exp(-step / 30) + 0.1))
    RunMetric.objects.bulk_create(points)


def hover(page: Page, panel: Locator, at: float) -> None:
    box = panel.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * at, box["y"] + box["height"] / 2)


def legend_value(panel: Locator, label: str) -> Locator:
    return panel.locator(".u-legend .u-series", has_text=label).locator(".u-value")


def drag(page: Page, panel: Locator, start: float, end: float) -> None:
    box = panel.locator(".u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (start + end) / 2, y)
    page.mouse.move(box["x"] + box["width"] * end, y)
    page.mouse.up()


NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?%?$")


def test_a_run_chart_upgrades_and_answers_hover_smoothing_log_toggles_and_zoom(browser: Watch, dataset: Any) -> None:
    run = run_with_metrics(dataset)
    page = browser.page
    page.goto(browser.url(f"/runs/{run.pk}/"))
    loss = page.locator('[data-chart="loss"]')
    expect(loss.locator("canvas").first).to_be_visible()
    expect(loss.locator(".chart-fallback")).to_be_hidden()
    expect(page.locator('[data-chart="learning-rate"] canvas').first).to_be_visible()
    browser.shot("chart-run")

    # Not hovering, the legend shows the latest values; hovering, the values at the hovered step.
    expect(legend_value(loss, "step")).to_have_text("latest")
    expect(legend_value(loss, "train loss")).to_have_text(NUMBER)
    hover(page, loss, 0.5)
    expect(legend_value(loss, "step")).to_have_text(NUMBER)
    expect(legend_value(loss, "train loss")).to_have_text(NUMBER)
    step = legend_value(loss, "step").inner_text()
    raw = legend_value(loss, "train loss").inner_text()
    lr = page.locator('[data-chart="learning-rate"]')
    hover(page, lr, 0.5)
    expect(legend_value(lr, "learning rate")).to_have_text("0.00002")  # never 2e-5

    # Smoothing (keyboard on the slider): the same step now shows the smoothed value.
    slider = loss.locator("input.chart-smoothing")
    slider.focus()
    page.keyboard.press("End")
    expect(loss).to_have_attribute("data-smoothing", "0.99")
    hover(page, loss, 0.5)
    expect(legend_value(loss, "step")).to_have_text(step)
    assert legend_value(loss, "train loss").inner_text() != raw
    slider.focus()
    page.keyboard.press("Home")
    expect(loss).to_have_attribute("data-smoothing", "0")

    # Log scale.
    loss.locator("input.chart-log").check()
    expect(loss).to_have_attribute("data-scale", "log")
    expect(loss.locator("canvas").first).to_be_visible()

    # Clicking a legend entry hides that series.
    loss.locator(".u-legend .u-series", has_text="eval loss").click()
    expect(loss.locator(".u-legend .u-series.u-off")).to_have_text(re.compile("eval loss"))
    expect(loss).to_have_attribute("data-hidden", "eval loss")

    # Drag to zoom on x; a double-click goes back to all steps.
    expect(loss).not_to_have_attribute("data-zoom", re.compile("."))
    drag(page, loss, 0.2, 0.6)
    expect(loss).to_have_attribute("data-zoom", re.compile(r"^\d+(\.\d+)?–\d+(\.\d+)?$"))
    browser.shot("chart-zoomed")
    loss.locator(".u-over").dblclick()
    expect(loss).not_to_have_attribute("data-zoom", re.compile("."))


def test_a_live_chart_keeps_the_users_view_while_new_points_arrive(browser: Watch, dataset: Any) -> None:
    run = run_with_metrics(dataset, RunStatus.RUNNING, steps=20)
    page = browser.page
    page.goto(browser.url(f"/runs/{run.pk}/"))
    loss = page.locator('[data-chart="loss"]')
    expect(loss).to_have_attribute("data-points", "20")
    loss.locator("input.chart-log").check()  # a log scale is a new uPlot chart: mark its canvas after
    expect(loss).to_have_attribute("data-scale", "log")
    page.evaluate("document.querySelector('[data-chart=loss] canvas').dataset.mark = 'first'")
    loss.locator(".u-legend .u-series", has_text="eval loss").click()
    drag(page, loss, 0.1, 0.5)
    zoom = loss.get_attribute("data-zoom")
    assert zoom

    record(run, 21, 40)
    RunMetric.objects.create(run=run, name="grad_norm", step=40, value=1.5)
    expect(loss).to_have_attribute("data-points", "40", timeout=15_000)  # the htmx poll brought them
    expect(loss).to_have_attribute("data-scale", "log")
    expect(loss).to_have_attribute("data-hidden", "eval loss")
    expect(loss).to_have_attribute("data-zoom", zoom)
    expect(loss.locator("input.chart-log")).to_be_checked()
    expect(loss.locator(".chart-fallback")).to_be_hidden()
    assert page.evaluate("document.querySelector('[data-chart=loss] canvas').dataset.mark") == "first"
    # A metric that first appears mid-run gets its own panel, upgraded too.
    expect(page.locator('[data-chart="metric-grad-norm"] canvas').first).to_be_visible()
    loss.locator(".u-over").dblclick()
    expect(loss).not_to_have_attribute("data-zoom", re.compile("."))
    # Leave the page so that no poll is in flight while the test database is torn down.
    page.goto("about:blank")


def test_compare_overlays_the_runs_in_one_colour_each(browser: Watch, dataset: Any) -> None:
    one, two = run_with_metrics(dataset), run_with_metrics(dataset)
    page = browser.page
    page.goto(browser.url(f"/runs/compare/?id={one.pk}&id={two.pk}"))
    loss = page.locator('[data-chart="loss"]')
    expect(loss.locator("canvas").first).to_be_visible()
    labels = loss.locator(".u-legend .u-series .u-label")
    expect(labels).to_have_text(
        ["step", f"#{one.pk} eval loss", f"#{two.pk} eval loss", f"#{one.pk} train loss", f"#{two.pk} train loss"]
    )
    hover(page, loss, 0.7)
    expect(legend_value(loss, f"#{one.pk} train loss")).to_have_text(NUMBER)
    expect(legend_value(loss, f"#{two.pk} train loss")).to_have_text(NUMBER)
    browser.shot("chart-compare")


def test_the_leaderboard_charts_accuracy_per_run(browser: Watch, dataset: Any, settings: Any, tmp_path: Any) -> None:
    use_eval_folders(settings, tmp_path)
    quiz = make_eval_set("quiz")
    a, b = completed_run(dataset), completed_run(dataset)
    hand_evaluation(a, quiz, {"q1": True, "q2": False, "q3": False, "q4": False})
    hand_evaluation(b, quiz, {"q1": True, "q2": True, "q3": True, "q4": False})
    page = browser.page
    page.goto(browser.url("/leaderboard/?eval_set=quiz"))
    chart = page.locator("#accuracy-chart")
    expect(chart.locator("canvas").first).to_be_visible()
    expect(chart.locator(".chart-fallback")).to_be_hidden()
    hover(page, chart, 0.25)  # the first bar: the best run
    expect(legend_value(chart, "run")).to_have_text(f"#{b.pk}")
    expect(legend_value(chart, "trained")).to_have_text("75%")
    browser.shot("chart-leaderboard")


def test_without_javascript_the_charts_are_svg(chromium: Browser, live_server: Any, user: Any, dataset: Any) -> None:
    run = run_with_metrics(dataset)
    with watched_page(chromium, live_server.url, user, java_script_enabled=False) as watch:
        page = watch.page
        page.goto(watch.url(f"/runs/{run.pk}/"))
        loss = page.locator('[data-chart="loss"]')
        expect(loss.locator("svg.chart")).to_be_visible()
        expect(loss.locator("svg.chart polyline")).to_have_count(2)
        expect(loss.locator(".legend")).to_contain_text("train loss")
        expect(page.locator("canvas")).to_have_count(0)
        expect(page.locator(".chart-tools")).to_have_count(0)
