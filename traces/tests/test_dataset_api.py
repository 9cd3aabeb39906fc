"""The dataset API: build, list (cursor, ?q=, ?name=), detail by key, no updates, delete."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from traces.models import Dataset, DatasetMember
from traces.tests.datasets_support import build, make_trace, member_ids

pytestmark = pytest.mark.django_db

URL = "/api/datasets"


@pytest.fixture
def three_traces() -> list[Any]:
    return [make_trace(steps=n + 1) for n in range(3)]


def walk(api: Any, params: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    cursor = None
    for _ in range(100):
        response = api.get(URL, {**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        keys += [row["key"] for row in response.json()["results"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return keys
    raise AssertionError("pagination never ended")


def test_build_answers_201_with_the_new_dataset(api, user, three_traces):
    response = api.post(
        URL,
        {"name": "arith", "description": "sums", "strategy": "random", "seed": 3, "validation_fraction": 0.34},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["key"] == "arith@v1"
    assert body["name"] == "arith"
    assert body["version"] == 1
    assert body["description"] == "sums"
    assert body["status"] == "ready"
    assert body["created_by"] == user.username
    assert body["stats"]["count"] == 3
    assert body["stats"]["validation"] == 1
    assert body["spec"]["strategy"] == "random"
    assert body["spec"]["seed"] == 3
    assert body["built_at"] is not None
    again = api.post(URL, {"name": "arith"}, format="json")
    assert again.status_code == 201
    assert again.json()["key"] == "arith@v2"


def test_the_api_requires_authentication(three_traces):
    anonymous = APIClient()
    assert anonymous.get(URL).status_code in (401, 403)
    assert anonymous.post(URL, {"name": "x"}, format="json").status_code in (401, 403)
    assert not Dataset.objects.exists()


def test_detail_by_key(api, three_traces):
    dataset = build("arith", strategy="all", limit=2)
    response = api.get(f"{URL}/arith@v1")
    assert response.status_code == 200
    body = response.json()
    assert body["key"] == "arith@v1"
    assert body["stats"] == dataset.stats
    assert body["spec"]["limit"] == 2
    assert body["spec"]["strategy"] == "all"
    assert set(body) == {
        "key", "name", "version", "kind", "description", "status", "error", "spec", "stats",
        "created_by", "created_at", "built_at", "attempt", "queued_at", "awaiting_broker",
    }


@pytest.mark.parametrize("key", ["arith@v2", "other@v1", "arith", "arith@v", "arith@vx", "@v1", "arith@v1x"])
def test_unknown_or_malformed_keys_are_404(api, three_traces, key):
    build("arith")
    response = api.get(f"{URL}/{key}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("method", ["put", "patch", "post"])
def test_datasets_cannot_be_updated(api, three_traces, method):
    dataset = build("arith", description="before")
    before = member_ids(dataset)
    response = getattr(api, method)(f"{URL}/arith@v1", {"description": "after", "limit": 1}, format="json")
    assert response.status_code == 405
    dataset.refresh_from_db()
    assert dataset.description == "before"
    assert member_ids(dataset) == before


def test_list_is_newest_first_and_paginated_by_cursor(api, three_traces):
    now = timezone.now()
    for n in range(5):
        Dataset.objects.filter(pk=build(f"set-{n}").pk).update(created_at=now - dt.timedelta(hours=5 - n))
    first = api.get(URL, {"limit": 2})
    assert first.status_code == 200
    assert [row["key"] for row in first.json()["results"]] == ["set-4@v1", "set-3@v1"]
    assert first.json()["next_cursor"]
    assert walk(api, {"limit": 2}) == [f"set-{n}@v1" for n in (4, 3, 2, 1, 0)]


def test_list_rows_are_narrow(api, three_traces):
    build("arith")
    row = api.get(URL).json()["results"][0]
    assert row == {
        "key": "arith@v1",
        "name": "arith",
        "version": 1,
        "kind": "sft",
        "description": "",
        "status": "ready",
        "count": 3,
        "created_at": row["created_at"],
    }


def test_list_queries_do_not_grow_with_rows(api, three_traces):
    build("a")
    with CaptureQueriesContext(connection) as few:
        assert api.get(URL).status_code == 200
    for n in range(6):
        build(f"more-{n}")
    with CaptureQueriesContext(connection) as many:
        assert len(api.get(URL).json()["results"]) == 7
    assert len(many) == len(few)


def test_list_searches_name_and_description(api, three_traces):
    build("gsm-math", description="grade school")
    build("arc-logic", description="puzzles about math")
    build("other", description="nothing")
    assert sorted(walk(api, {"q": "math"})) == ["arc-logic@v1", "gsm-math@v1"]
    assert walk(api, {"q": "GRADE"}) == ["gsm-math@v1"]
    assert walk(api, {"q": "zzz"}) == []


def test_list_filters_by_exact_name_giving_every_version(api, three_traces):
    for _ in range(3):
        build("gsm")
    build("gsm-extra")
    assert sorted(walk(api, {"name": "gsm"})) == ["gsm@v1", "gsm@v2", "gsm@v3"]


def test_list_refuses_a_bad_cursor_or_limit(api):
    assert api.get(URL, {"cursor": "not-a-cursor"}).status_code == 400
    assert api.get(URL, {"limit": 0}).status_code == 400
    assert api.get(URL, {"limit": 101}).status_code == 400


def test_delete_removes_the_dataset_and_its_members_only(api, user, three_traces):
    keep = build("keep")
    build("drop", user)
    response = api.delete(f"{URL}/drop@v1")
    assert response.status_code == 204
    assert list(Dataset.objects.values_list("name", flat=True)) == ["keep"]
    assert set(DatasetMember.objects.values_list("dataset_id", flat=True)) == {keep.pk}
    assert api.delete(f"{URL}/drop@v1").status_code == 404
    assert api.get(f"{URL}/drop@v1").status_code == 404


def test_rebuilding_after_a_delete_takes_the_next_free_version(api, user, three_traces):
    build("arith", user)
    build("arith")
    assert api.delete(f"{URL}/arith@v1").status_code == 204
    assert api.post(URL, {"name": "arith"}, format="json").json()["key"] == "arith@v3"


def test_a_deleted_newest_version_number_is_never_handed_out_again(api, user, three_traces):
    build("arith", user)
    build("arith", user)
    assert api.delete(f"{URL}/arith@v2").status_code == 204
    rebuilt = api.post(URL, {"name": "arith"}, format="json")
    assert rebuilt.status_code == 201
    assert rebuilt.json()["key"] == "arith@v3"
    assert api.get(f"{URL}/arith@v2").status_code == 404
    assert sorted(Dataset.objects.filter(name="arith").values_list("version", flat=True)) == [1, 3]
