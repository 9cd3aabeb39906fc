"""Real-browser tests of human review: rating a trace on its page, labelling ticked traces on the list.

Set up as in test_browser.py (Debian's Chromium under Playwright; skipped without it unless REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import re

import pytest

from traces.models import TraceLabel, TraceReview
from traces.tests.factories import TraceFactory

# Importing test_browser skips this module as it skips itself when Chromium or Playwright is missing;
# `expect` is Playwright's, imported there once found.
from traces.tests.test_browser import Watch, anon, browser, chromium, context, expect  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_rate_and_label_a_trace_on_its_page(browser: Watch) -> None:  # noqa: F811
    trace = TraceFactory.create(prompt="What is 17 × 3?")
    page = browser.page
    page.goto(browser.url(f"/traces/{trace.pk}/"))
    expect(page.locator("#current-rating")).to_have_text("unrated")
    marker = page.evaluate("() => (window.__stayed = Math.random())")

    page.get_by_label("Good").check()
    page.get_by_label("Your comment").fill("checked by hand")
    page.get_by_label("Add labels").fill("arithmetic, needs-review")
    page.get_by_role("button", name="Save review").click()

    expect(page.locator("#current-rating")).to_have_text("good")
    review = page.locator("#review")
    expect(review.locator("table.reviews")).to_contain_text("checked by hand")
    expect(review.get_by_role("link", name="needs-review")).to_be_visible()
    assert page.evaluate("() => window.__stayed") == marker, "htmx swaps the review in place"
    browser.shot("review-detail")

    page.get_by_role("button", name="remove label arithmetic").click()
    expect(review.get_by_role("link", name="arithmetic", exact=True)).to_have_count(0)
    assert TraceReview.objects.get().rating == "good"
    assert list(TraceLabel.objects.values_list("label", flat=True)) == ["needs-review"]


def test_bulk_label_two_traces_on_the_list(browser: Watch) -> None:  # noqa: F811
    first, _second, third = TraceFactory.create_batch(3)
    page = browser.page
    page.goto(browser.url("/traces/"))
    page.get_by_label(f"select trace {first.pk}").check()
    page.get_by_label(f"select trace {third.pk}").check()
    page.locator("#bulk-labels").fill("batch-7")
    page.get_by_role("button", name="Label", exact=True).click()

    # The list reloads with the message and the chips; the filter then finds exactly those two.
    expect(page.locator(".messages")).to_contain_text("Labelled 2 traces batch-7")
    rows = page.locator("#trace-table tbody tr:not(.more)")
    expect(rows.filter(has=page.get_by_role("link", name="batch-7"))).to_have_count(2)
    expect(page.locator("#facets")).to_contain_text("batch-7 2")
    browser.shot("review-bulk")
    # A label chip links to the list filtered by that label.
    rows.nth(0).get_by_role("link", name="batch-7").click()
    expect(page).to_have_url(re.compile(r"/traces/\?label=batch-7$"))
    expect(rows).to_have_count(2)
    expect(page.get_by_label("Label", exact=True)).to_have_value("batch-7")
    assert sorted(TraceLabel.objects.values_list("trace_id", flat=True)) == sorted([first.pk, third.pk])

    # "New dataset from selection" opens the build page with the ticked ids.
    page.get_by_label(f"select trace {first.pk}").check()
    page.get_by_role("button", name="New dataset from selection").click()
    expect(page).to_have_url(re.compile(r"/datasets/new/\?id="))
    expect(page.get_by_label("Trace ids")).to_have_value(str(first.pk))
    expect(page.locator(".match-count")).to_have_text("1")
