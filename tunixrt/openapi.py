"""OpenAPI post-processing: the error answers every endpoint can give, documented once.

drf-spectacular documents what each view declares (200, 201, 409, 503 …); the
errors that come from the framework are the same everywhere, so they are added
here to every operation that can produce them, unless the view documented its own:

* 403 — no valid session or token (every endpoint needs one; DRF answers 403, not 401,
  because session authentication comes first and sends no challenge), or, for a write,
  a role that may not do it;
* 404 — an unknown or malformed id, key or name in the path;
* 400 — a bad query parameter or body, naming each bad field;
* 413 — a capture body over its configured size limit;
* 414 — a URL longer than URL_MAX_LENGTH;
* 429 — over a rate limit (`Retry-After` says when to try again);
* 503 — the database is unreachable (`Retry-After`); it answers by itself when it is back.

`FilterBounds` also carries the filters' own limits (`min_value`, `max_value`,
`max_length`) into their query parameters, which drf-spectacular leaves out.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.django_filters import DjangoFilterExtension

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "What went wrong, in words.",
}
FIELD_ERRORS = {
    "type": "object",
    "additionalProperties": {},
    "description": (
        "What was wrong with the input, by name: usually each bad field or parameter with a list of "
        "messages (nested fields by path, e.g. `steps[2].content`; unknown keys too), "
        "`non_field_errors` for the input as a whole and `detail` for malformed JSON. Batch captures "
        "answer `{detail, items: [{index, errors}]}`, eval-set uploads `{lines: [{line, error}]}`."
    ),
}
BODY_LIMITS = {
    ("/api/traces", "post"): "TRACE_MAX_BYTES (default 1 MiB)",
    ("/api/traces/batch", "post"): "TRACE_BATCH_MAX_BYTES (default 64 MiB)",
}


def _response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """A SPECTACULAR_SETTINGS POSTPROCESSING_HOOKS entry (after the default enum hook)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("FieldErrors", FIELD_ERRORS)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            parameters = operation.get("parameters", [])
            denied = "No valid session or token (or, with a session, no CSRF token)."
            if method not in ("get", "head", "options"):
                denied += " Or the user's role may not do this (tunixrt.roles): the detail names the role needed."
            added = {"403": _response(denied, "Error")}
            if any(p.get("in") == "path" for p in parameters):
                added["404"] = _response("Nothing with that id, key or name.", "Error")
            if "requestBody" in operation or any(p.get("in") == "query" for p in parameters):
                added["400"] = _response("Invalid input: every bad field is named.", "FieldErrors")
            limit = BODY_LIMITS.get((path, method))
            if limit:
                added["413"] = _response(f"The body is larger than {limit}.", "Error")
            added["414"] = _response("The URL is longer than URL_MAX_LENGTH.", "Error")
            added["429"] = _response("Too many requests: wait the Retry-After header's seconds.", "Error")
            added["503"] = _response("The database is unreachable; try again after Retry-After.", "Error")
            for code, response in added.items():
                responses.setdefault(code, response)
    return result


class FilterBounds(DjangoFilterExtension):  # type: ignore[no-untyped-call]
    """django-filter parameters with the bounds their filters enforce (loaded by TunixrtConfig.ready)."""

    priority = 1

    def resolve_filter_field(
        self, auto_schema: Any, model: Any, filterset_class: Any, field_name: str, filter_field: Any
    ) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().resolve_filter_field(  # type: ignore[no-untyped-call]
            auto_schema, model, filterset_class, field_name, filter_field
        )
        bounds = {
            "minimum": filter_field.extra.get("min_value"),
            "maximum": filter_field.extra.get("max_value"),
            "maxLength": filter_field.extra.get("max_length"),
        }
        for parameter in parameters:
            parameter["schema"].update({k: v for k, v in bounds.items() if v is not None})
        return parameters
