"""Keyset ("cursor") pagination over `(created_at, id)` newest first, or another order.

A page is fetched with `WHERE (created_at, id) < (cursor)` on the composite
index, so page 25,000 costs the same as page 1 and rows inserted between
requests neither repeat nor shift later pages. No COUNT is ever run.

Other orders (`Order`: oldest first, by step count) work the same way on their
own `(field, id)` index; a cursor carries the last row's value of the field.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_ID = 2**63 - 1  # a cursor may carry any integer; ids are 64-bit


class InvalidPage(ValueError):
    """A bad `cursor`, `limit` or `sort`; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Order:
    """A keyset order: `field` then id, both descending or both ascending."""

    key: str
    label: str
    field: str = "created_at"
    descending: bool = True

    @property
    def order_by(self) -> tuple[str, str]:
        sign = "-" if self.descending else ""
        return (f"{sign}{self.field}", f"{sign}id")

    def reversed(self) -> Order:
        return Order(self.key, self.label, self.field, not self.descending)


NEWEST = Order("newest", "newest first")


def _encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def encode_cursor(created_at: dt.datetime, pk: int) -> str:
    return _encode(f"{created_at.isoformat()}|{pk}")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    value, pk = _decode(cursor, "created_at")
    assert isinstance(value, dt.datetime)
    return value, pk


def _cursor_for(row: Any, order: Order) -> str:
    value = getattr(row, order.field)
    text = value.isoformat() if isinstance(value, dt.datetime) else str(int(value))
    return _encode(f"{text}|{row.pk}")


def _decode(cursor: str, field: str) -> tuple[dt.datetime | int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        text, pk = raw.split("|")
        if field != "created_at":
            number = int(text)
            if not 0 <= number <= 2**31 - 1:  # the counted columns are 32-bit
                raise ValueError("out of range")
            return number, int(pk)
        created_at = dt.datetime.fromisoformat(text)
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


def parse_order(raw: str | None, orders: dict[str, Order]) -> Order:
    """The order named by `?sort=` (the first of `orders` when absent)."""
    if not raw:
        return next(iter(orders.values()))
    try:
        return orders[raw]
    except KeyError:
        raise InvalidPage("sort", f"Choose one of: {', '.join(orders)}.") from None


def after[M: models.Model](queryset: QuerySet[M], order: Order, value: Any, pk: int) -> QuerySet[M]:
    """The rows that come after `(value, pk)` in `order`, in that order."""
    qs = queryset.order_by(*order.order_by)
    field = order.field
    if order.descending:
        # `(field, id) < (x, pk)` as one row comparison is an index condition on
        # (field DESC, id DESC): the scan starts right after the cursor row, even
        # inside a run of equal values (an import batch shares one timestamp, and
        # `field < x OR id < pk` fetched and dropped the whole run).
        if pk > MAX_ID:  # every id is smaller
            return qs.filter(**{f"{field}__lte": value})
        if pk < -MAX_ID - 1:  # no id is smaller
            return qs.filter(**{f"{field}__lt": value})
        return qs.filter(**{f"{field}__lte": value}).filter(TupleLessThan(Tuple(F(field), F("id")), (value, pk)))
    if pk > MAX_ID:  # no id is larger
        return qs.filter(**{f"{field}__gt": value})
    if pk < -MAX_ID - 1:  # every id is larger
        return qs.filter(**{f"{field}__gte": value})
    return qs.filter(**{f"{field}__gte": value}).filter(TupleGreaterThan(Tuple(F(field), F("id")), (value, pk)))


def keyset_page[M: models.Model](
    queryset: QuerySet[M], cursor: str | None, limit: int, order: Order = NEWEST, fetch: Any = list
) -> tuple[list[M], str | None]:
    """One page of `queryset` in `order` (newest first), after `cursor`; returns rows and the next cursor.

    `fetch` runs the page's query (a view may read its rows its own way).
    """
    if cursor:
        value, pk = _decode(cursor, order.field)
        qs = after(queryset, order, value, pk)
    else:
        qs = queryset.order_by(*order.order_by)
    return trim_page(list(fetch(qs[: limit + 1])), limit, order)


def trim_page(rows: list[Any], limit: int, order: Order) -> tuple[list[Any], str | None]:
    """Up to `limit + 1` rows read in `order` -> the page's rows and the cursor of the next page (None: last page)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, _cursor_for(rows[-1], order)
    return rows, None


class KeysetPagination(BasePagination):
    """DRF pagination using `keyset_page`; `?limit=1..100&cursor=…`, and `?sort=` where the view
    names its orders in `keyset_orders`."""

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        limit, order = self.limit_and_order(request, view)
        fetch = getattr(view, "fetch_page", list)
        try:
            rows, self.next_cursor = keyset_page(queryset, request.query_params.get("cursor"), limit, order, fetch)
        except InvalidPage as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        self.request = request
        return rows

    def paginate_rows(self, rows: list[Any], request: Request, view: Any = None) -> list[Any]:
        """A first page the view read itself: up to `limit + 1` rows in the requested order."""
        limit, order = self.limit_and_order(request, view)
        rows, self.next_cursor = trim_page(rows, limit, order)
        self.request = request
        return rows

    @staticmethod
    def limit_and_order(request: Request, view: Any) -> tuple[int, Order]:
        """`?limit=` and `?sort=` (from the view's `keyset_orders`), or a 400 naming the parameter."""
        orders = getattr(view, "keyset_orders", None) or {NEWEST.key: NEWEST}
        try:
            return parse_limit(request.query_params.get("limit")), parse_order(request.query_params.get("sort"), orders)
        except InvalidPage as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None

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
        orders: dict[str, Order] = getattr(view, "keyset_orders", None) or {}
        sort = (
            [
                {
                    "name": "sort",
                    "in": "query",
                    "required": False,
                    "description": "; ".join(f"`{o.key}`: {o.label}" for o in orders.values()),
                    "schema": {"type": "string", "enum": list(orders)},
                }
            ]
            if orders
            else []
        )
        return [
            *sort,
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
