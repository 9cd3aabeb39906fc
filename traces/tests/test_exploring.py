"""Exploring traces: sort orders, how many match, source and tag facets, previous / next, build from the view."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from traces import exploring
from traces.models import Trace
from traces.tests.factories import make_trace
from tunixrt.tests.role_support import html

pytestmark = pytest.mark.django_db

T0 = (timezone.now() - dt.timedelta(days=1)).replace(second=0, microsecond=0)


def traces_with(specs: list[tuple[int, str, list[str]]]) -> list[Trace]:
    """One trace per (steps, source, tags), created a minute apart in this order (the last is newest)."""
    out = []
    for i, (steps, source, tags) in enumerate(specs):
        meta = {"source": source, "tags": tags} if source else {"tags": tags}
        out.append(make_trace(steps=steps, meta=meta, created_at=T0 + dt.timedelta(minutes=i)))
    return out


def walk(api: Any, **params: Any) -> list[int]:
    """Every id of `/api/traces` with these parameters, following next_cursor two at a time."""
    ids: list[int] = []
    query = {**params, "limit": 2}
    while True:
        response = api.get("/api/traces", query)
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [row["id"] for row in body["results"]]
        if not body["next_cursor"]:
            return ids
        query["cursor"] = body["next_cursor"]


@pytest.fixture
def spread() -> list[Trace]:
    # steps: 3, 1, 3, 5, 1 — ties on steps break by id in the same direction.
    return traces_with(
        [
            (3, "gsm8k", ["math"]),
            (1, "gsm8k", ["math", "easy"]),
            (3, "redteam", []),
            (5, "gsm8k", ["math"]),
            (1, "", ["easy"]),
        ]
    )


# Sorting ------------------------------------------------------------------------------------------


def test_api_lists_in_each_order_across_pages(api, spread):
    a, b, c, d, e = (t.pk for t in spread)

    assert walk(api) == [e, d, c, b, a]
    assert walk(api, sort="newest") == [e, d, c, b, a]
    assert walk(api, sort="oldest") == [a, b, c, d, e]
    assert walk(api, sort="most_steps") == [d, c, a, e, b]
    assert walk(api, sort="fewest_steps") == [b, e, a, c, d]
    assert walk(api, sort="most_steps", source="gsm8k") == [d, a, b]


def test_an_unknown_order_or_a_cursor_of_another_order_is_a_400_naming_the_parameter(api, spread):
    response = api.get("/api/traces", {"sort": "loudest"})
    assert response.status_code == 400
    assert "sort" in response.json()
    newest_cursor = api.get("/api/traces", {"limit": 2}).json()["next_cursor"]

    response = api.get("/api/traces", {"sort": "most_steps", "cursor": newest_cursor})

    assert response.status_code == 400
    assert "cursor" in response.json()


def test_the_list_page_sorts_and_keeps_the_order_in_load_more(page, spread):
    a, b, c, _d, e = (t.pk for t in spread)

    body = html(page.get("/traces/", {"sort": "fewest_steps", "limit": 2}))

    ids = [int(x) for x in re.findall(r'href="/traces/(\d+)/\?', body)]
    assert ids[:2] == [b, e]
    assert '<option value="fewest_steps" selected>' in body
    more = re.search(r'hx-get="\?([^"]*cursor=[^"]+)"', body)
    assert more and "sort=fewest_steps" in more.group(1)
    second = html(page.get("/traces/?" + more.group(1).replace("&amp;", "&"), HTTP_HX_REQUEST="true"))
    assert [int(x) for x in re.findall(r'href="/traces/(\d+)/\?', second)][:2] == [a, c]


def test_the_list_page_reports_a_bad_order_inline(page, spread):
    response = page.get("/traces/", {"sort": "loudest"})

    assert response.status_code == 200
    assert "sort: Choose one of: newest, oldest, most_steps, fewest_steps." in html(response)


# How many match, and the facets -------------------------------------------------------------------


def test_summary_counts_the_matching_traces_and_their_sources_and_tags(api, spread):
    body = api.get("/api/traces/summary").json()

    assert body["count"] == 5 and body["exact"] is True and body["scope"] == 5
    assert body["sources"] == [{"source": "gsm8k", "count": 3}, {"source": "redteam", "count": 1}]
    assert body["tags"] == [{"tag": "math", "count": 3}, {"tag": "easy", "count": 2}]

    filtered = api.get("/api/traces/summary", {"tag": "easy"}).json()
    assert filtered["count"] == 2
    assert filtered["sources"] == [{"source": "gsm8k", "count": 1}]
    assert filtered["tags"] == [{"tag": "easy", "count": 2}, {"tag": "math", "count": 1}]


def test_summary_refuses_a_bad_filter_naming_it(api):
    response = api.get("/api/traces/summary", {"min_steps": "many"})

    assert response.status_code == 400
    assert "min_steps" in response.json()


def test_facets_count_only_the_newest_matching_traces_beyond_their_scope(api, spread, monkeypatch):
    monkeypatch.setattr(exploring, "FACET_SCOPE", 2)
    matching = exploring.count_matching(Trace.objects.all())

    summary = exploring.facets(Trace.objects.all(), matching)

    # The newest two: (5 steps, gsm8k, math) and (1 step, no source, easy).
    assert summary["scope"] == 2
    assert summary["sources"] == [{"source": "gsm8k", "count": 1}]
    assert summary["tags"] == [{"tag": "easy", "count": 1}, {"tag": "math", "count": 1}]


def test_above_the_exact_limit_postgresql_reports_its_estimate_and_says_so(api, page, spread, monkeypatch):
    monkeypatch.setattr(exploring, "EXACT_COUNT_LIMIT", 3)
    monkeypatch.setattr(exploring, "SANITY_COUNT", 2)

    body = api.get("/api/traces/summary").json()
    fragment = html(page.get("/traces/summary/"))

    if connection.vendor == "postgresql":
        assert body["exact"] is False and body["count"] >= 4
        assert "estimate" in fragment and "About" in fragment
    else:  # SQLite counts exactly whatever the size (the embedded default holds small sets)
        assert body == {**body, "count": 5, "exact": True}
        assert "<strong>5</strong> traces match" in fragment


def test_the_summary_fragment_links_facets_that_add_to_the_current_filters(page, spread):
    body = html(page.get("/traces/summary/", {"source": "gsm8k", "sort": "oldest"}))

    assert "<strong>3</strong> traces match" in body
    assert 'href="?source=gsm8k&amp;tag=easy"' in body
    assert 'href="/datasets/new/?source=gsm8k"' in body  # the filters, not the order


def test_the_list_page_loads_the_summary_for_its_filters(page, spread):
    body = html(page.get("/traces/", {"tag": "math", "sort": "most_steps"}))

    assert 'hx-get="/traces/summary/?tag=math"' in body
    assert 'href="/datasets/new/?tag=math"' in body
    # Tags and sources in the rows are links to that filter.
    assert 'class="tag" href="?tag=math"' in body
    assert 'href="?source=gsm8k"' in body


def test_build_from_this_view_opens_the_build_page_with_the_filters_and_their_preview(page, spread):
    body = html(page.get("/datasets/new/", {"source": "gsm8k", "tag": "easy"}))

    assert 'name="source" value="gsm8k"' in body
    assert 'name="tag" value="easy"' in body
    assert '<strong class="match-count">1</strong> trace matches.' in body


def test_a_viewer_sees_the_count_but_no_build_button(viewer_page, spread):
    body = html(viewer_page.get("/traces/summary/"))

    assert "<strong>5</strong> traces match" in body
    assert "Build a dataset" not in body


# Previous / next --------------------------------------------------------------------------------


def positions(page: Any, trace: Trace, query: str = "") -> tuple[int | None, int | None, str]:
    body = html(page.get(f"/traces/{trace.pk}/{query}"))
    prev = re.search(r'<a rel="prev" href="/traces/(\d+)/([^"]*)"', body)
    nxt = re.search(r'<a rel="next" href="/traces/(\d+)/([^"]*)"', body)
    back = re.search(r'<a href="(/traces/[^"]*)">← Traces</a>', body)
    return (
        int(prev.group(1)) if prev else None,
        int(nxt.group(1)) if nxt else None,
        back.group(1) if back else "",
    )


def test_detail_page_moves_through_the_list_it_was_opened_from(page, spread):
    a, b, c, d, e = spread

    assert positions(page, c) == (d.pk, b.pk, "/traces/")  # newest first: d is above c
    assert positions(page, e)[:2] == (None, d.pk)
    assert positions(page, a)[:2] == (b.pk, None)
    # In the list of gsm8k traces with most steps first: d, a, b.
    assert positions(page, a, "?source=gsm8k&sort=most_steps") == (
        d.pk,
        b.pk,
        "/traces/?source=gsm8k&amp;sort=most_steps",
    )
    body = html(page.get(f"/traces/{a.pk}/?source=gsm8k&sort=most_steps"))
    assert f'href="/traces/{b.pk}/?source=gsm8k&amp;sort=most_steps"' in body


def test_detail_page_ignores_a_broken_list_query(page, spread):
    _a, b, c, d, _e = spread

    response = page.get(f"/traces/{c.pk}/", {"min_steps": "lots", "sort": "loudest"})

    assert response.status_code == 200
    assert positions(page, c, "?min_steps=lots&sort=loudest")[:2] == (d.pk, b.pk)


def test_the_build_page_asks_dates_with_a_picker_and_reads_its_value(page, spread):
    body = html(page.get("/datasets/new/"))
    assert 'type="datetime-local" name="created_after"' in body
    picked = timezone.localtime(T0 + dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")

    preview = html(page.get("/datasets/preview/", {"created_after": picked}))

    # The two traces created from the picked minute on (at +3 and +4 minutes).
    assert '<strong class="match-count">2</strong> traces match.' in preview


def test_a_wild_overestimate_is_caught_and_the_few_matches_counted(api, spread, monkeypatch):
    monkeypatch.setattr(exploring, "EXACT_COUNT_LIMIT", 3)
    monkeypatch.setattr(exploring, "_planner_rows", lambda qs: 5_000_000)

    body = api.get("/api/traces/summary").json()

    if connection.vendor == "postgresql":
        assert (body["count"], body["exact"]) == (5, True)  # 5 rows are fewer than the 1,000 looked at
        monkeypatch.setattr(exploring, "SANITY_COUNT", 2)
        assert api.get("/api/traces/summary").json()["count"] == 5_000_000
    else:
        assert (body["count"], body["exact"]) == (5, True)


def test_rows_carry_only_the_filters_that_are_set(page, spread):
    # What the filter form submits: every field, most of them empty.
    body = html(page.get("/traces/?q=&source=gsm8k&tag=&rating=&min_steps=&sort=oldest"))

    a = spread[0]
    assert f'href="/traces/{a.pk}/?source=gsm8k&amp;sort=oldest"' in body
