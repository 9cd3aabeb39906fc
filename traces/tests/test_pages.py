"""The trace pages: dashboard, list (HTMX table and rows), detail, score, compare, delete."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from traces.models import Trace, TraceScore
from traces.tests.factories import make_trace

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    text: str = response.content.decode()
    return text


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, pattern
    return match.group(1)


def row_ids(text: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'name="id" value="(\d+)"', text)]


def test_dashboard_shows_the_counts_and_recent_traces(page):
    traces = [make_trace(prompt=f"dashboard prompt {n}") for n in range(3)]

    text = html(page.get("/"))

    assert re.search(r'<span class="value">3</span><span class="label">traces</span>', text)
    for trace in traces:
        assert f'href="/traces/{trace.pk}/"' in text


def test_dashboard_with_no_traces_invites_an_upload(page):
    text = html(page.get("/"))

    assert '<span class="value">0</span>' in text
    assert "Upload the first one" in text


def test_list_page_shows_traces_newest_first(page):
    now = timezone.now()
    old = make_trace(created_at=now - dt.timedelta(hours=1))
    new = make_trace(created_at=now)

    text = html(page.get("/traces/"))

    assert "<html" in text
    assert row_ids(text) == [new.pk, old.pk]


def test_list_page_reads_no_payload_columns_and_a_bounded_number_of_queries(page):
    for n in range(60):
        make_trace(n=n)
    counts = []
    for limit in (10, 50):
        with CaptureQueriesContext(connection) as ctx:
            assert len(row_ids(html(page.get("/traces/", {"limit": limit})))) == limit
        counts.append(len(ctx.captured_queries))
        for q in ctx.captured_queries:
            assert '"traces_trace"."steps"' not in q["sql"]
            assert '"traces_trace"."meta"' not in q["sql"]

    assert counts[0] == counts[1]


def test_list_page_filters(page):
    keep = make_trace(meta={"source": "keep", "tags": ["x"]}, steps=4)
    make_trace(meta={"source": "drop", "tags": ["x"]}, steps=4)
    make_trace(meta={"source": "keep", "tags": ["y"]}, steps=4)
    make_trace(meta={"source": "keep", "tags": ["x"]}, steps=1)

    text = html(page.get("/traces/", {"source": "keep", "tag": "x", "min_steps": "2"}))

    assert row_ids(text) == [keep.pk]
    assert 'name="source" value="keep"' in text


def test_list_page_search(page):
    hit = make_trace(prompt="Convert 68°F to Celsius")
    make_trace(prompt="Add two numbers")

    assert row_ids(html(page.get("/traces/", {"q": "celsius"}))) == [hit.pk]


def test_list_page_names_a_bad_filter_value(page):
    make_trace()

    text = html(page.get("/traces/", {"min_steps": "many"}))

    assert '<ul class="errorlist"><li>min_steps:' in text


@pytest.mark.parametrize("value", ["yesterday", "9999-12-31T23:59:59-05:00"])
def test_list_page_names_a_bad_date(page, value):
    text = html(page.get("/traces/", {"created_after": value}))

    assert '<ul class="errorlist"><li>created_after:' in text


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "OTk5OS0xMi0zMVQyMzo1OTo1OS0wNTowMHwx"],  # the second: year 9999 at -05:00
)
def test_list_page_names_a_bad_cursor(page, cursor):
    text = html(page.get("/traces/", {"cursor": cursor}))

    assert "cursor: Invalid cursor." in text


def test_an_htmx_list_request_returns_only_the_table(page):
    trace = make_trace()

    text = html(page.get("/traces/", {"source": "factory"}, headers=HTMX))

    assert text.lstrip().startswith('<div id="trace-table">')
    assert "<html" not in text
    assert 'class="filters"' not in text
    assert row_ids(text) == [trace.pk]


def test_load_more_returns_the_next_rows_only(page):
    now = timezone.now()
    traces = [make_trace(created_at=now - dt.timedelta(seconds=n)) for n in range(5)]

    first = html(page.get("/traces/", {"limit": 2}, headers=HTMX))
    cursor = found(r'hx-get="\?limit=2&amp;cursor=([\w-]+)"', first)
    more = html(page.get("/traces/", {"limit": 2, "cursor": cursor}, headers=HTMX))
    cursor2 = found(r'cursor=([\w-]+)"', more)
    last = html(page.get("/traces/", {"limit": 2, "cursor": cursor2}, headers=HTMX))

    assert row_ids(first) == [traces[0].pk, traces[1].pk]
    assert more.lstrip().startswith("<tr>")
    assert 'id="trace-table"' not in more
    assert "<table" not in more
    assert row_ids(more) == [traces[2].pk, traces[3].pk]
    assert row_ids(last) == [traces[4].pk]
    assert "Load more" not in last


def test_load_more_without_htmx_renders_the_whole_page(page):
    now = timezone.now()
    traces = [make_trace(created_at=now - dt.timedelta(seconds=n)) for n in range(3)]
    first = html(page.get("/traces/", {"limit": 2}))
    href = found(r'<a class="button" href="\?([^"]+)"', first).replace("&amp;", "&")

    text = html(page.get("/traces/?" + href))

    assert "<html" in text
    assert row_ids(text) == [traces[2].pk]


def test_detail_page_shows_numbered_steps_answer_and_meta(page):
    trace = make_trace(
        prompt="Convert 68°F to Celsius",
        steps=[
            {"i": 2, "type": "compute", "content": "(68 - 32) × 5/9 = 20"},
            {"i": 0, "type": "parse", "content": "Parse the task"},
            {"i": 1, "type": "formula", "content": "°C = (°F - 32) × 5/9"},
        ],
        final_answer="20°C",
        meta={"source": "example", "tags": ["temperature"], "difficulty": "easy"},
    )

    text = html(page.get(f"/traces/{trace.pk}/"))

    items = re.findall(r'<li value="(\d+)"><span class="step-type">(\w+)</span>', text)
    assert items == [("0", "parse"), ("1", "formula"), ("2", "compute")]
    assert '<ol class="steps" start="0">' in text
    assert re.search(r'id="final-answer">20°C</div>', text)
    assert "Convert 68°F to Celsius" in text
    assert "&quot;difficulty&quot;: &quot;easy&quot;" in text
    assert "temperature" in text
    assert "Not scored yet." in text


@pytest.mark.parametrize("pk", ["424242", "99999999999999999999"])
def test_detail_page_of_an_unknown_trace_is_a_404(page, pk):
    assert page.get(f"/traces/{pk}/").status_code == 404


def test_scoring_from_the_detail_page(page):
    trace = make_trace(steps=[{"i": 0, "type": "t", "content": "x" * 50}])

    response = page.post(f"/traces/{trace.pk}/score/")

    assert response.status_code == 302
    assert response["Location"] == f"/traces/{trace.pk}/"
    assert TraceScore.objects.get(trace=trace).score == pytest.approx(10.0)
    assert '<td class="score">10.0</td>' in html(page.get(f"/traces/{trace.pk}/"))


def test_scoring_with_htmx_returns_the_scores_card(page):
    trace = make_trace(steps=[{"i": 0, "type": "t", "content": "x" * 50}])

    text = html(page.post(f"/traces/{trace.pk}/score/", headers=HTMX))

    assert text.lstrip().startswith('<section class="card" id="scores">')
    assert '<td class="score">10.0</td>' in text
    assert "<html" not in text


def test_scoring_needs_a_post(page):
    trace = make_trace()

    assert page.get(f"/traces/{trace.pk}/score/").status_code == 405
    assert not TraceScore.objects.exists()


def test_html_in_a_trace_is_escaped_on_every_page(page, user):
    trace = make_trace(
        created_by=user,
        prompt=XSS,
        final_answer=XSS,
        steps=[{"i": 0, "type": "<b>type</b>", "content": XSS}],
        meta={"source": XSS, "tags": [XSS], "note": XSS},
    )
    other = make_trace()

    pages = {
        "list": page.get("/traces/"),
        "detail": page.get(f"/traces/{trace.pk}/"),
        "compare": page.get("/traces/compare/", {"base": trace.pk, "other": other.pk}),
        "delete": page.get(f"/traces/{trace.pk}/delete/"),
        "dashboard": page.get("/"),
    }

    for name, response in pages.items():
        text = html(response)
        assert "<script>alert(1)" not in text, name
        assert "&lt;script&gt;alert(1)" in text, name
    assert XSS_ESCAPED in html(pages["detail"])
    assert "<b>type</b>" not in html(pages["detail"])


def test_compare_page_shows_both_traces_with_scores(page):
    base = make_trace(prompt="first prompt", steps=[{"i": 0, "type": "t", "content": "x" * 50}])
    long_steps = [{"i": n, "type": "t", "content": "x" * 500} for n in range(10)]
    other = make_trace(prompt="second prompt", steps=long_steps)

    text = html(page.get("/traces/compare/", {"base": base.pk, "other": other.pk}))

    assert f"Trace #{base.pk}</a>" in text
    assert f"Trace #{other.pk}</a>" in text
    assert text.index("first prompt") < text.index("second prompt")
    pills = re.findall(r'<span class="score-pill">baseline <strong>([\d.]+)</strong>', text)
    assert pills == ["10.0", "100.0"]
    assert TraceScore.objects.count() == 2


def test_compare_page_accepts_two_ticked_ids_from_the_list(page):
    a, b = make_trace(), make_trace()

    text = html(page.get(f"/traces/compare/?id={a.pk}&id={b.pk}"))

    assert f"Trace #{a.pk}</a>" in text
    assert f"Trace #{b.pk}</a>" in text


def test_compare_page_names_an_unknown_trace(page):
    trace = make_trace()

    text = html(page.get("/traces/compare/", {"base": trace.pk, "other": 424242}))

    assert "No trace with id 424242." in text
    assert "score-pill" not in text


def test_compare_page_with_a_huge_id_names_it(page):
    trace = make_trace()

    text = html(page.get("/traces/compare/", {"base": "99999999999999999999", "other": trace.pk}))

    assert "No trace with id 99999999999999999999." in text


@pytest.mark.parametrize(
    "params", [{"base": "x", "other": "1"}, {"base": "1", "other": ""}, {"base": "0", "other": "1"}]
)
def test_compare_page_names_bad_input(page, params):
    text = html(page.get("/traces/compare/", params))

    assert '<ul class="errorlist">' in text
    assert "score-pill" not in text


def test_compare_page_without_ids_explains_itself(page):
    text = html(page.get("/traces/compare/"))

    assert "Pick two trace ids" in text
    assert "errorlist" not in text


def test_delete_asks_for_confirmation_then_deletes(page, user):
    trace = make_trace(prompt="doomed trace", created_by=user)

    confirm = html(page.get(f"/traces/{trace.pk}/delete/"))
    assert f"Delete trace #{trace.pk}?" in confirm
    assert "doomed trace" in confirm
    assert Trace.objects.filter(pk=trace.pk).exists()

    response = page.post(f"/traces/{trace.pk}/delete/", follow=True)

    assert response.redirect_chain[-1][0] == "/traces/"
    assert f"Trace {trace.pk} was deleted." in html(response)
    assert not Trace.objects.filter(pk=trace.pk).exists()
    assert page.get(f"/traces/{trace.pk}/").status_code == 404


def test_deleting_an_unknown_trace_is_a_404(page):
    assert page.post("/traces/424242/delete/").status_code == 404


def test_compare_from_a_trace_opens_with_it_filled_in_and_no_error(page):
    trace = make_trace()

    text = html(page.get("/traces/compare/", {"base": trace.pk}))

    assert re.search(rf'name="base"[^>]* list="trace-choices"[^>]* value="{trace.pk}" required', text)
    assert "errorlist" not in text
    assert "This field is required" not in text
