"""Keyset ("cursor") pagination over `(created_at, id)`, newest first.

A page is fetched with `WHERE (created_at, id) < (cursor)` on the composite
index, so page 25,000 costs the same as page 1 and rows inserted between
requests neither repeat nor shift later pages. No COUNT is ever run.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections import OrderedDict
from typing import Any

from django.db import models
from django.db.models import F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleLessThan
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_ID = 2**63 - 1  # a cursor may carry any integer; ids are 64-bit


class InvalidPage(ValueError):
    """A bad `cursor` or `limit`; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def encode_cursor(created_at: dt.datetime, pk: int) -> str:
    raw = f"{created_at.isoformat()}|{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|")
        created_at = dt.datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        # In UTC: out of range there (year 9999 at -05:00) is an OverflowError, and PostgreSQL
        # refuses the offsets beyond ±15:59 that Python accepts in a crafted cursor.
        return created_at.astimezone(dt.UTC), int(pk)
    except (ValueError, OverflowError, UnicodeDecodeError, binascii.Error):
        raise InvalidPage("cursor", "Invalid cursor.") from None


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidPage("limit", "A whole number is required.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidPage("limit", f"Ensure this value is between 1 and {MAX_LIMIT:,}.")
    return limit


def keyset_page[M: models.Model](
    queryset: QuerySet[M], cursor: str | None, limit: int
) -> tuple[list[M], str | None]:
    """One page of `queryset` newest first, after `cursor`; returns rows and the next cursor."""
    qs = queryset.order_by("-created_at", "-id")
    if cursor:
        created_at, pk = decode_cursor(cursor)
        # `(created_at, id) < (x, pk)` as one row comparison is an index condition
        # on (created_at DESC, id DESC): the scan starts right after the cursor
        # row, even inside a run of equal timestamps (an import batch shares one,
        # and `created_at < x OR id < pk` fetched and dropped the whole run).
        if pk > MAX_ID:  # every id is smaller
            qs = qs.filter(created_at__lte=created_at)
        elif pk < -MAX_ID - 1:  # no id is smaller
            qs = qs.filter(created_at__lt=created_at)
        else:
            qs = qs.filter(created_at__lte=created_at).filter(
                TupleLessThan(Tuple(F("created_at"), F("id")), (created_at, pk))
            )
    rows = list(qs[: limit + 1])
    if len(rows) > limit:
        rows = rows[:limit]
        last: Any = rows[-1]
        return rows, encode_cursor(last.created_at, last.pk)
    return rows, None


class KeysetPagination(BasePagination):
    """DRF pagination using `keyset_page`; `?limit=1..100&cursor=…`."""

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        try:
            limit = parse_limit(request.query_params.get("limit"))
            rows, self.next_cursor = keyset_page(queryset, request.query_params.get("cursor"), limit)
        except InvalidPage as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        self.request = request
        return rows

    def get_next_link(self) -> str | None:
        if self.next_cursor is None:
            return None
        return replace_query_param(self.request.build_absolute_uri(), "cursor", self.next_cursor)

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            OrderedDict(
                [("next", self.get_next_link()), ("next_cursor", self.next_cursor), ("results", data)]
            )
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "next_cursor": {"type": "string", "nullable": True},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "The `next_cursor` of the previous page.",
                "schema": {"type": "string"},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"Page size, 1–{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        ]
