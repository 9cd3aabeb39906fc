"""Keyboard use of the pages in a real browser: search, row navigation, ticking, ranges, submit, help."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from traces.tests.factories import make_trace
from traces.tests.test_browser import Watch, _rows, launched_chromium, watched_page

from playwright.sync_api import Browser  # isort: skip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Chromium for this module only (the session one belongs to traces/tests/test_browser.py)."""
    with launched_chromium(own_session=True) as browser:
        yield browser


@pytest.fixture
def browser(chromium: Browser, live_server: Any, user: Any) -> Iterator[Watch]:
    with watched_page(chromium, live_server.url, user) as watch:
        yield watch


def test_slash_focuses_search_and_j_k_enter_open_a_row(browser: Watch) -> None:
    from playwright.sync_api import expect

    traces = [make_trace(prompt=f"Keyboard question {n}") for n in range(3)]
    page = browser.page
    page.goto(browser.url("/traces/"))
    expect(_rows(page)).to_have_count(3)
    page.keyboard.press("/")
    expect(page.locator("input[name=q]")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("input[name=q]")).not_to_be_focused()
    page.keyboard.press("j")
    page.keyboard.press("j")
    current = page.locator("tr.kb-current")
    expect(current).to_have_count(1)
    expect(current).to_contain_text("Keyboard question 1")  # newest first: 2, 1, 0
    page.keyboard.press("k")
    expect(page.locator("tr.kb-current")).to_contain_text("Keyboard question 2")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/traces/{traces[2].pk}/$"))


def test_x_ticks_shift_click_ticks_a_range_and_question_mark_lists_the_keys(browser: Watch) -> None:
    from playwright.sync_api import expect

    for n in range(5):
        make_trace(prompt=f"Range question {n}")
    page = browser.page
    page.goto(browser.url("/traces/"))
    boxes = page.locator("#trace-table tbody input[type=checkbox][name=id]")
    expect(boxes).to_have_count(5)
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(boxes.nth(0)).to_be_checked()
    boxes.nth(3).click(modifiers=["Shift"])
    for n in range(4):
        expect(boxes.nth(n)).to_be_checked()
    expect(boxes.nth(4)).not_to_be_checked()
    page.keyboard.press("?")
    help_box = page.locator("#keys-help")
    expect(help_box).to_be_visible()
    expect(help_box).to_contain_text("Ctrl-Enter")
    page.keyboard.press("Escape")
    expect(help_box).to_be_hidden()


def test_ctrl_enter_submits_the_form_being_typed_in(browser: Watch, user: Any) -> None:
    from playwright.sync_api import expect

    page = browser.page
    page.goto(browser.url("/traces/upload/"))
    box = page.locator("textarea").first
    box.fill(
        '{"trace_version": "1.0", "prompt": "Keyboard upload", '
        '"steps": [{"i": 0, "type": "note", "content": "one"}], "final_answer": "1"}'
    )
    box.press("Control+Enter")
    expect(page.locator("#paste-result")).to_contain_text("Stored.")
