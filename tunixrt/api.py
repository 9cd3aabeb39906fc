"""DRF plumbing shared by every app: fast JSON in and out, uniform errors."""

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
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
        return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)


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
