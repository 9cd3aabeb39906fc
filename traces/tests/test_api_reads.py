"""The trace API's one-statement reads: the detail answer as the serializer documents it, list fields."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import clear_script_prefix, set_script_prefix
from django.utils import timezone
from rest_framework import serializers

from traces.api.reads import LIST_DEFAULT, LIST_FIELDS, datetime_text
from traces.api.serializers import TraceDetailSerializer
from traces.models import Trace
from traces.tests.factories import make_trace, trace_document

pytestmark = pytest.mark.django_db

URL = "/api/traces"


def serialized(pk: int) -> dict[str, Any]:
    """What DRF's generic path answered: the serializer over the ORM's trace, prefetched."""
    trace = Trace.objects.with_review().get(pk=pk)
    return dict(TraceDetailSerializer(trace).data)


def test_the_detail_answer_is_what_the_detail_serializer_documents(api, other_api, maintainer_api):
    doc = trace_document(3, meta={"source": "s", "tags": ["b", "a"], "nested": {"x": [1, 2.5, None]}})
    pk = api.post(URL, doc, format="json").json()["id"]
    api.post(f"{URL}/{pk}/score", {"criteria": "baseline"}, format="json")
    api.post(f"{URL}/{pk}/review", {"rating": "good", "comment": "fine", "labels": ["zeta", "alpha"]}, format="json")
    other_api.post(f"{URL}/{pk}/review", {"rating": "bad", "labels": ["mid"]}, format="json")
    maintainer_api.post(f"{URL}/{pk}/review", {"comment": "unrated note"}, format="json")

    body = api.get(f"{URL}/{pk}").json()

    assert body == serialized(pk)
    assert list(body) == list(TraceDetailSerializer().fields)  # the documented order, too
    assert body["rating"] == "bad"  # the newest rating given
    assert body["labels"] == ["alpha", "mid", "zeta"]
    assert [r["rating"] for r in body["reviews"]] == ["", "bad", "good"]  # newest review first
    assert [s["criteria"] for s in body["scores"]] == ["baseline"]


def test_an_unreviewed_trace_reads_in_one_query_with_empty_attachments(api):
    trace = make_trace()
    api.get(f"{URL}/{trace.pk}")  # authenticate and warm up

    with CaptureQueriesContext(connection) as ctx:
        body = api.get(f"{URL}/{trace.pk}").json()

    assert body == serialized(trace.pk)
    assert (body["rating"], body["labels"], body["reviews"], body["label_details"], body["scores"]) == (
        None, [], [], [], []
    )
    if connection.vendor == "postgresql":  # SQLite reads the attachments with the ORM
        trace_reads = [q for q in ctx.captured_queries if "traces_trace" in q["sql"]]
        assert len(trace_reads) <= 1  # psycopg's own cursor is not captured: at most the auth lookup


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 11, 30, 6, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 30, 6, 0, 0, 120000, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 30, 6, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ],
)
def test_datetimes_are_written_as_drf_writes_them(value):
    drf = serializers.DateTimeField().to_representation(value)

    assert datetime_text(value) == drf
    assert datetime_text(value.isoformat()) == drf  # as PostgreSQL's JSON hands them over
    with timezone.override(dt.timezone(dt.timedelta(hours=-3))):
        assert datetime_text(value) == serializers.DateTimeField().to_representation(value)


def test_list_items_carry_what_the_list_shows_and_link_to_the_rest(api):
    trace = make_trace()

    item = api.get(URL).json()["results"][0]

    assert tuple(item) == LIST_DEFAULT
    assert "steps" not in item and "content_hash" not in item
    assert item["url"].endswith(f"/api/traces/{trace.pk}")
    detail = api.get(item["url"]).json()
    assert {k: detail[k] for k in LIST_DEFAULT if k != "url"} == {k: item[k] for k in LIST_DEFAULT if k != "url"}


def test_fields_picks_what_each_item_carries(api):
    trace = make_trace()
    api.post(f"{URL}/{trace.pk}/review", {"rating": "good", "labels": ["b", "a"]}, format="json")

    item = api.get(URL, {"fields": "content_hash, steps,id,labels,rating,meta"}).json()["results"][0]

    assert list(item) == ["content_hash", "steps", "id", "labels", "rating", "meta"]
    detail = api.get(f"{URL}/{trace.pk}").json()
    assert {k: detail[k] for k in item} == item


def test_every_list_field_can_be_asked_for(api):
    make_trace()

    item = api.get(URL, {"fields": ",".join(LIST_FIELDS)}).json()["results"][0]

    assert tuple(item) == LIST_FIELDS


@pytest.mark.parametrize("fields", ["nope", "id,scores", "id,,label_details"])
def test_an_unknown_field_is_a_400_naming_fields(api, fields):
    make_trace()

    response = api.get(URL, {"fields": fields})

    assert response.status_code == 400
    assert "fields" in response.json()


def test_fields_work_with_filters_sorts_and_cursors(api):
    for n in range(5):
        make_trace(n=n, tags=["keep"] if n % 2 else ["drop"])

    first = api.get(URL, {"fields": "id,step_count", "tag": "keep", "limit": 1, "sort": "oldest"}).json()
    second = api.get(URL, {"fields": "id,step_count", "tag": "keep", "limit": 1, "sort": "oldest",
                           "cursor": first["next_cursor"]}).json()

    assert list(first["results"][0]) == ["id", "step_count"]
    assert first["results"][0]["id"] < second["results"][0]["id"]


def test_the_documented_list_item_is_the_default_one():
    from traces.api.serializers import TraceListSerializer

    assert tuple(TraceListSerializer.Meta.fields) == LIST_DEFAULT


def test_list_items_link_below_the_script_prefix_the_app_is_mounted_at(api):
    trace = make_trace()

    set_script_prefix("/tunix/")  # what Django's WSGI handler does for SCRIPT_NAME (the test client does not)
    try:
        item = api.get(URL, SCRIPT_NAME="/tunix").json()["results"][0]
    finally:
        clear_script_prefix()
    plain = api.get(URL).json()["results"][0]

    assert item["url"] == f"http://testserver/tunix/api/traces/{trace.pk}"
    assert plain["url"] == f"http://testserver/api/traces/{trace.pk}"
