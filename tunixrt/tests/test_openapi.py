"""The OpenAPI schema is valid and documents the errors the API really gives."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from traces.tests.factories import make_trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api: APIClient) -> dict[str, Any]:
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_the_schema_is_valid_openapi(schema):
    validate_schema(schema)
    assert len(operations(schema)) >= 40


def test_every_operation_documents_the_errors_it_can_give(schema):
    for path, method, op in operations(schema):
        responses = op["responses"]
        where = f"{method.upper()} {path}"
        assert "403" in responses, where
        parameters = op.get("parameters", [])
        if any(p["in"] == "path" for p in parameters):
            assert "404" in responses, where
        if "requestBody" in op or any(p["in"] == "query" for p in parameters):
            assert responses["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/FieldErrors"
            }, where
    assert "413" in schema["paths"]["/api/traces"]["post"]["responses"]
    assert "413" in schema["paths"]["/api/traces/batch"]["post"]["responses"]
    assert "413" not in schema["paths"]["/api/datasets"]["post"]["responses"]


def test_a_run_not_started_yet_has_a_null_duration_and_the_schema_says_so(schema):
    duration = schema["components"]["schemas"]["RunDetail"]["properties"]["duration_seconds"]
    assert duration.get("nullable") is True


@pytest.mark.parametrize(
    ("method", "url", "body", "operation"),
    [
        ("get", "/api/traces/999999", None, ("/api/traces/{id}", "get")),
        ("get", "/api/traces?limit=0", None, ("/api/traces", "get")),
        ("post", "/api/traces", {"prompt": ""}, ("/api/traces", "post")),
        ("get", "/api/datasets/nope@v1", None, ("/api/datasets/{key}", "get")),
        ("get", "/api/runs?status=bogus", None, ("/api/runs", "get")),
        ("get", "/api/runs/424242", None, ("/api/runs/{id}", "get")),
        ("get", "/api/leaderboard", None, ("/api/leaderboard", "get")),
    ],
)
def test_real_error_answers_are_documented(api, schema, method, url, body, operation):
    make_trace()
    response = getattr(api, method)(url, body, format="json") if body else getattr(api, method)(url)
    assert 400 <= response.status_code < 500, response.content
    path, verb = operation
    assert str(response.status_code) in schema["paths"][path][verb]["responses"], response.status_code


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/runs/0.5"),
        ("delete", "/api/runs/0.5"),
        ("get", "/api/traces/"),
        ("post", "/api/nothing-here"),
        ("get", "/api/traces/1/nope"),
    ],
)
def test_an_api_url_that_names_no_endpoint_is_a_json_404(api, method, url, settings):
    settings.DEBUG = True  # even with Django's HTML debug 404 page switched on
    response = getattr(api, method)(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "No API endpoint at" in response.json()["detail"]


def test_an_unknown_api_url_still_needs_authentication():
    response = APIClient().get("/api/nothing-here")
    assert response.status_code in (401, 403)


def test_query_parameters_state_the_bounds_the_api_enforces(schema):
    def bounds(path: str, name: str) -> dict[str, Any]:
        (parameter,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name]
        return {k: v for k, v in parameter["schema"].items() if k in ("minimum", "maximum", "maxLength")}

    assert bounds("/api/traces", "min_steps") == {"minimum": 0, "maximum": 1000}
    assert bounds("/api/traces", "q") == {"maxLength": 500}
    assert bounds("/api/traces", "limit") == {"minimum": 1, "maximum": 100}
    assert bounds("/api/leaderboard", "limit") == {"minimum": 1, "maximum": 1000}
    assert bounds("/api/runs/{id}/metrics", "max_points") == {"minimum": 2, "maximum": 100_000}


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/traces?min_steps=1001", "min_steps"),
        ("/api/traces?q=" + "x" * 501, "q"),
        ("/api/leaderboard?eval_set=none&limit=1001", "eval_set"),
    ],
)
def test_values_past_those_bounds_are_400s_naming_the_parameter(api, url, field):
    response = api.get(url)
    assert response.status_code == 400
    assert field in response.json()


def test_created_by_is_nullable_where_the_creator_can_be_deleted(schema):
    for component in ("DatasetDetail", "RunDetail"):
        created_by = schema["components"]["schemas"][component]["properties"]["created_by"]
        assert created_by.get("nullable") is True, component


def test_the_409_of_exporting_a_dataset_that_is_still_building_is_documented(api, schema):
    from traces.choices import DatasetStatus
    from traces.models import Dataset

    Dataset.objects.create(name="growing", version=1, status=DatasetStatus.BUILDING)

    response = api.get("/api/datasets/growing@v1/export")

    assert response.status_code == 409
    assert "409" in schema["paths"]["/api/datasets/{key}/export"]["get"]["responses"]


def test_the_capture_schema_states_the_steps_bounds_the_validator_enforces(api, schema):
    steps = schema["components"]["schemas"]["TraceInputRequest"]["properties"]["steps"]
    assert (steps.get("minItems"), steps.get("maxItems")) == (1, 1000)
    assert api.post("/api/traces", {"steps": []}, format="json").json()["steps"] == ["Must contain at least 1 step."]
