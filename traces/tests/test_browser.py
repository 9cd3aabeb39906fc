"""Real-browser tests: Debian's Chromium driven by Playwright against a live server.

They check what only a browser can: htmx swaps and history, file uploads, the
CSP (violations are console errors), that nothing is fetched from other hosts
and that user text is never run as script.

Chromium is the system one (`apt-get install chromium`); Playwright never
downloads a browser. Without it the module is skipped, unless
REQUIRE_BROWSER=1 (CI), where a missing browser is an error. With
BROWSER_SHOTS=DIR every test saves full-page screenshots of what it visits.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client

from traces.models import PreferencePair, Trace, TraceLabel, TraceReview
from traces.tests.factories import TraceFactory, make_trace

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
REQUIRED = os.environ.get("REQUIRE_BROWSER", "") == "1"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
PASSWORD = "correct horse battery"  # the root conftest's `user`

if not CHROMIUM.exists():
    if REQUIRED:
        pytest.fail(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)", pytrace=False)
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests "
        "(REQUIRE_BROWSER=1 makes this an error)",
        allow_module_level=True,
    )
try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is in requirements-dev.txt
    if REQUIRED:
        raise
    pytest.skip("the playwright package is not installed", allow_module_level=True)

pytestmark = pytest.mark.browser


@contextmanager
def launched_chromium(*, own_session: bool = False) -> Iterator[Browser]:
    """Debian's Chromium under Playwright, for one fixture's lifetime.

    Playwright's sync API keeps an asyncio loop running in this thread, which
    makes Django refuse ORM calls from it as "async" code; the tests (and any
    test after them in the session) are plain synchronous code, so that check
    is switched off while the browser lives. `own_session`: a module that needs
    its own browser skips if another Playwright session still runs here.
    """
    if own_session:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            pytest.skip("another Playwright session is already running in this thread (run this module first)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# `chromium`, the session's one Chromium, is the root conftest's fixture (modules under other apps share it).


@dataclass
class Watch:
    """What a page did besides rendering: requests, console errors, dialogs."""

    page: Page
    base_url: str
    shots: Path | None
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    expected_errors: list[re.Pattern[str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def shot(self, name: str) -> None:
        if self.shots is not None:
            self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def foreign_requests(self) -> list[str]:
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in {"data", "blob", "about"}:
                continue
            if parts.scheme not in {"http", "https", "ws", "wss"} or parts.hostname not in LOCAL_HOSTS:
                foreign.append(url)
        return foreign

    def assert_clean(self) -> None:
        errors = [e for e in self.console_errors if not any(p.search(e) for p in self.expected_errors)]
        assert self.foreign_requests() == [], "requests left this host"
        assert errors == [], "console errors (CSP violations show up here)"
        assert self.page_errors == [], "uncaught JavaScript errors"
        assert self.dialogs == [], "a dialog was opened"


def _watch(page: Page, base_url: str) -> Watch:
    shots_dir = os.environ.get("BROWSER_SHOTS")
    shots = Path(shots_dir) if shots_dir else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    watch = Watch(page, base_url, shots)
    page.on("request", lambda request: watch.requests.append(request.url))
    page.on(
        "console",
        lambda msg: watch.console_errors.append(f"{msg.text} ({msg.location.get('url')})")
        if msg.type == "error"
        else None,
    )
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return watch


@pytest.fixture
def context(chromium: Browser, live_server: Any) -> Iterator[BrowserContext]:
    ctx = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def anon(context: BrowserContext, live_server: Any) -> Iterator[Watch]:
    """A fresh, logged-out page; after the test it must not have broken any rule."""
    watch = _watch(context.new_page(), live_server.url)
    yield watch
    watch.assert_clean()


def _log_in_cookie(context: BrowserContext, base_url: str, user: Any) -> None:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base_url}])


@contextmanager
def watched_page(chromium: Browser, base_url: str, user: Any = None, **context_options: Any) -> Iterator[Watch]:
    """A page in a context of its own (logged in as `user` if given), checked with `assert_clean` after use."""
    context = chromium.new_context(base_url=base_url, viewport={"width": 1280, "height": 860}, **context_options)
    context.set_default_timeout(15_000)
    try:
        if user is not None:
            _log_in_cookie(context, base_url, user)
        watch = _watch(context.new_page(), base_url)
        yield watch
        watch.assert_clean()
    finally:
        context.close()


@pytest.fixture
def browser(anon: Watch, context: BrowserContext, user: Any) -> Watch:
    """A page logged in as `user` (through a session cookie, not the form)."""
    _log_in_cookie(context, anon.base_url, user)
    return anon


def _rows(page: Page) -> Any:
    return page.locator("#trace-table tbody tr:not(.more)")


def _trace_id(link_text: str) -> int:
    match = re.search(r"#(\d+)", link_text)
    assert match, link_text
    return int(match.group(1))


# a) ---------------------------------------------------------------------------


def test_login_upload_browse_and_compare(anon: Watch, user: Any) -> None:
    page = anon.page
    page.goto(anon.url("/traces/"))
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/traces/$"))
    anon.shot("login")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".card .error")).to_contain_text("didn't match")
    anon.shot("login-error")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/traces/$"))
    expect(page.get_by_role("heading", name="Traces", exact=True)).to_be_visible()
    expect(page.locator("#trace-table")).to_contain_text("No traces")

    # Upload the °F → °C example through the paste form.
    page.get_by_role("navigation").get_by_role("link", name="Upload", exact=True).click()
    expect(page.get_by_role("heading", name="Upload traces")).to_be_visible()
    marker = page.evaluate("() => (window.__stayed = Math.random())")
    page.get_by_role("link", name="Load example").click()
    expect(page.locator("#id_payload")).to_have_value(re.compile("Convert 68°F to Celsius"))
    page.get_by_role("button", name="Upload", exact=True).click()
    first_link = page.locator("#paste-result").get_by_role("link", name=re.compile(r"^trace #\d+$"))
    expect(first_link).to_be_visible()
    expect(page.locator("#paste-result")).to_contain_text("Created")
    assert page.evaluate("() => window.__stayed") == marker, "htmx should not reload the page"
    first = _trace_id(first_link.inner_text())
    anon.shot("upload-paste")

    # The same text again is stored once.
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#paste-result")).to_contain_text(f"Already stored as trace #{first}")

    # A second, different trace through the same form.
    second_doc = {
        "trace_version": "1.0",
        "prompt": "Convert 100°C to Fahrenheit",
        "steps": [
            {"i": 0, "type": "formula", "content": "°F = °C × 9/5 + 32"},
            {"i": 1, "type": "compute", "content": "100 × 9/5 + 32 = 212"},
        ],
        "final_answer": "212°F",
        "meta": {"source": "browser-test", "tags": ["temperature", "second"]},
    }
    page.locator("#id_payload").fill(json.dumps(second_doc, ensure_ascii=False, indent=2))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#paste-result")).to_contain_text("Created")
    second = _trace_id(page.locator("#paste-result a").inner_text())
    assert second != first

    # Both are in the list, newest first.
    page.get_by_role("navigation").get_by_role("link", name="Traces", exact=True).click()
    expect(_rows(page)).to_have_count(2)
    expect(_rows(page).nth(0)).to_contain_text("Convert 100°C to Fahrenheit")
    expect(_rows(page).nth(1)).to_contain_text("Convert 68°F to Celsius")

    # The detail page: prompt, numbered steps, final answer.
    page.get_by_role("link", name=f"#{first}", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/traces/{first}/$"))
    expect(page.get_by_role("heading", name=f"Trace #{first}")).to_be_visible()
    expect(page.locator("#prompt")).to_have_text("Convert 68°F to Celsius")
    steps = page.locator("ol.steps > li")
    expect(steps).to_have_count(3)
    assert [steps.nth(i).get_attribute("value") for i in range(3)] == ["0", "1", "2"]
    expect(steps.nth(1)).to_contain_text("°C = (°F - 32) × 5/9")
    expect(page.locator("#final-answer")).to_have_text("20°C")
    page.get_by_role("button", name="Score (baseline)").click()
    expect(page.locator("#scores table")).to_contain_text("baseline")
    anon.shot("detail")

    # Compare the two through the list's checkboxes.
    page.get_by_role("navigation").get_by_role("link", name="Traces", exact=True).click()
    page.get_by_label(f"select trace {first}").check()
    page.get_by_label(f"select trace {second}").check()
    page.get_by_role("button", name="Compare 2 selected").click()
    expect(page).to_have_url(re.compile(r"/traces/compare/\?"))
    columns = page.locator(".compare > section")
    expect(columns).to_have_count(2)
    headings = sorted(_trace_id(columns.nth(i).locator("h2").inner_text()) for i in range(2))
    assert headings == sorted([first, second])
    for i in range(2):
        expect(columns.nth(i).locator(".score-pill")).to_contain_text(re.compile(r"baseline\s+\d+(\.\d)?"))
    expect(page.locator(".compare")).to_contain_text("20°C")
    expect(page.locator(".compare")).to_contain_text("212°F")
    anon.shot("compare")


def test_compare_needs_exactly_two(browser: Watch) -> None:
    traces = TraceFactory.create_batch(3)
    page = browser.page
    page.goto(browser.url("/traces/"))
    expect(page.locator(".compare-button")).to_have_text("Compare 0 selected")
    for n, t in enumerate(traces, 1):
        page.get_by_label(f"select trace {t.pk}").check()
        expect(page.locator(".compare-button")).to_have_text(f"Compare {n} selected")
    page.get_by_label(f"select trace {traces[0].pk}").uncheck()
    expect(page.locator(".compare-button")).to_have_text("Compare 2 selected")
    page.get_by_label(f"select trace {traces[0].pk}").check()
    page.get_by_role("button", name="Compare 3 selected").click()
    expect(page.locator(".compare")).to_have_count(0)
    expect(page.locator(".errorlist")).to_contain_text("exactly two")


def test_paste_errors_are_shown(browser: Watch) -> None:
    # The server answers 400; Chromium logs that, and htmx must still show the errors.
    browser.expected_errors.append(re.compile(r"status of 400"))
    page = browser.page
    page.goto(browser.url("/traces/upload/"))
    page.locator("#id_payload").fill('{"prompt": "no steps", "final_answer": "x"')
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#paste-result .error-box")).to_contain_text("Malformed JSON")
    page.locator("#id_payload").fill(json.dumps({"prompt": "", "steps": [], "final_answer": "x"}))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#paste-result .error-box")).to_contain_text("prompt")
    browser.shot("upload-paste-errors")


def test_failed_requests_are_explained(browser: Watch, context: BrowserContext) -> None:
    # Chromium and htmx both log the refused request.
    browser.expected_errors.append(re.compile(r"(status of|Status Error Code) 403"))
    page = browser.page
    page.goto(browser.url("/traces/upload/"))
    page.get_by_role("link", name="Load example").click()
    expect(page.locator("#id_payload")).to_have_value(re.compile("68°F"))

    # Without its CSRF cookie the POST is refused: the page says so instead of doing nothing.
    context.clear_cookies(name=settings.CSRF_COOKIE_NAME)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("The request failed (403")
    browser.shot("request-error")
    page.get_by_role("button", name="Dismiss").click()
    expect(page.get_by_role("alert")).to_have_count(0)

    # A session that ended sends the whole window to the login form, which then comes back here.
    context.clear_cookies()
    page.get_by_role("link", name="Load example").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/traces/upload/$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


# b) ---------------------------------------------------------------------------


def test_file_upload_reports_bad_lines(browser: Watch, tmp_path: Path) -> None:
    def doc(n: int) -> dict[str, Any]:
        return {
            "trace_version": "1.0",
            "prompt": f"What is {n} + {n}?",
            "steps": [{"i": 0, "type": "compute", "content": f"{n} + {n} = {2 * n}"}],
            "final_answer": str(2 * n),
        }

    good = [doc(2), doc(3)]
    no_prompt = doc(4)
    del no_prompt["prompt"]
    upload = tmp_path / "traces.jsonl"
    upload.write_text("\n".join(json.dumps(d) for d in [good[0], no_prompt, good[1]]) + "\n")

    page = browser.page
    page.goto(browser.url("/traces/upload/"))
    page.get_by_label("File").set_input_files(upload)
    page.get_by_label("Source (optional)").fill("browser-upload")
    page.get_by_role("button", name="Import file").click()
    result = page.locator("#file-result")
    expect(result.locator(".created-count")).to_have_text("2")
    expect(result.locator(".bad-count")).to_have_text("1")
    bad_rows = result.locator(".bad-lines tbody tr")
    expect(bad_rows).to_have_count(1)
    expect(bad_rows.nth(0).locator("td").nth(0)).to_have_text("line 2")
    expect(bad_rows.nth(0).locator("td").nth(1)).to_contain_text("prompt: This field is required.")
    # Both forms' results side by side, for the screenshot.
    page.get_by_role("link", name="Load example").click()
    expect(page.locator("#id_payload")).to_have_value(re.compile("68°F"))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#paste-result")).to_contain_text("Created trace #")
    expect(result.locator(".created-count")).to_have_text("2")
    browser.shot("upload-results")
    assert Trace.objects.filter(source="browser-upload").count() == 2

    # The same file again: everything is a duplicate.
    page.get_by_role("button", name="Import file").click()
    expect(result.locator(".created-count")).to_have_text("0")
    expect(result.locator(".duplicate-count")).to_have_text("2")


# c) ---------------------------------------------------------------------------


def test_list_filters_in_place_and_loads_more(browser: Watch) -> None:
    TraceFactory.create_batch(60)
    TraceFactory.create(prompt="Convert 300 kelvin to rankine", meta={"source": "physics", "tags": ["units"]})
    page = browser.page
    page.goto(browser.url("/traces/"))
    expect(_rows(page)).to_have_count(50)
    expect(page.get_by_role("link", name="Load more")).to_be_visible()
    marker = page.evaluate("() => (window.__stayed = Math.random())")

    # Typing in the search box filters without a reload and pushes the URL.
    page.get_by_label("Search").fill("kelvin")
    expect(_rows(page)).to_have_count(1)
    expect(_rows(page).nth(0)).to_contain_text("Convert 300 kelvin to rankine")
    expect(page).to_have_url(re.compile(r"/traces/\?.*q=kelvin"))
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    browser.shot("list-filtered")

    # Other fields filter on change.
    page.get_by_label("Search").fill("")
    page.get_by_label("Source").fill("physics")
    page.get_by_label("Source").press("Enter")
    expect(_rows(page)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"source=physics"))
    page.get_by_label("Source").fill("nothing-has-this")
    page.get_by_label("Source").press("Enter")
    expect(page.locator("#trace-table")).to_contain_text("No traces match")
    browser.shot("list-empty")
    assert page.evaluate("() => window.__stayed") == marker, "filtering should not reload the page"

    # A pushed URL is a real page: loading it gives the whole filtered page.
    page.reload()
    expect(page.get_by_role("navigation")).to_be_visible()
    expect(page.get_by_label("Source")).to_have_value("nothing-has-this")

    # Leaving a filtered list and coming back shows the page, not a bare fragment.
    page.get_by_label("Source").fill("physics")
    page.get_by_label("Source").press("Enter")
    expect(page).to_have_url(re.compile(r"source=physics"))
    page.get_by_role("link", name=re.compile(r"^#\d+$")).click()
    expect(page.locator("#prompt")).to_have_text("Convert 300 kelvin to rankine")
    page.go_back()
    expect(page).to_have_url(re.compile(r"source=physics"))
    expect(page.get_by_role("navigation")).to_be_visible()
    expect(_rows(page)).to_have_count(1)

    # "Load more" appends the next page under the first.
    page.goto(browser.url("/traces/?min_steps=3"))
    expect(_rows(page)).to_have_count(50)
    marker = page.evaluate("() => (window.__stayed = Math.random())")
    page.get_by_role("link", name="Load more").click()
    expect(_rows(page)).to_have_count(61)
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    assert page.evaluate("() => window.__stayed") == marker
    ids = [_trace_id(t) for t in _rows(page).locator("td:nth-child(2)").all_inner_texts()]
    assert len(set(ids)) == 61, "no row twice"
    assert parse_qs(urlsplit(page.url).query) == {"min_steps": ["3"]}
    browser.shot("list")


# d) ---------------------------------------------------------------------------


def test_user_text_is_never_run(browser: Watch) -> None:
    script = "<script>alert(1)</script>"
    trace = TraceFactory.create(
        prompt=script,
        final_answer='<img src=x onerror="alert(2)">',
        steps=[{"i": 0, "type": "<b>bold</b>", "content": "<svg onload=alert(3)>"}],
        meta={"source": "<i>src</i>", "tags": ["<script>alert(4)</script>"]},
    )
    page = browser.page
    compare = f"/traces/compare/?base={trace.pk}&other={trace.pk}"
    for path in ("/", "/traces/", f"/traces/{trace.pk}/", compare):
        page.goto(browser.url(path))
        expect(page.get_by_text(script).first).to_be_visible()
    page.goto(browser.url(f"/traces/{trace.pk}/"))
    expect(page.locator("#prompt")).to_have_text(script)
    expect(page.locator("#final-answer")).to_have_text('<img src=x onerror="alert(2)">')
    assert page.locator("main script, main img, main svg, main b, main i").count() == 0
    page.goto(browser.url(f"/traces/?q={script}"))
    expect(page.get_by_label("Search")).to_have_value(script)
    page.wait_for_timeout(300)  # give any injected handler a chance to fire
    assert browser.dialogs == []


# e) ---------------------------------------------------------------------------


def test_every_page_is_local_and_error_free(anon: Watch, context: BrowserContext, admin_user: Any) -> None:
    """Each page as a staff user: no foreign request and no console error (so no CSP violation)."""
    TraceFactory.create_batch(4)
    long = TraceFactory.create(
        prompt="A very long prompt " + "with-a-rather-long-unbroken-token-" * 12 + " " + "words " * 80,
        meta={"source": "long-source-name", "tags": ["many", "tags", "here"]},
    )
    _log_in_cookie(context, anon.base_url, admin_user)
    page = anon.page

    page.goto(anon.url("/"))
    expect(page.locator("#health .card.health")).to_have_count(7)
    expect(page.locator("#health")).to_contain_text("Database")
    anon.shot("dashboard")

    page.goto(anon.url(f"/traces/{long.pk}/"))
    expect(page.locator("#prompt")).to_contain_text("A very long prompt")
    anon.shot("detail-long")

    page.goto(anon.url("/traces/compare/"))
    expect(page.get_by_role("heading", name="Compare traces")).to_be_visible()
    anon.shot("compare-empty")

    page.goto(anon.url("/account/token"))
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("main")).to_contain_text("shown only this once")
    anon.shot("token")

    page.goto(anon.url("/api/docs/"))
    expect(page.locator(".swagger-ui .title")).to_contain_text("tunix-rt API")
    expect(page.locator(".opblock").first).to_be_visible()
    anon.shot("api-docs")

    page.goto(anon.url("/admin/traces/trace/"))
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    anon.shot("admin-traces")
    page.goto(anon.url(f"/admin/traces/trace/{long.pk}/change/"))
    expect(page.locator("#content h2, #content h1").first).to_be_visible()
    anon.shot("admin-trace")

    # On a phone-sized screen long text wraps instead of widening the page.
    page.set_viewport_size({"width": 390, "height": 800})
    narrow = {f"/traces/{long.pk}/": "detail-narrow", "/traces/": "list-narrow", "/": "dashboard-narrow"}
    for path, name in narrow.items():
        page.goto(anon.url(path))
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        anon.shot(name)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the screen"

    anon.assert_clean()
    assert any(u.endswith("/static/django_htmx/htmx-2.min.js") or "htmx" in u for u in anon.requests)


# Datasets ----------------------------------------------------------------------


def test_build_a_dataset_from_a_filter_and_download_its_tunix_sft_export(browser: Watch) -> None:
    for n in range(6):
        make_trace(prompt=f"Keep question {n}?", meta={"source": "keep"})
    for n in range(4):
        make_trace(prompt=f"Other question {n}?", meta={"source": "other"})

    page = browser.page
    page.goto(browser.url("/datasets/new/"))
    form = page.locator("#build-form")
    form.locator("[name=name]").fill("browser-set")
    form.locator("[name=source]").fill("keep")
    form.locator("[name=limit]").fill("100")
    form.locator("[name=validation_fraction]").fill("0")
    # The live preview counts the matches as the filters change, without a reload.
    form.locator("[name=validation_fraction]").blur()  # its change event fires a last preview
    page.wait_for_load_state("networkidle")
    expect(page.locator("#preview .match-count")).to_have_text("6")
    page.wait_for_load_state("networkidle")
    browser.shot("dataset-build")
    page.locator("#build-button").click()

    expect(page).to_have_url(re.compile(r"/datasets/browser-set@v1/$"))
    expect(page.locator("#stat-count")).to_have_text("6")
    browser.shot("dataset-detail")
    with page.expect_download() as info:
        page.locator("a[data-format=tunix_sft][data-split=all]").click()
    path = info.value.path()
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6
    records = [json.loads(line) for line in lines]
    assert all(r["text"].startswith("<start_of_turn>user\nKeep question ") for r in records)
    assert all(r["text"].endswith("<end_of_turn>") for r in records)
    assert "\n<start_of_turn>model\nReasoning:\n1. " in records[0]["text"]


# d) What a new user hit ------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
def test_form_errors_stay_inline_with_the_form_kept(browser: Watch, settings: Any, tmp_path: Path, debug: bool) -> None:
    # `make run` writes DEBUG=true: django-htmx's debug script must not swap a form's 400 for the whole page.
    settings.DEBUG = debug
    browser.expected_errors.append(re.compile(r"status of 400"))
    page = browser.page
    page.goto(browser.url("/traces/upload/"))
    page.locator("#id_payload").fill('{"prompt": "hi", ')
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#paste-result .error-box")).to_contain_text("Malformed JSON")
    expect(page.get_by_role("heading", name="Upload traces")).to_be_visible()
    expect(page.locator("#id_payload")).to_have_value('{"prompt": "hi", ')

    refused = tmp_path / "notes.txt"
    refused.write_text("not traces\n")
    page.get_by_label("File").set_input_files(refused)
    page.get_by_label("Source (optional)").fill("kept")
    page.get_by_role("button", name="Import file").click()
    expect(page.locator("#file-result .error-box")).to_contain_text("notes.txt")
    expect(page.locator("#file-result .error-box")).to_contain_text("Choose a .jsonl or .json file.")
    expect(page.get_by_label("Source (optional)")).to_have_value("kept")
    assert page.get_by_label("File").evaluate("input => input.files[0].name") == "notes.txt"
    # The paste form's answer is still there: only the file form's result was replaced.
    expect(page.locator("#paste-result .error-box")).to_contain_text("Malformed JSON")


def test_dataset_preview_counts_before_the_name_is_given(browser: Watch) -> None:
    for n in range(3):
        make_trace(prompt=f"Named later {n}?", meta={"source": "later"})
    make_trace(prompt="Elsewhere?", meta={"source": "elsewhere"})
    page = browser.page
    page.goto(browser.url("/datasets/new/"))
    form = page.locator("#build-form")
    expect(form.locator("[name=name]")).to_have_value("")
    form.locator("[name=source]").fill("later")
    expect(page.locator("#preview .match-count")).to_have_text("3")


def test_browsable_api_is_readable_and_within_its_policy(browser: Watch) -> None:
    make_trace(prompt="Shown in the browsable API?")
    page = browser.page
    page.goto(browser.url("/api/traces"))
    body = page.locator(".response-info pre")
    expect(body).to_contain_text('"results": [')
    assert "\n    " in body.inner_text(), "indented by 4, as the browsable API asks"
    breadcrumbs = page.locator(".breadcrumb")
    expect(breadcrumbs).not_to_contain_text("Not Found")
    expect(breadcrumbs.get_by_role("link", name="API root")).to_be_visible()
    # Bootstrap's script ran (CSP allowed it): the format menu opens.
    page.locator(".format-selection .dropdown-toggle").click()
    expect(page.locator(".format-selection .format-option", has_text="json")).to_be_visible()
    browser.shot("browsable-api")
    breadcrumbs.get_by_role("link", name="API root").click()
    expect(page.locator(".response-info pre")).to_contain_text("/api/traces")


# Human review ------------------------------------------------------------------


def test_rate_and_label_a_trace_on_its_page(browser: Watch) -> None:
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


def test_bulk_label_two_traces_on_the_list(browser: Watch) -> None:
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


# Keyboard --------------------------------------------------------------------


def test_slash_focuses_search_and_j_k_enter_open_a_row(browser: Watch) -> None:
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
    page = browser.page
    page.goto(browser.url("/traces/upload/"))
    box = page.locator("textarea").first
    box.fill(
        '{"trace_version": "1.0", "prompt": "Keyboard upload", '
        '"steps": [{"i": 0, "type": "note", "content": "one"}], "final_answer": "1"}'
    )
    box.press("Control+Enter")
    expect(page.locator("#paste-result")).to_contain_text("Stored.")


def test_explore_count_facets_sort_previous_next_and_build_from_the_view(browser: Watch) -> None:
    for n in range(4):
        make_trace(prompt=f"Explore gsm {n}", steps=n + 1, meta={"source": "gsm8k", "tags": ["math"]})
    make_trace(prompt="Explore units", steps=2, meta={"source": "physics", "tags": ["units", "math"]})
    page = browser.page
    page.goto(browser.url("/traces/"))
    summary = page.locator("#trace-summary")
    expect(summary).to_contain_text("5 traces match")
    expect(summary.get_by_role("link", name="gsm8k 4")).to_be_visible()
    browser.shot("explore-summary")

    # A tag facet narrows the list and the count follows.
    summary.get_by_role("link", name="units 1").click()
    expect(_rows(page)).to_have_count(1)
    expect(page.locator("#trace-summary")).to_contain_text("1 trace matches")
    # A source chip in a row is a filter too.
    page.goto(browser.url("/traces/"))
    _rows(page).nth(1).get_by_role("link", name="gsm8k").click()
    expect(page.locator("#trace-summary")).to_contain_text("4 traces match")

    # Sorting by steps, in place.
    page.get_by_label("Sort").select_option("most_steps")
    expect(page).to_have_url(re.compile(r"sort=most_steps"))
    expect(_rows(page).nth(0)).to_contain_text("Explore gsm 3")
    expect(_rows(page).nth(3)).to_contain_text("Explore gsm 0")

    # Open the first row; "n" and "p" walk the same filtered, sorted list.
    _rows(page).nth(0).get_by_role("link", name=re.compile(r"^#\d+$")).click()
    expect(page.locator("#prompt")).to_have_text("Explore gsm 3")
    expect(page.locator("a[rel=prev]")).to_have_count(0)
    page.keyboard.press("n")
    expect(page.locator("#prompt")).to_have_text("Explore gsm 2")
    page.keyboard.press("n")
    expect(page.locator("#prompt")).to_have_text("Explore gsm 1")
    page.keyboard.press("p")
    expect(page.locator("#prompt")).to_have_text("Explore gsm 2")
    page.get_by_role("link", name="← Traces").click()
    expect(page).to_have_url(re.compile(r"source=gsm8k.*sort=most_steps"))

    # "Build a dataset from this view" carries the filters to the build page and its preview.
    page.locator("#trace-summary").get_by_role("link", name="Build a dataset from this view").click()
    expect(page.get_by_label("Source", exact=True)).to_have_value("gsm8k")
    expect(page.locator("#preview")).to_contain_text("4 traces match")
    browser.shot("explore-build")


# Preference pairs: compare page → pairs list → preference dataset → dpo export.


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
