"""GET /api/traces: newest first, keyset cursor pages, filters, narrow rows, bounded queries."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from traces.models import Trace
from traces.tests.factories import make_trace, trace_document
from traces.validation import validate_trace

pytestmark = pytest.mark.django_db

URL = "/api/traces"


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def walk(api: Any, params: dict[str, Any], between_pages: Any = None) -> list[int]:
    """Every id reachable by following next_cursor; `between_pages` runs after each page."""
    seen: list[int] = []
    cursor = None
    for _ in range(1000):
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        response = api.get(URL, query)
        seen += ids(response)
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return seen
        if between_pages:
            between_pages()
    raise AssertionError("pagination never ended")


def bulk_traces(count: int, created_at: dt.datetime, start: int = 0) -> list[Trace]:
    """Traces that share one created_at, as one batch import or one batch request stores them."""
    rows = [
        Trace.from_clean(validate_trace(trace_document(start + n)), created_at=created_at)
        for n in range(count)
    ]
    Trace.objects.bulk_create(rows)
    return list(Trace.objects.filter(created_at=created_at))


def test_traces_are_listed_newest_first(api):
    now = timezone.now()
    old = make_trace(created_at=now - dt.timedelta(days=2))
    new = make_trace(created_at=now)
    mid = make_trace(created_at=now - dt.timedelta(days=1))

    assert ids(api.get(URL)) == [new.pk, mid.pk, old.pk]


def test_an_empty_list_has_no_next_cursor(api):
    body = api.get(URL).json()

    assert body == {"next": None, "next_cursor": None, "results": []}


def test_the_default_page_is_twenty_rows(api):
    bulk_traces(25, timezone.now())

    response = api.get(URL)

    assert len(ids(response)) == 20
    assert response.json()["next_cursor"]


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_accepted(api, limit):
    bulk_traces(101, timezone.now())

    assert len(ids(api.get(URL, {"limit": limit}))) == int(limit)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "x", "1.5"])
def test_a_bad_limit_is_a_400_naming_limit(api, limit):
    response = api.get(URL, {"limit": limit})

    assert response.status_code == 400
    assert "limit" in response.json()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "MjAyNC0wMS0wMQ",  # "2024-01-01": no id part
        "MjAyNC0wMS0wMVQwMDowMDowMHwx",  # naive timestamp
        "bm90LWEtZGF0ZXwx",  # "not-a-date|1"
        "MjAyNC0wMS0wMVQwMDowMDowMCswMDowMHx4",  # id "x"
        "__8",  # not UTF-8
        "OTk5OS0xMi0zMVQyMzo1OTo1OS0wNTowMHwx",  # "9999-12-31T23:59:59-05:00|1": past year 9999 in UTC
        "MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHwx",  # "0001-01-01T00:00:00+05:00|1": before year 1 in UTC
    ],
)
def test_an_invalid_cursor_is_a_400_naming_cursor(api, cursor):
    make_trace()

    response = api.get(URL, {"cursor": cursor})

    assert response.status_code == 400
    assert "cursor" in response.json()


def test_a_cursor_with_an_out_of_range_id_is_not_a_500(api):
    trace = make_trace()
    raw = f"{trace.created_at.isoformat()}|{10**20}".encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    response = api.get(URL, {"cursor": cursor})

    assert response.status_code in (200, 400)


def test_walking_every_page_returns_each_trace_exactly_once(api):
    now = timezone.now()
    expected = [make_trace(created_at=now - dt.timedelta(seconds=n)).pk for n in range(23)]

    assert walk(api, {"limit": 5}) == expected


def test_the_next_link_fetches_the_next_page(api):
    bulk_traces(3, timezone.now())
    first = api.get(URL, {"limit": 2}).json()

    second = api.get(first["next"])

    assert len(first["results"]) == 2
    oldest = Trace.objects.order_by("created_at", "id").first()
    assert oldest is not None
    assert ids(second) == [oldest.pk]
    assert second.json()["next"] is None


def test_traces_created_between_pages_neither_appear_nor_shift_later_pages(api):
    now = timezone.now()
    expected = [make_trace(created_at=now - dt.timedelta(seconds=n)).pk for n in range(17)]
    tied = bulk_traces(6, now - dt.timedelta(minutes=5), start=100)
    expected += sorted((t.pk for t in tied), reverse=True)
    counter = iter(range(1000, 2000))

    def capture_more() -> None:
        response = api.post(URL, trace_document(next(counter)), format="json")
        assert response.status_code == 201

    seen = walk(api, {"limit": 4}, between_pages=capture_more)

    assert seen == expected
    assert Trace.objects.count() > len(expected)


def test_ties_on_created_at_are_paged_by_id(api):
    stamp = timezone.now()
    tied = bulk_traces(11, stamp)
    before = make_trace(created_at=stamp + dt.timedelta(seconds=1))
    after = make_trace(created_at=stamp - dt.timedelta(seconds=1))

    for limit in (1, 2, 3, 4, 12):
        seen = walk(api, {"limit": limit})
        assert seen == [before.pk, *sorted((t.pk for t in tied), reverse=True), after.pk], limit


def test_a_cursor_page_respects_the_filters(api):
    stamp = timezone.now()
    keep = [
        make_trace(created_at=stamp - dt.timedelta(seconds=n), meta={"source": "keep"}).pk for n in range(7)
    ]
    for n in range(7):
        make_trace(created_at=stamp - dt.timedelta(seconds=n, milliseconds=500), meta={"source": "drop"})

    assert walk(api, {"limit": 3, "source": "keep"}) == keep


def test_list_rows_carry_no_payload(api):
    make_trace()

    row = api.get(URL).json()["results"][0]

    assert "steps" not in row
    assert "meta" not in row
    assert {"id", "created_at", "prompt", "final_answer", "source", "tags", "step_count"} <= set(row)


def test_filter_by_source(api):
    a = make_trace(meta={"source": "gsm8k"})
    make_trace(meta={"source": "other"})
    make_trace(meta={})

    assert ids(api.get(URL, {"source": "gsm8k"})) == [a.pk]


def test_filter_by_tag(api):
    a = make_trace(meta={"tags": ["math", "easy"]})
    b = make_trace(meta={"tags": ["math"]})
    make_trace(meta={"tags": ["mathematics"]})
    make_trace(meta={"tags": "math"})

    assert ids(api.get(URL, {"tag": "math"})) == [b.pk, a.pk]
    assert ids(api.get(URL, {"tag": "easy"})) == [a.pk]
    assert ids(api.get(URL, {"tag": "hard"})) == []


def test_filter_by_created_range(api):
    base = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
    day1 = make_trace(created_at=base)
    day2 = make_trace(created_at=base + dt.timedelta(days=1))
    day3 = make_trace(created_at=base + dt.timedelta(days=2))

    after = ids(api.get(URL, {"created_after": (base + dt.timedelta(days=1)).isoformat()}))
    before = ids(api.get(URL, {"created_before": (base + dt.timedelta(days=1)).isoformat()}))
    between = ids(
        api.get(URL, {"created_after": "2025-03-02T00:00:00Z", "created_before": "2025-03-03T00:00:00Z"})
    )

    assert after == [day3.pk, day2.pk]
    assert before == [day1.pk]
    assert between == [day2.pk]


def test_the_created_range_accepts_dates_and_naive_times_as_utc(api):
    base = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
    early = make_trace(created_at=base)
    late = make_trace(created_at=base + dt.timedelta(hours=1))

    assert ids(api.get(URL, {"created_after": "2025-03-01T12:30"})) == [late.pk]
    assert ids(api.get(URL, {"created_before": "2025-03-01T12:30:00"})) == [early.pk]
    assert ids(api.get(URL, {"created_after": "2025-03-01"})) == [late.pk, early.pk]
    assert ids(api.get(URL, {"created_after": "9999-12-31T23:59:59"})) == []


def test_filter_by_step_count_range(api):
    one = make_trace(steps=1)
    three = make_trace(steps=3)
    five = make_trace(steps=5)

    assert ids(api.get(URL, {"min_steps": 3})) == [five.pk, three.pk]
    assert ids(api.get(URL, {"max_steps": 3})) == [three.pk, one.pk]
    assert ids(api.get(URL, {"min_steps": 2, "max_steps": 4})) == [three.pk]


def test_filters_combine(api):
    hit = make_trace(steps=4, meta={"source": "s", "tags": ["t"]})
    make_trace(steps=1, meta={"source": "s", "tags": ["t"]})
    make_trace(steps=4, meta={"source": "other", "tags": ["t"]})
    make_trace(steps=4, meta={"source": "s", "tags": ["u"]})

    assert ids(api.get(URL, {"source": "s", "tag": "t", "min_steps": 2})) == [hit.pk]


def test_free_text_search_finds_words_in_prompt_steps_and_answer(api):
    in_prompt = make_trace(prompt="Convert 68°F to Celsius")
    in_steps = make_trace(
        steps=[{"i": 0, "type": "note", "content": "Remember the thermometer reading"}]
    )
    in_answer = make_trace(final_answer="The thermometer reads 20")
    make_trace(prompt="Something else entirely")

    assert ids(api.get(URL, {"q": "Celsius"})) == [in_prompt.pk]
    assert ids(api.get(URL, {"q": "thermometer"})) == [in_answer.pk, in_steps.pk]
    assert ids(api.get(URL, {"q": "nothing-matches-this"})) == []


def test_free_text_search_looks_at_step_text_not_its_json_keys(api):
    german = make_trace(
        prompt="Wie groß?",
        steps=[{"i": 0, "type": "lookup", "content": "Die Größe des Tisches"}],
        final_answer="Zwei Meter",
    )
    make_trace(prompt="Plain prompt", steps=[{"i": 0, "type": "compute", "content": "1 + 1"}])

    assert ids(api.get(URL, {"q": "content"})) == []
    assert ids(api.get(URL, {"q": "type"})) == []
    assert ids(api.get(URL, {"q": "größe"})) == [german.pk]  # stored JSON escapes non-ASCII
    assert ids(api.get(URL, {"q": "lookup"})) == [german.pk]  # a step's type is text too


def test_free_text_search_requires_every_word(api):
    both = make_trace(prompt="apples and oranges")
    make_trace(prompt="apples only")

    assert ids(api.get(URL, {"q": "apples oranges"})) == [both.pk]


def test_free_text_search_is_stemmed_on_postgresql_and_substring_on_sqlite(api):
    convert = make_trace(prompt="Convert 68°F to Celsius")
    make_trace(prompt="Add two numbers")

    if connection.vendor == "postgresql":
        assert ids(api.get(URL, {"q": "converting"})) == [convert.pk]
        assert ids(api.get(URL, {"q": "CONVERTS"})) == [convert.pk]
    else:
        assert ids(api.get(URL, {"q": "onver"})) == [convert.pk]
        assert ids(api.get(URL, {"q": "CONVERT"})) == [convert.pk]


def test_blank_search_returns_everything(api):
    make_trace()
    make_trace()

    assert len(ids(api.get(URL, {"q": "   "}))) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_steps", "x"),
        ("min_steps", "-1"),
        ("max_steps", "1001"),
        ("max_steps", "2.5"),
        ("created_after", "yesterday"),
        ("created_before", "2025-13-01T00:00:00Z"),
        ("created_after", "9999-12-31T23:59:59-05:00"),
        ("created_before", "0001-01-01T00:00:00+05:00"),
        ("q", "x" * 501),
        ("source", "s" * 129),
        ("tag", "t" * 65),
    ],
)
def test_a_bad_filter_value_is_a_400_naming_the_field(api, field, value):
    response = api.get(URL, {field: value})

    assert response.status_code == 400
    assert field in response.json()


def test_the_number_of_queries_does_not_grow_with_the_page_size(api):
    bulk_traces(100, timezone.now())
    counts = {}
    for limit in (20, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert len(ids(api.get(URL, {"limit": limit}))) == limit
        counts[limit] = len(ctx.captured_queries)
        assert not any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)

    assert counts[20] == counts[100] <= 2


def test_the_list_query_does_not_read_payload_columns(api, monkeypatch):
    from traces.api import reads

    bulk_traces(3, timezone.now())
    seen: list[str] = []
    fetch = reads.fetch_rows

    def spy(qs: Any, **kwargs: Any) -> list[Any]:
        seen.append(str(qs.query))
        return fetch(qs, **kwargs)

    monkeypatch.setattr(reads, "fetch_rows", spy)

    assert len(ids(api.get(URL))) == 3

    assert seen
    for sql in seen:
        assert '"traces_trace"."steps"' not in sql
        assert '"traces_trace"."meta"' not in sql


def test_a_filtered_page_runs_a_bounded_number_of_queries(api, django_assert_max_num_queries):
    bulk_traces(60, timezone.now())
    params = {"limit": 30, "tag": "arithmetic", "min_steps": 1}
    first = api.get(URL, params).json()

    with django_assert_max_num_queries(2):
        response = api.get(URL, {**params, "cursor": first["next_cursor"]})

    assert len(ids(response)) == 30


def test_a_first_page_served_again_reads_the_rows_stored_since(api):
    """The SQL of an unfiltered first page is kept after its first request; the rows never are."""
    bulk_traces(3, timezone.now())
    first = api.get(URL, {"limit": 2}).json()
    again = api.get(URL, {"limit": 2}).json()
    assert again == first

    newest = make_trace(prompt="A newer question", created_at=timezone.now() + dt.timedelta(seconds=1))
    third = api.get(URL, {"limit": 2}).json()
    assert third["results"][0]["id"] == newest.pk
    assert third["next_cursor"] is not None
    # Other shapes of page (another limit, order or field list, a filter) are their own.
    assert len(api.get(URL, {"limit": 1}).json()["results"]) == 1
    only_ids = api.get(URL, {"limit": 2, "fields": "id"}).json()["results"]
    assert only_ids == [{"id": newest.pk}, {"id": first["results"][0]["id"]}]
    assert [item["id"] for item in api.get(URL, {"limit": 2, "q": "newer"}).json()["results"]] == [newest.pk]
    assert api.get(URL, {"limit": "0"}).status_code == 400
