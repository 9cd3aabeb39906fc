"""traces.validation on its own: what a validated trace holds, whatever the input's key order."""

from __future__ import annotations

import orjson
import pytest

from traces.tests.factories import trace_document
from traces.validation import TraceInvalid, validate_trace


def canonical(doc: dict[str, object]) -> bytes:
    return orjson.dumps({**doc, "meta": doc.get("meta") or {}}, option=orjson.OPT_SORT_KEYS)


def test_size_is_the_length_of_the_canonical_json():
    doc = trace_document(7, prompt="Ünïcode prompt, spaced    out")

    clean = validate_trace(doc)

    assert clean.size == len(canonical(doc))


@pytest.mark.parametrize(
    "step_keys",
    [("i", "type", "content"), ("content", "type", "i"), ("type", "i", "content")],
    ids=["as-stored", "reversed", "mixed"],
)
def test_steps_come_out_as_i_type_content_in_i_order(step_keys):
    steps = [{key: {"i": i, "type": "t", "content": f"c{i}"}[key] for key in step_keys} for i in (2, 0, 1)]

    clean = validate_trace(trace_document(1, steps=steps))

    assert [list(step) for step in clean.steps] == [["i", "type", "content"]] * 3
    assert [step["i"] for step in clean.steps] == [0, 1, 2]
    assert [step["content"] for step in clean.steps] == ["c0", "c1", "c2"]


def test_the_same_trace_in_any_key_order_has_one_hash_and_size():
    doc = trace_document(3)
    reordered = {**doc, "steps": [dict(reversed(list(step.items()))) for step in doc["steps"]]}

    first, second = validate_trace(doc), validate_trace(reordered)

    assert (first.content_hash, first.size) == (second.content_hash, second.size)


def test_a_step_with_an_extra_key_is_named_in_the_error():
    steps = [{"i": 0, "type": "t", "content": "c", "extra": 1}]

    with pytest.raises(TraceInvalid) as exc:
        validate_trace(trace_document(1, steps=steps))

    assert exc.value.errors == {"steps[0].extra": ["Unknown field."]}
