"""Bad build requests: 400 naming each field, nothing stored — through the API, the page and the command."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command

from traces.models import Dataset, DatasetMember
from traces.tests.datasets_support import make_trace

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def some_traces() -> None:
    """Traces exist, so a refusal is never just "no traces match"."""
    for n in range(3):
        make_trace(meta={"source": "gsm", "tags": ["math"]}, steps=n + 1)


def nothing_stored() -> None:
    assert not Dataset.objects.exists()
    assert not DatasetMember.objects.exists()


API_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"name": "Bad Name"}, {"name"}),
    ({"name": "UPPER"}, {"name"}),
    ({"name": "x" * 101}, {"name"}),
    ({"name": ""}, {"name"}),
    ({}, {"name"}),
    ({"name": "ok", "bogus": 1}, {"bogus"}),
    ({"name": "ok", "strategy": "random"}, {"seed"}),
    ({"name": "ok", "strategy": "shuffled"}, {"strategy"}),
    ({"name": "ok", "strategy": "random", "seed": -1}, {"seed"}),
    ({"name": "ok", "limit": 0}, {"limit"}),
    ({"name": "ok", "limit": 1_000_001}, {"limit"}),
    ({"name": "ok", "limit": "ten"}, {"limit"}),
    ({"name": "ok", "limit": 2.5}, {"limit"}),
    ({"name": "ok", "limit": True}, {"limit"}),
    ({"name": "ok", "validation_fraction": 0.6}, {"validation_fraction"}),
    ({"name": "ok", "validation_fraction": "x"}, {"validation_fraction"}),
    ({"name": "ok", "validation_fraction": -0.1}, {"validation_fraction"}),
    ({"name": "ok", "validation_seed": "abc"}, {"validation_seed"}),
    ({"name": "ok", "min_steps": "abc"}, {"min_steps"}),
    ({"name": "ok", "max_steps": -1}, {"max_steps"}),
    ({"name": "ok", "created_after": "yesterday"}, {"created_after"}),
    ({"name": "ok", "source": ["a", "b"]}, {"source"}),
    ({"name": "ok", "trace_ids": [1], "source": "gsm"}, {"trace_ids"}),
    ({"name": "ok", "trace_ids": []}, {"trace_ids"}),
    ({"name": "ok", "trace_ids": ["1"]}, {"trace_ids"}),
    ({"name": "ok", "trace_ids": [0]}, {"trace_ids"}),
    (
        {"name": "Bad Name", "limit": 0, "validation_fraction": 0.6, "strategy": "random", "min_steps": "x"},
        {"name", "limit", "validation_fraction", "seed", "min_steps"},
    ),
]


@pytest.mark.parametrize(
    ("body", "fields"), API_CASES, ids=[f"{n}-{'+'.join(sorted(c[1]))}" for n, c in enumerate(API_CASES)]
)
def test_api_refuses_a_bad_spec_naming_each_field(api, body, fields):
    response = api.post("/api/datasets", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) == fields
    nothing_stored()


def test_api_refuses_a_body_that_is_not_an_object(api):
    response = api.post("/api/datasets", [{"name": "ok"}], format="json")
    assert response.status_code == 400
    nothing_stored()


def test_api_refuses_unknown_trace_ids_naming_them(api):
    known = make_trace()
    response = api.post("/api/datasets", {"name": "ok", "trace_ids": [known.pk, 123456]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"trace_ids": ["Unknown trace ids: 123456."]}
    nothing_stored()


def test_api_says_no_traces_match_and_stores_nothing(api):
    response = api.post("/api/datasets", {"name": "ok", "source": "nowhere"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["No traces match."]}
    nothing_stored()


PAGE_CASES: list[tuple[dict[str, str], str, str]] = [
    ({"name": "Bad Name"}, "name", "lowercase letters, digits, hyphens or underscores"),
    ({"name": "ok", "strategy": "random"}, "seed", "A seed is required for the random strategy."),
    ({"name": "ok", "strategy": "shuffled"}, "strategy", "Select a valid choice."),
    ({"name": "ok", "limit": "0"}, "limit", "Ensure this value is between 1 and 1,000,000."),
    ({"name": "ok", "limit": "1000001"}, "limit", "Ensure this value is between 1 and 1,000,000."),
    ({"name": "ok", "validation_fraction": "0.6"}, "validation_fraction", "Must be a number between 0 and 0.5."),
    ({"name": "ok", "validation_fraction": "x"}, "validation_fraction", "Must be a number between 0 and 0.5."),
    ({"name": "ok", "min_steps": "abc"}, "min_steps", "Enter a whole number."),
    ({"name": "ok", "created_after": "yesterday"}, "created_after", "Enter a valid date/time."),
]


@pytest.mark.parametrize(("form", "field", "message"), PAGE_CASES, ids=[c[1] for c in PAGE_CASES])
def test_build_page_shows_the_field_error_with_400(page, form, field, message):
    response = page.post("/datasets/new/", {"strategy": "latest", **form})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert message in response.content.decode()
    nothing_stored()


def test_build_page_says_no_traces_match(page):
    response = page.post("/datasets/new/", {"name": "ok", "strategy": "latest", "source": "nowhere"})
    assert response.status_code == 400
    assert "No traces match." in response.content.decode()
    nothing_stored()


COMMAND_CASES: list[tuple[list[str], str]] = [
    (["Bad Name"], "name"),
    (["ok", "--strategy", "random"], "seed"),
    (["ok", "--limit", "0"], "limit"),
    (["ok", "--limit", "1000001"], "limit"),
    (["ok", "--validation-fraction", "0.6"], "validation_fraction"),
    (["ok", "--validation-fraction", "x"], "validation-fraction"),
    (["ok", "--min-steps", "abc"], "min_steps"),
    (["ok", "--created-after", "yesterday"], "created_after"),
    (["ok", "--trace-ids", "1,x"], "--trace-ids"),
    (["ok", "--trace-ids", "1", "--source", "gsm"], "trace_ids"),
    (["ok", "--trace-ids", "987654"], "987654"),
    (["ok", "--source", "nowhere"], "No traces match"),
]


@pytest.mark.parametrize(("args", "named"), COMMAND_CASES, ids=[" ".join(c[0]) for c in COMMAND_CASES])
def test_build_command_fails_naming_the_problem(args, named):
    with pytest.raises(CommandError) as info:
        call_command("build_dataset", *args)
    assert named in str(info.value)
    nothing_stored()
