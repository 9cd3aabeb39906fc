"""NUL characters are refused at the door: in the path, the query string and (pages) form fields.

PostgreSQL text and jsonb cannot hold U+0000, so a NUL that reaches a query
(`?eval_set=a%00`, `/api/models/a%00`) fails in the database driver: a 500.
No value this app takes from a URL or a form may contain one, so rather than
guarding every lookup, requests carrying one are answered here with a 400
naming the parameter: JSON `{"<name>": ["..."]}` under /api/, a page elsewhere.

It runs as `process_view`, after URL resolution, so a NUL inside a path
parameter is reported under that parameter's name (`name`, `key`, `path`).
JSON bodies are the serializers' and validators' business (they name nested
fields such as `steps[2].content`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.response import TemplateResponse

from tunixrt.errors import is_api

NUL = "\x00"
MESSAGE = "Null characters are not allowed."
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def shown(name: str) -> str:
    """A parameter name fit for a message (a NUL can be in the name itself)."""
    return name.replace(NUL, "\\0") or "(unnamed)"


def _first_bad(items: Iterable[tuple[str, list[Any]]]) -> str | None:
    for name, values in items:
        if NUL in name or any(isinstance(v, str) and NUL in v for v in values):
            return shown(name)
    return None


def nul_parameter(request: HttpRequest, view_kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(where, name) of the first request input holding a NUL, or None."""
    if NUL in request.path_info:
        for name, value in view_kwargs.items():
            if isinstance(value, str) and NUL in value:
                return "path", name
        return "path", "path"
    raw_query = request.META.get("QUERY_STRING", "")
    if "%00" in raw_query or NUL in raw_query:
        bad = _first_bad(request.GET.lists())
        if bad is not None:
            return "query", bad
    content_type = request.content_type or ""
    # Pages only: DRF parses API bodies itself and its fields refuse NUL (and CSRF
    # has already read page forms, so reading them here costs nothing more).
    if not is_api(request) and request.method == "POST" and content_type in FORM_TYPES:
        bad = _first_bad(request.POST.lists())
        if bad is not None:
            return "form", bad
    return None


class NulInputMiddleware:
    """A 400 naming the parameter for any NUL in the path, the query string or a page's form."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        found = nul_parameter(request, view_kwargs)
        if found is None:
            return None
        where, name = found
        if is_api(request):
            return JsonResponse({name: [MESSAGE]}, status=400)
        label = {"path": "path parameter", "query": "query parameter", "form": "form field"}[where]
        context = {"message": f"The {label} {name!r} must not contain NUL characters.", "field": name}
        return TemplateResponse(request, "tunixrt/bad_request.html", context, status=400).render()
