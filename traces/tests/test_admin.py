"""The Django admin for traces: browsable and searchable without loading payloads in lists."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from traces.models import Trace
from traces.tests.factories import make_trace

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/traces/trace/"


@pytest.fixture
def admin_page(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


def listed(response) -> list[int]:
    assert response.status_code == 200, response.status_code
    text = response.content.decode()
    return [int(pk) for pk in re.findall(r'href="/admin/traces/trace/(\d+)/change/', text)]


def trace_selects(queries) -> list[str]:
    return [q["sql"] for q in queries if re.search(r'FROM "traces_trace"', q["sql"])]


def test_the_changelist_lists_traces_newest_first(admin_page):
    traces = [make_trace() for _ in range(3)]

    assert listed(admin_page.get(CHANGELIST)) == [t.pk for t in reversed(traces)]


def test_the_changelist_filters_by_source(admin_page):
    keep = make_trace(meta={"source": "keep"})
    make_trace(meta={"source": "drop"})

    assert listed(admin_page.get(CHANGELIST, {"source": "keep"})) == [keep.pk]
    assert listed(admin_page.get(CHANGELIST, {"source__exact": "keep"})) == [keep.pk]


def test_the_changelist_searches_by_id_hash_prefix_and_source(admin_page):
    a = make_trace(meta={"source": "alpha"})
    b = make_trace(meta={"source": "beta"})

    assert listed(admin_page.get(CHANGELIST, {"q": str(a.pk)})) == [a.pk]
    assert listed(admin_page.get(CHANGELIST, {"q": b.content_hash[:12]})) == [b.pk]
    assert listed(admin_page.get(CHANGELIST, {"q": "alpha"})) == [a.pk]
    assert listed(admin_page.get(CHANGELIST, {"q": "no such thing"})) == []


def test_a_short_number_is_an_id_not_a_hash_prefix(admin_page):
    traces = [make_trace(prompt=f"numbered {n}") for n in range(20)]
    # With 20 traces some hash almost surely starts with each searched digit: only the id may match.
    for trace in traces[:9]:
        assert listed(admin_page.get(CHANGELIST, {"q": str(trace.pk)})) == [trace.pk]


def test_the_changelist_does_not_load_payloads(admin_page):
    make_trace(prompt="p" * 300)
    make_trace(meta={"source": "s"})

    for params in ({}, {"source": "s"}, {"q": "s"}):
        with CaptureQueriesContext(connection) as ctx:
            assert admin_page.get(CHANGELIST, params).status_code == 200
        selects = trace_selects(ctx.captured_queries)
        assert selects, params
        for sql in selects:
            assert '"traces_trace"."steps"' not in sql, sql
            assert '"traces_trace"."meta"' not in sql, sql
            assert '"traces_trace"."final_answer"' not in sql, sql


def test_the_changelist_runs_a_bounded_number_of_queries(admin_page, django_assert_max_num_queries):
    for _ in range(60):
        make_trace()

    with django_assert_max_num_queries(12):
        assert len(listed(admin_page.get(CHANGELIST))) == 50


def test_the_change_view_shows_the_whole_trace_read_only(admin_page):
    trace = make_trace(prompt="admin visible prompt", meta={"source": "s", "marker": "meta-marker"})
    trace.score()

    response = admin_page.get(f"/admin/traces/trace/{trace.pk}/change/")

    assert response.status_code == 200
    text = response.content.decode()
    assert "admin visible prompt" in text
    assert "meta-marker" in text
    assert "baseline" in text
    assert 'name="_save"' not in text


def test_traces_cannot_be_added_or_changed_in_the_admin(admin_page):
    trace = make_trace()

    assert admin_page.get("/admin/traces/trace/add/").status_code == 403
    response = admin_page.post(f"/admin/traces/trace/{trace.pk}/change/", {"prompt": "changed"})
    assert response.status_code == 403
    trace.refresh_from_db()
    assert trace.prompt != "changed"


def test_the_admin_is_closed_to_normal_users(page):
    response = page.get(CHANGELIST)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_score_changelist_opens(admin_page):
    make_trace().score()

    assert admin_page.get("/admin/traces/tracescore/").status_code == 200
    assert Trace.objects.count() == 1
