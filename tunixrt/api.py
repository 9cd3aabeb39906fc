"""DRF plumbing shared by every app: fast JSON in and out, uniform errors."""

import base64
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings
from django.http import Http404
from django.utils.csp import CSP
from django.utils.http import parse_header_parameters
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from tunixrt.errors import DATABASE_RETRY_AFTER_SECONDS, DATABASE_UNAVAILABLE, INTERNAL_ERROR, is_database_outage

logger = logging.getLogger("django.request")  # where Django logs the 500s it answers itself


class OrjsonParser(BaseParser):
    """application/json parsed with orjson (several times faster than json)."""

    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return orjson.loads(stream.read())
        except orjson.JSONDecodeError as exc:
            raise exceptions.ParseError(f"Malformed JSON: {exc}") from None


class OrjsonRenderer(BaseRenderer):
    """application/json rendered with orjson."""

    media_type = "application/json"
    format = "json"
    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        body = orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        if indent:
            # orjson indents by 2 only; asked for another width (the browsable API asks for 4),
            # re-indent what orjson wrote, so values look the same as in the compact answer.
            body = json.dumps(orjson.loads(body), indent=indent, ensure_ascii=False).encode()
        return body

    @staticmethod
    def get_indent(accepted_media_type: str | None, renderer_context: Mapping[str, Any]) -> int | None:
        """As DRF's JSONRenderer: `Accept: application/json; indent=N` (0–8), else the context's `indent`."""
        if accepted_media_type:
            _, params = parse_header_parameters(accepted_media_type)
            try:
                return max(min(int(params["indent"]), 8), 0) or None
            except (KeyError, ValueError, TypeError):
                pass
        indent = renderer_context.get("indent")
        return indent if isinstance(indent, int) and indent > 0 else None


# The only inline style DRF's templates keep (on its filter and format buttons); the rest of
# its page is served from static/ or overridden in templates/rest_framework/api.html.
DRF_STYLE_ATTRIBUTES = ("float: right; margin-right: 10px",)


def _style_hash(style: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"


class BrowsableAPIPolicyRenderer(BrowsableAPIRenderer):
    """DRF's browsable API, under a CSP that lets its own page work.

    The app's policy allows no inline style; DRF's template puts `style="…"` attributes on
    two buttons. Only these HTML answers allow them, by hash: exactly those attributes,
    no other inline style, and scripts stay same-origin only.
    """

    csp_style_attr = [CSP.UNSAFE_HASHES, *map(_style_hash, DRF_STYLE_ATTRIBUTES)]

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> Any:
        html = super().render(data, accepted_media_type, renderer_context)
        response = (renderer_context or {}).get("response")
        if response is not None:
            response._csp_config = {**settings.SECURE_CSP, "style-src-attr": self.csp_style_attr}
        return html


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with JSON for everything an API view can raise.

    A plain `{"detail": "Not found."}` for every 404; a 503 with `Retry-After` when
    the database is down (the token or session lookup is usually the first to
    notice); any other unexpected exception a logged JSON 500, with DEBUG on as
    well: API clients parse JSON, and the traceback is in the log.
    """
    if isinstance(exc, Http404):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    set_rollback()
    request = context.get("request")
    path = getattr(request, "path", "")
    if is_database_outage(exc):
        logger.warning("Service Unavailable (database): %s: %s", path, exc)
        return Response(
            {"detail": DATABASE_UNAVAILABLE},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    logger.error(
        "Internal Server Error: %s",
        path,
        exc_info=exc,
        extra={"status_code": 500, "request": getattr(request, "_request", request)},
    )
    return Response({"detail": INTERNAL_ERROR}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered at once for what API clients send: no Accept, `*/*` or JSON.

    Parsing and ranking the Accept header against every renderer cost ~40 µs a request; for
    those three the answer is always the first renderer (JSON). Browsers (text/html), `?format=`
    and anything else take DRF's path unchanged.
    """

    PLAIN = frozenset({"", "*/*", "application/json"})

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        first = renderers[0] if renderers else None
        if (
            first is not None
            and first.media_type == "application/json"
            and not format_suffix
            and request.META.get("HTTP_ACCEPT", "").strip() in self.PLAIN
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)


class FilterBackend(DjangoFilterBackend):  # type: ignore[misc]
    """django-filter's backend, skipped when the request names none of the view's filters.

    With no filter in the query string the FilterSet filters nothing, but building and
    validating its form still cost ~1 ms of every unfiltered list page.
    """

    def filter_queryset(self, request: Request, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None and not names_a_filter(request.query_params, filterset_class):
            return queryset
        return super().filter_queryset(request, queryset, view)


def names_a_filter(query_params: Any, filterset_class: Any) -> bool:
    """Whether the query string names any filter of `filterset_class` (with none, it filters nothing)."""
    return any(name in query_params for name in filterset_class.base_filters)
