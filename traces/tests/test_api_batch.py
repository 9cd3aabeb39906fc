"""POST /api/traces/batch: all or nothing, ids in input order, duplicates resolved."""

from __future__ import annotations

import json

import pytest

from traces.models import Trace
from traces.tests.factories import make_trace, trace_document

pytestmark = pytest.mark.django_db

URL = "/api/traces/batch"


def test_a_batch_returns_ids_in_input_order(api):
    docs = [trace_document(n) for n in (3, 1, 2)]

    response = api.post(URL, docs, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["created"] == 3
    assert body["duplicates"] == 0
    prompts = [Trace.objects.get(pk=pk).prompt for pk in body["ids"]]
    assert prompts == [d["prompt"] for d in docs]


def test_the_traces_wrapper_object_is_accepted(api):
    response = api.post(URL, {"traces": [trace_document(1), trace_document(2)]}, format="json")

    assert response.status_code == 201
    assert response.json()["created"] == 2
    assert Trace.objects.count() == 2


def test_already_stored_traces_get_their_existing_ids(api):
    stored = api.post("/api/traces", trace_document(2), format="json").json()["id"]

    response = api.post(URL, [trace_document(1), trace_document(2), trace_document(3)], format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["ids"][1] == stored
    assert len(set(body["ids"])) == 3
    assert (body["created"], body["duplicates"]) == (2, 1)
    assert Trace.objects.count() == 3


def test_a_batch_of_only_stored_traces_is_a_200(api):
    first = api.post(URL, [trace_document(1), trace_document(2)], format="json").json()

    again = api.post(URL, [trace_document(2), trace_document(1)], format="json")

    assert again.status_code == 200
    assert again.json() == {"ids": first["ids"][::-1], "created": 0, "duplicates": 2}


def test_duplicates_inside_one_batch_share_one_row(api):
    reordered = trace_document(1)
    reordered["steps"] = reordered["steps"][::-1]

    response = api.post(URL, [trace_document(1), trace_document(2), reordered], format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["ids"][0] == body["ids"][2] != body["ids"][1]
    assert (body["created"], body["duplicates"]) == (2, 1)
    assert Trace.objects.count() == 2


def test_one_invalid_item_stores_nothing_and_names_each_bad_item(api):
    make_trace()
    before = Trace.objects.count()
    bad_step = trace_document(3)
    bad_step["steps"][1]["content"] = ""
    items = [trace_document(1), trace_document(2, prompt=""), bad_step, trace_document(4, extra=1)]

    response = api.post(URL, items, format="json")

    assert response.status_code == 400
    body = response.json()
    assert [item["index"] for item in body["items"]] == [1, 2, 3]
    assert "prompt" in body["items"][0]["errors"]
    assert "steps[1].content" in body["items"][1]["errors"]
    assert body["items"][2]["errors"] == {"extra": ["Unknown field."]}
    assert "nothing was stored" in body["detail"]
    assert Trace.objects.count() == before


def test_an_item_that_is_not_an_object_is_named_by_index(api):
    response = api.post(URL, [trace_document(1), "a string"], format="json")

    assert response.status_code == 400
    assert [item["index"] for item in response.json()["items"]] == [1]
    assert Trace.objects.count() == 0


def test_an_oversized_item_is_rejected_and_nothing_stored(api, settings):
    settings.TRACE_MAX_BYTES = 2048

    response = api.post(URL, [trace_document(1), trace_document(2, prompt="x" * 3000)], format="json")

    assert response.status_code == 400
    assert [item["index"] for item in response.json()["items"]] == [1]
    assert Trace.objects.count() == 0


def test_a_body_over_the_batch_limit_is_a_413(api, settings):
    settings.TRACE_BATCH_MAX_BYTES = 4096

    response = api.post(URL, [trace_document(n, prompt="x" * 1000) for n in range(5)], format="json")

    assert response.status_code == 413
    assert Trace.objects.count() == 0


def test_one_thousand_items_are_accepted(api):
    response = api.post(URL, [trace_document(n, steps=1) for n in range(1000)], format="json")

    assert response.status_code == 201
    assert response.json()["created"] == 1000
    assert Trace.objects.count() == 1000


def test_more_than_one_thousand_items_are_rejected(api):
    response = api.post(URL, [trace_document(n, steps=1) for n in range(1001)], format="json")

    assert response.status_code == 400
    assert "traces" in response.json()
    assert Trace.objects.count() == 0


@pytest.mark.parametrize("body", [[], {"traces": []}], ids=["empty-array", "empty-wrapper"])
def test_an_empty_batch_is_rejected(api, body):
    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert "traces" in response.json()


@pytest.mark.parametrize(
    "body",
    [{"traces": "nope"}, trace_document(1), 5, {"traces": [], "extra": 1}],
    ids=["wrapper-not-list", "single-object", "number", "wrapper-with-extra-key"],
)
def test_a_body_that_is_not_a_list_of_traces_is_rejected(api, body):
    response = api.post(URL, json.dumps(body), content_type="application/json")

    assert response.status_code == 400
    assert Trace.objects.count() == 0


def test_malformed_json_batch_is_a_400(api):
    response = api.post(URL, b"[{", content_type="application/json")

    assert response.status_code == 400
    assert Trace.objects.count() == 0
