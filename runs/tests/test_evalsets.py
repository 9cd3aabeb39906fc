"""Eval sets: JSONL imports (all or nothing, errors by line) and a dataset's validation split; their API."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs.evaluation.evalsets import EvalSetInvalid, evalset_from_dataset, import_evalset
from runs.models import EvalItem, EvalSet
from runs.tests.eval_support import (
    EVAL_V1,
    EVAL_V2,
    completed_run,
    hand_evaluation,
    item,
    jsonl,
    make_eval_set,
    use_eval_folders,
)
from runs.tests.run_support import build_arithmetic_dataset
from traces.datasets.building import build_dataset, validate_build_spec
from traces.models import DatasetMember

pytestmark = pytest.mark.django_db
needs_data = pytest.mark.skipif(not EVAL_V1.exists(), reason=f"the shared eval sets are not at {EVAL_V1.parent}")


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


def _import(data: bytes, name: str = "quiz") -> EvalSet:
    return import_evalset(io.BytesIO(data), name)


def _line_errors(data: bytes) -> list[tuple[int, str]]:
    with pytest.raises(EvalSetInvalid) as caught:
        _import(data)
    assert isinstance(caught.value.errors, list)
    assert not EvalSet.objects.exists() and not EvalItem.objects.exists(), "nothing is stored"
    return caught.value.errors


@needs_data
def test_the_shared_eval_v1_imports_every_item_in_order():
    with EVAL_V1.open("rb") as f:
        eval_set = import_evalset(f, "eval-v1", source="file:eval_v1.jsonl")
    rows = [json.loads(line) for line in EVAL_V1.read_text().splitlines() if line.strip()]
    assert eval_set.item_count == len(rows) == 25
    items = list(eval_set.items.order_by("position"))
    assert [i.item_id for i in items] == [r["id"] for r in rows]
    assert [i.position for i in items] == list(range(25))
    first = items[0]
    assert (first.prompt, first.expected_answer, first.category, first.difficulty, first.section) == (
        "What is 15 + 27?",
        "42",
        "arithmetic",
        "easy",
        "",
    )
    assert eval_set.items.filter(item_id="eval-003").get().expected_answer == "120 km"


@needs_data
def test_the_shared_eval_v2_imports_with_sections():
    with EVAL_V2.open("rb") as f:
        eval_set = import_evalset(f, "eval-v2")
    assert eval_set.item_count == EvalItem.objects.filter(eval_set=eval_set).count() == 100
    sections = set(eval_set.items.values_list("section", flat=True))
    assert "core" in sections and "" not in sections


def test_numbers_are_accepted_as_ids_and_answers_and_labels_are_optional():
    eval_set = _import(jsonl([{"id": 7, "prompt": "Seven?", "expected_answer": 7.5}, item(2)]))
    first, second = eval_set.items.order_by("position")
    assert (first.item_id, first.expected_answer) == ("7", "7.5")
    assert (second.category, second.difficulty, second.section) == ("", "", "")


def test_blank_lines_are_skipped_but_keep_the_line_numbers():
    data = b"\n" + jsonl([item(1)]) + b"   \n" + jsonl([{"id": "q1", "prompt": "again", "expected_answer": "x"}])
    assert _line_errors(data) == [(4, "duplicate id 'q1' (first on line 2)")]
    assert _import(b"\n" + jsonl([item(1)]) + b"\n\n").item_count == 1


def test_missing_fields_and_duplicate_ids_are_listed_by_line_and_nothing_is_stored():
    data = jsonl(
        [
            item(1),
            {"id": "q2", "prompt": "No answer"},
            {"prompt": "No id", "expected_answer": "1"},
            item(1, prompt="Same id again"),
            {"id": "q5", "prompt": "  ", "expected_answer": ""},
            item(6),
        ]
    )
    errors = _line_errors(data)
    assert errors == [
        (2, "expected_answer: required (a non-empty string)"),
        (3, "id: required (a non-empty string)"),
        (4, "duplicate id 'q1' (first on line 1)"),
        (5, "prompt: required (a non-empty string); expected_answer: required (a non-empty string)"),
    ]


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (jsonl([item(1), '{"id": "q2", "prompt": "cut off"']), 2, "Malformed JSON"),
        (jsonl(["not json at all"]), 1, "Malformed JSON"),
        (jsonl([item(1), "[1, 2, 3]"]), 2, "Expected a JSON object."),
        (jsonl(['"a string"']), 1, "Expected a JSON object."),
        (jsonl(["null"]), 1, "Expected a JSON object."),
        (jsonl([item(1, answer="x", extra=1)]), 1, "unknown fields answer, extra"),
        (jsonl([item(1, category=3)]), 1, "category: must be text of at most 100 characters"),
        (jsonl([item(1, section="s" * 101)]), 1, "section: must be text of at most 100 characters"),
        (jsonl([item(1, prompt=["a list"])]), 1, "prompt: required"),
        (jsonl([item(1, expected_answer=True)]), 1, "expected_answer: required"),
        (jsonl([item(1, prompt="nul \x00 byte")]), 1, "prompt: too long or contains NUL"),
        (jsonl([item(1, prompt="p" * 50_001)]), 1, "prompt: too long or contains NUL"),
        (b"", 0, "The file holds no items."),
        (b"\n  \n\n", 0, "The file holds no items."),
        (b"\xff\xfe{}", 1, "Malformed JSON"),
    ],
    ids=[
        "truncated-line",
        "not-json",
        "array",
        "string",
        "null",
        "unknown-fields",
        "numeric-label",
        "long-label",
        "prompt-not-text",
        "boolean-answer",
        "nul",
        "too-long",
        "empty-file",
        "only-blank-lines",
        "not-utf8",
    ],
)
def test_bad_eval_files_are_refused_with_the_line_and_reason(data, line, message):
    errors = _line_errors(data)
    assert len(errors) == 1
    assert errors[0][0] == line
    assert message in errors[0][1]


@pytest.mark.parametrize("name", ["", "Has Spaces", "UPPER", "slash/name", "x" * 101])
def test_the_name_must_be_a_slug(name):
    with pytest.raises(EvalSetInvalid) as caught:
        _import(jsonl([item(1)]), name=name)
    assert isinstance(caught.value.errors, dict)
    assert "name" in caught.value.errors


def test_the_name_must_be_new():
    _import(jsonl([item(1)]))
    with pytest.raises(EvalSetInvalid, match="exists already"):
        _import(jsonl([item(2)]))
    assert EvalItem.objects.count() == 1


def test_a_datasets_validation_split_becomes_an_eval_set():
    dataset = build_arithmetic_dataset()  # 32 traces, 8 held out
    eval_set = evalset_from_dataset(dataset, "arith-validation")
    assert eval_set.item_count == 8
    assert eval_set.source == "dataset:arith@v1"
    members = DatasetMember.objects.filter(dataset=dataset, split="validation").order_by("position")
    expected = [(f"trace-{m.trace_id}", m.trace.prompt, m.trace.final_answer) for m in members]
    assert list(eval_set.items.order_by("position").values_list("item_id", "prompt", "expected_answer")) == expected
    assert set(eval_set.items.values_list("category", flat=True)) == {"arith"}


def test_a_dataset_without_a_validation_split_is_refused():
    build_arithmetic_dataset(count=4)
    dataset = build_dataset(validate_build_spec({"name": "no-split", "strategy": "all"}))
    with pytest.raises(EvalSetInvalid) as caught:
        evalset_from_dataset(dataset, "empty")
    assert caught.value.errors == {"dataset": ["Dataset no-split@v1 has no validation split."]}
    assert not EvalSet.objects.exists()


# The API -----------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(("path", "count"), [(EVAL_V1, 25), (EVAL_V2, 100)])
def test_the_api_imports_the_shared_eval_files(api, path, count):
    upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="application/x-ndjson")
    response = api.post("/api/eval-sets", {"name": path.stem.replace("_", "-"), "file": upload}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["item_count"], body["source"]) == (count, "upload")
    assert EvalItem.objects.filter(eval_set__name=body["name"]).count() == count


@needs_data
def test_the_api_takes_items_as_a_json_list(api):
    rows = [json.loads(line) for line in EVAL_V1.read_text().splitlines() if line.strip()]
    response = api.post("/api/eval-sets", {"name": "from-json", "items": rows}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["item_count"] == 25
    assert response.json()["source"] == "api"
    assert EvalSet.objects.filter(created_by__username="alice").exists()


def test_the_api_lists_errors_by_line_and_stores_nothing(api):
    bad = SimpleUploadedFile("bad.jsonl", jsonl([item(1), {"id": "q1", "prompt": "p"}, "{oops"]))
    response = api.post("/api/eval-sets", {"name": "bad", "file": bad}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "lines": [
            {"line": 2, "error": "expected_answer: required (a non-empty string)"},
            {"line": 3, "error": response.json()["lines"][1]["error"]},
        ]
    }
    assert response.json()["lines"][1]["error"].startswith("Malformed JSON")
    response = api.post("/api/eval-sets", {"name": "dupes", "items": [item(1), item(1)]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"lines": [{"line": 2, "error": "duplicate id 'q1' (first on line 1)"}]}
    assert not EvalSet.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "items"),
        ({"name": "x", "items": "not a list"}, "items"),
        ({"name": "x", "items": []}, "lines"),
        ({"name": "Bad Name", "items": [item(1)]}, "name"),
        ({"name": "x", "dataset": "nope@v1"}, "dataset"),
        ([item(1)], "non_field_errors"),
    ],
)
def test_the_api_names_what_is_wrong(api, body, field):
    response = api.post("/api/eval-sets", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_the_api_builds_from_a_dataset(api):
    dataset = build_arithmetic_dataset()
    response = api.post("/api/eval-sets", {"name": "held-out", "dataset": dataset.key}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["item_count"] == 8
    assert response.json()["source"] == "dataset:arith@v1"


def test_the_api_lists_eval_sets_and_their_items(api):
    make_eval_set("first")
    make_eval_set("second", [item(5, category="c", difficulty="d", section="s"), item(6)])
    listed = api.get("/api/eval-sets").json()
    assert [s["name"] for s in listed["results"]] == ["second", "first"]  # newest first
    assert listed["results"][0]["item_count"] == 2
    assert api.get("/api/eval-sets/second").json()["name"] == "second"
    items = api.get("/api/eval-sets/second/items").json()
    assert items == [
        {"id": "q5", "prompt": "What is 5 + 5?", "expected_answer": "10", "category": "c", "difficulty": "d",
         "section": "s"},
        {"id": "q6", "prompt": "What is 6 + 6?", "expected_answer": "12", "category": "", "difficulty": "",
         "section": ""},
    ]
    assert api.get("/api/eval-sets/nope/items").status_code == 404


def test_an_eval_set_with_evaluations_cannot_be_deleted(api, user, dataset):
    used = make_eval_set("used", created_by=user)
    hand_evaluation(completed_run(dataset), used, {"q1": True})
    make_eval_set("unused", created_by=user)
    response = api.delete("/api/eval-sets/used")
    assert response.status_code == 409
    assert "has evaluations" in response.json()["detail"]
    assert api.delete("/api/eval-sets/unused").status_code == 204
    assert list(EvalSet.objects.values_list("name", flat=True)) == ["used"]


def test_the_api_needs_a_login(client, db):
    assert client.get("/api/eval-sets").status_code in (401, 403)
    assert client.post("/api/eval-sets", {"name": "x", "items": [item(1)]}, "application/json").status_code in (
        401,
        403,
    )
    assert not EvalSet.objects.exists()
