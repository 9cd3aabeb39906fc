"""Every page in a real browser, at desktop and at phone width, with what a team has after a week.

Each page must render its heading, load nothing from other hosts, log no console
error (no CSP violation), and at 390 px never be wider than the screen (wide
tables scroll inside their own box). With BROWSER_SHOTS=DIR each page is saved
as `desktop-<name>.png` and `phone-<name>.png`, to be looked at.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from runs.models import Run, RunMetric
from runs.tests.eval_support import hand_evaluation, make_eval_set
from runs.tests.run_support import build_arithmetic_dataset, finished_run
from traces.datasets.building import build_dataset, validate_build_spec
from traces.models import PreferencePair, TraceReview
from traces.tests.factories import make_trace
from traces.tests.test_browser import Watch, watched_page

from playwright.sync_api import Browser, ViewportSize, expect  # isort: skip

pytestmark = pytest.mark.browser

WIDTHS: dict[str, ViewportSize] = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def week(user: Any) -> dict[str, str]:
    """Traces (reviewed, tagged, a long one), a dataset, two finished runs, an eval set and evaluations."""
    long = make_trace(
        prompt="A long prompt " + "with-an-unbroken-token-" * 10 + " words" * 60,
        meta={"source": "long-source-name", "tags": ["units", "hard", "multi-step"]},
    )
    other = make_trace(prompt="Convert 68°F to Celsius", meta={"source": "physics", "tags": ["units"]}, created_by=user)
    TraceReview.objects.create(trace=long, user=user, rating="good", rated_at=timezone.now(), comment="clear")
    dataset = build_arithmetic_dataset("week", count=16)
    first = finished_run(dataset, created_by=user)
    second = finished_run(dataset, created_by=user, learning_rate=1e-3)
    Run.objects.filter(pk=second.pk).update(name="lower learning rate", notes="the first one overshot")
    quiz = make_eval_set("quiz")
    grpo = finished_run(
        dataset, created_by=user, objective="grpo", prompt_eval_set="quiz", rewards={"correctness": 1, "format": 0.5}
    )
    sample = {
        "prompt": "What is 2 + 3? " + "with-an-unbroken-token-" * 10,
        "completion": "Reasoning:\n1. " + "x" * 300 + "\nAnswer: 5",
        "answer": "5",
        "rewards": {"correctness": 1.0, "format": 1.0},
        "reward": 1.5,
    }
    Run.objects.filter(pk=grpo.pk).update(summary={**grpo.summary, "grpo_samples": [sample] * 2})
    for name in ("reward_mean", "reward_correctness", "kl", "clip_fraction", "completion_length_mean"):
        RunMetric.objects.bulk_create(RunMetric(run=grpo, name=name, step=s, value=s / 10) for s in range(1, 6))
    a = hand_evaluation(first, quiz, {"q1": True, "q2": False, "q3": True, "q4": False}, created_by=user)
    hand_evaluation(second, quiz, {"q1": True, "q2": True, "q3": True, "q4": False}, created_by=user)
    same = make_trace(prompt=other.prompt, final_answer="20 °C, roughly", created_by=user)
    pair = PreferencePair.objects.get(pk=PreferencePair.objects.from_traces(other, same, note="exact", user=user).id)
    prefs = build_dataset(validate_build_spec({"name": "prefs", "kind": "preference"}), user)
    return {
        "dashboard": "/",
        "traces": "/traces/",
        "trace": f"/traces/{long.pk}/",
        "trace-upload": "/traces/upload/",
        "trace-compare": f"/traces/compare/?base={long.pk}&other={other.pk}",
        "trace-delete": f"/traces/{other.pk}/delete/",
        "trace-compare-same-prompt": f"/traces/compare/?base={other.pk}&other={same.pk}",
        "pairs": "/preferences/",
        "pair": f"/preferences/{pair.pk}/",
        "pair-delete": f"/preferences/{pair.pk}/delete/",
        "preference-dataset": f"/datasets/{prefs.key}/",
        "datasets": "/datasets/",
        "dataset-build": "/datasets/new/",
        "dataset": f"/datasets/{dataset.key}/",
        "runs": "/runs/",
        "run-launch": "/runs/new/",
        "run": f"/runs/{first.pk}/",
        "run-compare": f"/runs/compare/?id={first.pk}&id={second.pk}",
        "grpo-run": f"/runs/{grpo.pk}/",
        "grpo-compare": f"/runs/compare/?id={first.pk}&id={grpo.pk}",
        "evaluations": "/evaluations/",
        "evaluation": f"/evaluations/{a.pk}/",
        "eval-set": "/evaluations/sets/quiz/",
        "evaluation-compare": f"/evaluations/compare/?eval_set=quiz&a={first.pk}&b={second.pk}",
        "leaderboard": "/leaderboard/",
        "regression": "/regression/",
        "models": "/models/",
        "base-models": "/models/base/",
        "token": "/account/token",
    }


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_renders_locally_without_errors_and_fits_the_screen(
    chromium: Browser, live_server: Any, user: Any, week: dict[str, str], width: str
) -> None:
    # `chromium` is the session's one browser (the root conftest), shared with the trace browser tests.
    browser = chromium
    watch: Watch
    with watched_page(browser, live_server.url, user=user) as watch:
        page = watch.page
        page.set_viewport_size(WIDTHS[width])
        for name, path in week.items():
            page.goto(watch.url(path))
            expect(page.locator("main h1").first).to_be_visible()
            page.wait_for_load_state("networkidle")
            watch.shot(f"{width}-{name}")
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a {WIDTHS[width]['width']}px screen"
            snake = page.evaluate(
                """() => Array.from(document.querySelectorAll('main th, main label, main dt, main legend'))
                     .map(e => e.innerText.trim()).filter(t => /^[a-z]+(_[a-z]+)+$/.test(t))"""
            )
            assert not snake, f"{path} shows raw names to people: {snake}"
