"""In a real browser: mark a preference on the compare page, find it in the pairs list, build a
preference dataset from it and download its dpo export.

Uses the browser set-up of traces/tests/test_browser.py (system Chromium through Playwright,
skipped when it is missing unless REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from traces.models import PreferencePair
from traces.tests.factories import make_trace
from traces.tests.test_browser import Watch, launched_chromium, watched_page

from playwright.sync_api import Browser, expect  # isort: skip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with launched_chromium(own_session=True) as browser:
        yield browser


@pytest.fixture
def browser(chromium: Browser, live_server: Any, user: Any) -> Iterator[Watch]:
    with watched_page(chromium, live_server.url, user) as watch:
        yield watch


def test_mark_a_preference_build_a_preference_dataset_and_download_dpo(browser: Watch) -> None:
    prompt = "What is 2 + 3?"
    good = make_trace(prompt=prompt, steps=[{"i": 0, "type": "add", "content": "2 + 3 = 5"}], final_answer="5")
    bad = make_trace(prompt=prompt, steps=[{"i": 0, "type": "add", "content": "2 + 3 = 6"}], final_answer="6")
    page = browser.page

    page.goto(browser.url(f"/traces/compare/?base={bad.pk}&other={good.pk}"))
    page.locator("#preference [name=note]").fill("B adds correctly")
    page.get_by_role("button", name="B is better").click()
    # htmx swaps the result in place: the page (and its note) stays.
    expect(page.locator("#preference-result")).to_contain_text("Recorded preference pair")
    assert page.url.endswith(f"/traces/compare/?base={bad.pk}&other={good.pk}")
    pair = PreferencePair.objects.get()
    assert (pair.chosen_trace_id, pair.rejected_trace_id, pair.note) == (good.pk, bad.pk, "B adds correctly")
    browser.shot("preference-recorded")

    page.locator("#preference-result a").click()
    expect(page.locator("#chosen")).to_contain_text("2 + 3 = 5")
    expect(page.locator("#rejected")).to_contain_text("2 + 3 = 6")

    page.locator("nav").get_by_role("link", name="Pairs").click()
    page.get_by_label("Source").select_option("compare")
    expect(page).to_have_url(re.compile(r"/preferences/\?.*source=compare"))
    expect(page.locator("#pair-table tbody tr")).to_have_count(1)
    page.locator("#build-preference").click()

    form = page.locator("#build-form")
    expect(form.locator("[name=kind]")).to_have_value("preference")
    form.locator("[name=name]").fill("browser-prefs")
    form.locator("[name=name]").blur()
    page.wait_for_load_state("networkidle")
    expect(page.locator("#preview .match-count")).to_have_text("1")
    page.locator("#build-button").click()

    expect(page).to_have_url(re.compile(r"/datasets/browser-prefs@v1/$"))
    expect(page.locator("#stat-count")).to_have_text("1")
    browser.shot("preference-dataset")
    with page.expect_download() as info:
        page.locator("a[data-format=dpo][data-split=all]").click()
    records = [json.loads(line) for line in Path(info.value.path()).read_text(encoding="utf-8").splitlines()]
    assert records == [
        {
            "prompt": f"<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n",
            "chosen": "Reasoning:\n1. 2 + 3 = 5\nAnswer: 5<end_of_turn>",
            "rejected": "Reasoning:\n1. 2 + 3 = 6\nAnswer: 6<end_of_turn>",
        }
    ]
