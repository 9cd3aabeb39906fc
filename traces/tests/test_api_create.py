"""POST /api/traces: every SPEC §3.1 rule, field-named errors, 413, idempotent capture."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from traces.models import Trace
from traces.tests.factories import trace_document

pytestmark = pytest.mark.django_db

URL = "/api/traces"


def post(api: Any, body: Any) -> Any:
    return api.post(URL, body, format="json")


def with_step(**fields: Any) -> dict[str, Any]:
    """A document whose first step is replaced by `fields` (keys set to None are dropped)."""
    doc = trace_document(1)
    step = {"i": 0, "type": "compute", "content": "step 0"}
    step.update(fields)
    doc["steps"][0] = {k: v for k, v in step.items() if v is not None}
    return doc


def without(key: str) -> dict[str, Any]:
    doc = trace_document(1)
    del doc[key]
    return doc


def replaced(**fields: Any) -> dict[str, Any]:
    doc = trace_document(1)
    doc.update(fields)
    return doc


INVALID_DOCUMENTS = [
    pytest.param(without("trace_version"), "trace_version", id="trace_version-missing"),
    pytest.param(replaced(trace_version=""), "trace_version", id="trace_version-empty"),
    pytest.param(replaced(trace_version="   "), "trace_version", id="trace_version-blank"),
    pytest.param(replaced(trace_version="v" * 65), "trace_version", id="trace_version-too-long"),
    pytest.param(replaced(trace_version=1), "trace_version", id="trace_version-not-string"),
    pytest.param(replaced(trace_version=None), "trace_version", id="trace_version-null"),
    pytest.param(without("prompt"), "prompt", id="prompt-missing"),
    pytest.param(replaced(prompt=""), "prompt", id="prompt-empty"),
    pytest.param(replaced(prompt=" \n\t"), "prompt", id="prompt-blank"),
    pytest.param(replaced(prompt="p" * 50_001), "prompt", id="prompt-too-long"),
    pytest.param(replaced(prompt=["a list"]), "prompt", id="prompt-not-string"),
    pytest.param(without("final_answer"), "final_answer", id="final_answer-missing"),
    pytest.param(replaced(final_answer=""), "final_answer", id="final_answer-empty"),
    pytest.param(replaced(final_answer="  "), "final_answer", id="final_answer-blank"),
    pytest.param(replaced(final_answer="a" * 50_001), "final_answer", id="final_answer-too-long"),
    pytest.param(replaced(final_answer=42), "final_answer", id="final_answer-not-string"),
    pytest.param(without("steps"), "steps", id="steps-missing"),
    pytest.param(replaced(steps={"i": 0, "type": "t", "content": "c"}), "steps", id="steps-object"),
    pytest.param(replaced(steps="step one"), "steps", id="steps-string"),
    pytest.param(replaced(steps=[]), "steps", id="steps-empty"),
    pytest.param(
        replaced(steps=[{"i": i, "type": "t", "content": "c"} for i in range(1001)]),
        "steps",
        id="steps-1001",
    ),
    pytest.param(replaced(steps=["not an object"]), "steps[0]", id="step-not-object"),
    pytest.param(with_step(i=None), "steps[0].i", id="step-i-missing"),
    pytest.param(with_step(i="0"), "steps[0].i", id="step-i-string"),
    pytest.param(with_step(i=1.5), "steps[0].i", id="step-i-float"),
    pytest.param(with_step(i=True), "steps[0].i", id="step-i-bool"),
    pytest.param(with_step(i=-1), "steps[0].i", id="step-i-negative"),
    pytest.param(with_step(type=None), "steps[0].type", id="step-type-missing"),
    pytest.param(with_step(type=""), "steps[0].type", id="step-type-empty"),
    pytest.param(with_step(type="t" * 65), "steps[0].type", id="step-type-too-long"),
    pytest.param(with_step(content=None), "steps[0].content", id="step-content-missing"),
    pytest.param(with_step(content=""), "steps[0].content", id="step-content-empty"),
    pytest.param(with_step(content="c" * 20_001), "steps[0].content", id="step-content-too-long"),
    pytest.param(with_step(content=7), "steps[0].content", id="step-content-not-string"),
    pytest.param(replaced(meta=["source"]), "meta", id="meta-list"),
    pytest.param(replaced(meta="source=x"), "meta", id="meta-string"),
    pytest.param(replaced(meta=3), "meta", id="meta-number"),
    pytest.param(replaced(prompt="a\x00b"), "prompt", id="nul-in-prompt"),
    pytest.param(replaced(final_answer="4\x00"), "final_answer", id="nul-in-final_answer"),
    pytest.param(replaced(trace_version="1\x00"), "trace_version", id="nul-in-trace_version"),
    pytest.param(with_step(content="x\x00y"), "steps[0].content", id="nul-in-step-content"),
    pytest.param(with_step(type="t\x00"), "steps[0].type", id="nul-in-step-type"),
    pytest.param(replaced(meta={"note": "a\x00b"}), "meta.note", id="nul-in-meta-value"),
    pytest.param(replaced(meta={"a\x00": 1}), "meta", id="nul-in-meta-key"),
]


@pytest.mark.parametrize(("document", "field"), INVALID_DOCUMENTS)
def test_each_rule_is_rejected_naming_its_field(api, document, field):
    response = post(api, document)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert Trace.objects.count() == 0


def test_a_duplicate_step_index_is_rejected_naming_the_step(api):
    doc = trace_document(1, steps=3)
    doc["steps"][2]["i"] = 0

    response = post(api, doc)

    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["steps[2].i"]
    assert "Duplicate" in body["steps[2].i"][0]
    assert Trace.objects.count() == 0


def test_an_unknown_top_level_key_is_rejected_by_name(api):
    response = post(api, trace_document(1, answer_explanation="extra"))

    assert response.status_code == 400
    assert response.json() == {"answer_explanation": ["Unknown field."]}


def test_an_unknown_step_key_is_rejected_by_name(api):
    doc = trace_document(1)
    doc["steps"][1]["score"] = 0.5

    response = post(api, doc)

    assert response.status_code == 400
    assert response.json() == {"steps[1].score": ["Unknown field."]}


def test_every_bad_field_is_named_at_once(api):
    doc: dict[str, Any] = {
        "trace_version": "",
        "prompt": "x" * 50_001,
        "steps": [],
        "final_answer": None,
        "extra": 1,
    }

    response = post(api, doc)

    assert response.status_code == 400
    assert set(response.json()) == {"trace_version", "prompt", "steps", "final_answer", "extra"}


@pytest.mark.parametrize("body", [[], "a string", 42, None], ids=["array", "string", "number", "null"])
def test_a_body_that_is_not_an_object_is_rejected(api, body):
    response = api.post(URL, json.dumps(body), content_type="application/json")

    assert response.status_code == 400
    assert Trace.objects.count() == 0


def test_the_largest_allowed_values_are_accepted(api):
    doc = replaced(
        trace_version="v" * 64,
        prompt="p" * 50_000,
        final_answer="a" * 50_000,
        steps=[{"i": 0, "type": "t" * 64, "content": "c" * 20_000}]
        + [{"i": i, "type": "t", "content": "c"} for i in range(1, 1000)],
    )

    response = post(api, doc)

    assert response.status_code == 201, response.content
    trace = Trace.objects.get(pk=response.json()["id"])
    assert trace.step_count == 1000
    assert len(trace.prompt) == 50_000


def test_absent_meta_is_stored_as_an_empty_object(api):
    response = post(api, without("meta"))

    assert response.status_code == 201
    trace = Trace.objects.get(pk=response.json()["id"])
    assert trace.meta == {}
    assert api.get(f"{URL}/{trace.pk}").json()["meta"] == {}


def test_null_meta_is_stored_as_an_empty_object(api):
    response = post(api, replaced(meta=None))

    assert response.status_code == 201
    assert Trace.objects.get(pk=response.json()["id"]).meta == {}


def test_steps_are_stored_ordered_by_i(api):
    doc = trace_document(1)
    doc["steps"] = [
        {"i": 7, "type": "c", "content": "third"},
        {"i": 0, "type": "a", "content": "first"},
        {"i": 3, "type": "b", "content": "second"},
    ]

    response = post(api, doc)

    assert response.status_code == 201
    trace = Trace.objects.get(pk=response.json()["id"])
    assert [s["i"] for s in trace.steps] == [0, 3, 7]
    assert [s["content"] for s in trace.steps] == ["first", "second", "third"]
    detail = api.get(f"{URL}/{trace.pk}").json()
    assert [s["content"] for s in detail["steps"]] == ["first", "second", "third"]


def test_derived_fields_are_stored(api):
    doc = trace_document(1, meta={"source": " gsm8k ", "tags": ["math", "math", "easy", 3, ""]})

    response = post(api, doc)

    trace = Trace.objects.get(pk=response.json()["id"])
    assert trace.source == "gsm8k"
    assert trace.tags == ["math", "easy"]
    assert trace.step_count == 3
    step_chars = sum(len(s["content"]) for s in doc["steps"])
    expected_chars = len(doc["prompt"]) + len(doc["final_answer"]) + step_chars
    assert trace.char_count == expected_chars
    assert len(trace.content_hash) == 64


def test_created_response_names_the_new_trace(api, user):
    response = post(api, trace_document(1))

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "created_at", "trace_version"}
    assert body["trace_version"] == "1.0"
    assert Trace.objects.get(pk=body["id"]).created_by == user


@pytest.mark.parametrize(
    "raw",
    [b'{"trace_version": "1.0",', b"{'prompt': 'single quotes'}", b"not json at all", b'{"a": 1}}'],
    ids=["truncated", "single-quotes", "text", "trailing-brace"],
)
def test_malformed_json_is_a_400(api, raw):
    response = api.post(URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert "detail" in response.json()
    assert Trace.objects.count() == 0


def test_a_body_over_trace_max_bytes_is_a_413(api, settings):
    settings.TRACE_MAX_BYTES = 2048
    doc = trace_document(1, prompt="x" * 3000)

    response = post(api, doc)

    assert response.status_code == 413
    assert Trace.objects.count() == 0


def test_a_body_just_under_trace_max_bytes_is_accepted(api, settings):
    settings.TRACE_MAX_BYTES = 2048
    doc = trace_document(1, prompt="x" * 1500)
    assert len(json.dumps(doc)) < 2048

    response = post(api, doc)

    assert response.status_code == 201


def test_reposting_an_identical_trace_returns_the_existing_id(api):
    first = post(api, trace_document(5))
    second = post(api, trace_document(5))

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert Trace.objects.count() == 1


def test_key_order_and_step_order_do_not_make_a_new_trace(api):
    doc = trace_document(5, steps=4)
    first = post(api, doc)

    reordered: dict[str, Any] = {key: copy.deepcopy(doc[key]) for key in reversed(list(doc))}
    reordered["steps"] = [dict(reversed(list(s.items()))) for s in reversed(reordered["steps"])]
    reordered["meta"] = dict(reversed(list(reordered["meta"].items())))
    second = api.post(URL, json.dumps(reordered), content_type="application/json")

    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert Trace.objects.count() == 1


def test_absent_and_empty_meta_are_the_same_trace(api):
    first = post(api, replaced(meta={}))
    second = post(api, without("meta"))

    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "What is 5 + 5 ?"},
        {"final_answer": "11"},
        {"trace_version": "1.1"},
        {"meta": {"source": "other"}},
    ],
    ids=["prompt", "answer", "version", "meta"],
)
def test_a_trace_that_differs_in_any_field_is_a_new_trace(api, change):
    first = post(api, trace_document(5))
    second = post(api, trace_document(5, **change))

    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert Trace.objects.count() == 2


def test_the_capture_answer_writes_created_at_as_the_reads_do(api):
    created = api.post(URL, trace_document(7), format="json").json()
    again = api.post(URL, trace_document(7), format="json").json()  # the stored trace
    detail = api.get(f"{URL}/{created['id']}").json()
    listed = api.get(URL, {"fields": "id,created_at"}).json()["results"][0]
    assert created["created_at"] == again["created_at"] == detail["created_at"] == listed["created_at"]
    assert created["created_at"].endswith("Z")
