"""In a real browser: log in, launch a tiny run, watch it finish on its page, download a file.

Uses the browser set-up of traces/tests/test_browser.py (system Chromium through
Playwright, skipped when it is missing unless REQUIRE_BROWSER=1). A Celery
worker runs in a thread of this process, so the run goes the whole way: form →
on_commit → broker → worker → training child → database → htmx polling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from runs.choices import RunStatus
from runs.models import Run
from runs.tests.run_support import FAST, build_arithmetic_dataset
from traces.tests.test_browser import PASSWORD, Watch, launched_chromium, watched_page
from tunixrt.celery import app as celery_app

from playwright.sync_api import Browser, Request, expect  # isort: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason=(
            "real training through a Celery worker thread; it runs once, on the PostgreSQL + Redis pass"
        ),
    ),
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Chromium for this module only (traces' session-wide one starts after it, in path order)."""
    with launched_chromium(own_session=True) as browser:
        yield browser


@pytest.fixture
def anon(chromium: Browser, live_server: Any) -> Iterator[Watch]:
    """A fresh, logged-out page; after the test it must not have broken any rule."""
    with watched_page(chromium, live_server.url, accept_downloads=True) as watch:
        yield watch


@pytest.fixture
def worker(settings: Any, empty_queue: None) -> Iterator[None]:
    """A Celery worker in a thread of this process, consuming from the configured broker."""
    settings.RUN_HEARTBEAT_SECONDS = 1
    with start_worker(celery_app, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        yield


def test_launch_a_tiny_run_watch_it_finish_and_download_its_model(
    anon: Watch, user: Any, worker: None, tmp_path: Path
) -> None:
    dataset = build_arithmetic_dataset()
    page = anon.page

    page.goto(anon.url("/runs/new/"))
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/runs/new/$"))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Launch a run")).to_be_visible()

    page.locator("#id_dataset").select_option(dataset.key)
    page.locator("#id_base_model").select_option("tiny")
    page.locator("#id_method").select_option("full")
    for name in (
        "max_steps",
        "learning_rate",
        "warmup_steps",
        "batch_size",
        "max_seq_length",
        "eval_every_steps",
        "checkpoint_every_steps",
        "timeout_seconds",
    ):
        page.locator(f"#id_{name}").fill(str(FAST[name]))
    anon.shot("run-launch")
    page.get_by_role("button", name="Launch").click()

    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))  # type: ignore[union-attr]
    expect(page.locator(".messages")).to_contain_text(f"Run {run_id} queued.")
    expect(page.get_by_role("heading", name=f"Run #{run_id}")).to_be_visible()
    assert Run.objects.get(pk=run_id).max_steps == FAST["max_steps"]

    # The status fragment polls; when the run ends the page reloads itself.
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=180_000)
    run = Run.objects.get(pk=run_id)
    assert run.status == RunStatus.COMPLETED, run.error
    expect(page.locator("#status")).not_to_have_attribute("hx-trigger", re.compile("every"))
    loss = page.locator('#chart [data-chart="loss"]')
    expect(loss.locator("svg.chart polyline")).to_have_count(2)  # train and eval loss (the no-JavaScript view)
    expect(loss.locator("canvas").first).to_be_visible()  # drawn by uPlot
    expect(loss.locator(".u-legend")).to_contain_text("train loss")
    expect(page.locator('#chart [data-chart="learning-rate"] canvas').first).to_be_visible()
    expect(page.locator("#log")).to_contain_text("finished: completed")
    expect(page.locator("#log")).to_contain_text(f"step {FAST['max_steps']}: loss")
    expect(page.locator(".kv").first).to_contain_text("Final train loss")
    anon.shot("run-detail")
    # An ended run's page is quiet: no log poller left to fire again and again.
    log_fetches: list[str] = []

    def note_log_fetch(request: Request) -> None:
        if "/logs/" in request.url:
            log_fetches.append(request.url)

    page.on("request", note_log_fetch)
    page.wait_for_timeout(1500)
    assert log_fetches == [], log_fetches
    assert page.locator("#log-poll").count() == 0
    # The log opens at its newest line, like `tail -f`.
    gap = page.locator("#log").evaluate("box => box.scrollHeight - box.scrollTop - box.clientHeight")
    assert gap < 40, gap

    link = page.locator("#artifacts").get_by_role("link", name="final/config.json", exact=True)
    expect(link).to_be_visible()
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "config.json"
    saved = tmp_path / "config.json"
    download.save_as(saved)
    assert json.loads(saved.read_text())["model_type"] == "qwen3"

    # The history shows it finished, with its final loss, and no longer polls.
    page.get_by_role("navigation").get_by_role("link", name="Runs").click()
    row = page.locator(f"#run-{run_id}")
    expect(row.locator(".badge")).to_have_text("Completed")
    assert row.get_attribute("hx-trigger") is None
    anon.shot("run-list")

    # On a phone-sized screen wide tables scroll inside their box; the page never gets wider.
    page.set_viewport_size({"width": 390, "height": 800})
    for path in ("/runs/", f"/runs/{run_id}/", f"/datasets/{dataset.key}/", "/leaderboard/", "/models/"):
        page.goto(anon.url(path))
        expect(page.locator("main h1")).to_be_visible()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the screen"
    anon.shot("run-list-narrow")
