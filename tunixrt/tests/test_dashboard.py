"""The dashboard leads with what to do next, then the latest results; health comes below."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set
from runs.tests.run_support import build_arithmetic_dataset

pytestmark = pytest.mark.django_db


def _steps(html: str) -> list[tuple[str, str]]:
    """(state, title) of each first step: done, next or ''."""
    pattern = r'<li class="(done|next|)">\s*<span class="step-mark"[^>]*>[^<]*</span>\s*<div><strong>([^<]+)'
    return re.findall(pattern, html)


def test_a_new_installation_starts_with_importing_traces(page: Any) -> None:
    html = page.get("/").content.decode()
    assert _steps(html) == [
        ("next", "Import traces"), ("", "Build a dataset"), ("", "Launch a run"), ("", "Evaluate")
    ]
    assert 'href="/traces/upload/"' in html
    assert html.index('id="first-steps"') < html.index("<h2>Health</h2>")
    assert 'id="latest-results"' not in html


def test_steps_follow_progress_and_results_lead_once_the_loop_is_done(page: Any) -> None:
    dataset = build_arithmetic_dataset(count=8)
    html = page.get("/").content.decode()
    assert _steps(html)[:3] == [("done", "Import traces"), ("done", "Build a dataset"), ("next", "Launch a run")]

    run = completed_run(dataset)
    eval_set = make_eval_set()
    hand_evaluation(run, eval_set, {"q1": True, "q2": False, "q3": True, "q4": True})
    html = page.get("/").content.decode()
    assert 'id="first-steps"' not in html  # every step done: the results lead
    results = html[html.index('id="latest-results"') :]
    assert f"run #{run.pk}" in results and "quiz" in results and "75.0 %" in results
    assert html.index('id="latest-results"') < html.index("<h2>Health</h2>")


def test_viewers_see_the_steps_without_buttons_they_cannot_use(viewer_page: Any) -> None:
    html = viewer_page.get("/").content.decode()
    assert _steps(html)[0] == ("next", "Import traces")
    assert 'class="button primary" href="/traces/upload/"' not in html


def test_the_api_token_page_is_in_the_menu(page: Any) -> None:
    html = page.get("/traces/").content.decode()
    nav = html[html.index("<nav>") : html.index("</nav>")]
    assert "API token" in nav and "/account/token" in nav
