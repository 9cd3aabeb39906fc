"""The trace API: capture (single and batch), browse, score, compare, delete."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from traces import exploring, searchindex
from traces.api import reads
from traces.api.serializers import (
    BulkRequestSerializer,
    BulkResultSerializer,
    FacetsSerializer,
    LabelSerializer,
    ReviewRequestSerializer,
    ReviewSerializer,
    ReviewStateSerializer,
    ScoreRequestSerializer,
    ScoreSerializer,
    TraceBatchCreatedSerializer,
    TraceBatchInputSerializer,
    TraceCompareSerializer,
    TraceCreatedSerializer,
    TraceDetailSerializer,
    TraceInputSerializer,
    TraceListSerializer,
    TraceSummarySerializer,
)
from traces.filters import TraceFilter
from traces.labelling import (
    ReviewInvalid,
    bulk_delete,
    bulk_label,
    bulk_rate,
    current_rating,
    facets,
    parse_bulk,
    parse_review,
    review_trace,
)
from traces.models import IngestResult, Trace, TraceInUse
from traces.validation import CleanTrace, TraceInvalid, validate_trace
from tunixrt.api import PayloadTooLarge, names_a_filter
from tunixrt.pagination import KeysetPagination
from tunixrt.roles import Action


def require_body_within(request: Request, limit: int, what: str) -> None:
    """413 before parsing when the body is larger than `limit` bytes."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit or len(request._request.body) > limit:
        raise PayloadTooLarge(f"{what} is larger than {limit:,} bytes.")


def created_payload(result: IngestResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "created_at": reads.datetime_text(result.created_at),  # as every read writes it (DRF's format)
        "trace_version": result.trace_version,
    }


class TraceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Trace],
):
    """Reasoning traces. Traces are immutable: capture again to change one."""

    queryset = Trace.objects.all()
    filterset_class = TraceFilter
    pagination_class = KeysetPagination
    keyset_orders = exploring.ORDERS
    role_actions = {
        "create": Action.CREATE,
        "batch": Action.CREATE,
        "score": Action.CREATE,
        "destroy": Action.CHANGE,
        # Reviewing is a member's work; deleting in bulk checks CHANGE trace by trace (traces.labelling).
        "review": Action.CREATE,
        "bulk": Action.CREATE,
    }

    def get_queryset(self) -> QuerySet[Trace]:
        if self.action == "list":
            fields = self.list_fields()
            queryset = Trace.objects.get_queryset()
            if "rating" in fields or "labels" in fields:
                queryset = queryset.with_review()
            # Named tuples, not model instances: half the Python per row.
            return queryset.values_list(*reads.list_values(fields), named=True)
        return Trace.objects.all()

    def fetch_page(self, queryset: Any) -> list[Any]:
        """How KeysetPagination reads a page: a list page's rows as prepared named tuples."""
        if self.action != "list":
            return list(queryset)
        return reads.fetch_rows(queryset, remember=getattr(self, "_first_page_key", None))

    def list_fields(self) -> tuple[str, ...]:
        """What each list item carries: `?fields=` (400 naming `fields` for an unknown name) or the list's columns."""
        if not hasattr(self, "_list_fields"):
            self._list_fields = reads.parse_fields(self.request.query_params.get("fields"))
        return self._list_fields

    def get_serializer_class(self) -> type[Any]:
        if self.action == "list":
            return TraceListSerializer
        if self.action == "create":
            return TraceInputSerializer
        return TraceDetailSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "fields",
                str,
                description="Comma-separated fields of each item, from: "
                + ", ".join(reads.LIST_FIELDS)
                + ". Default: "
                + ", ".join(reads.LIST_DEFAULT)
                + " (what the trace list shows; `url` links to the whole trace).",
            )
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        fields = self.list_fields()
        filtered = names_a_filter(request.query_params, TraceFilter)
        self._first_page_key = None if filtered else reads.first_page_key(request.query_params, fields)
        remembered = reads.remembered_page(self._first_page_key)
        page: list[Any] | None
        if remembered is not None:  # an unfiltered first page served before: its SQL as it was compiled
            paginator = cast(KeysetPagination, self.paginator)
            page = paginator.paginate_rows(reads.run_rows(*remembered), request, self)
        else:
            page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None  # KeysetPagination always pages
        prefix = request.build_absolute_uri(reads.detail_path_prefix())
        response = self.get_paginated_response(reads.list_items(page, fields, prefix))
        if request.query_params.get("q", "").strip():
            # Bulk captures become searchable a few seconds after they are stored (traces.searchindex).
            cap = searchindex.SEARCH_BACKLOG_CAP
            pending = searchindex.backlog(cap)
            if pending:
                response["Search-Backlog"] = f"{cap}+" if pending >= cap else str(pending)
        return response

    @extend_schema(responses={200: TraceDetailSerializer, 404: dict})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raw = str(kwargs.get("pk", ""))
        # Malformed ids, and whole numbers too large for any id, name no trace.
        document = reads.detail(int(raw)) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
        if document is None:
            raise Http404("No trace matches the given query.")
        return Response(document)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Read (and size-check) a capture's body before authentication: a session's CSRF check
        # parses the request, after which Django no longer hands out the raw body (a 500 before).
        if self.action == "create":
            require_body_within(request, settings.TRACE_MAX_BYTES, "The trace")
        elif self.action == "batch":
            require_body_within(request, settings.TRACE_BATCH_MAX_BYTES, "The batch")
        super().initial(request, *args, **kwargs)

    @extend_schema(responses={204: None, 409: dict}, summary="Delete a trace (409 while a dataset holds it)")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        trace = self.get_object()
        try:
            trace.delete()
        except TraceInUse as exc:
            return Response({"detail": str(exc), "datasets": exc.keys}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=TraceInputSerializer,
        responses={201: TraceCreatedSerializer, 200: TraceCreatedSerializer},
        summary="Capture one trace (200 with the existing id if identical to a stored one)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = TraceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        clean: CleanTrace = serializer.validated_data
        result = Trace.objects.ingest([clean], request.user)[0]
        return Response(
            created_payload(result),
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=TraceBatchInputSerializer,
        responses={201: TraceBatchCreatedSerializer, 200: TraceBatchCreatedSerializer},
        summary="Capture 1–1,000 traces at once, all or nothing",
    )
    @action(detail=False, methods=["post"])
    def batch(self, request: Request) -> Response:
        data = request.data
        items = data["traces"] if isinstance(data, dict) and list(data) == ["traces"] else data
        limit = settings.TRACE_BATCH_MAX_ITEMS
        if not isinstance(items, list):
            raise ValidationError({"traces": ['Expected a JSON array of traces, or {"traces": [...]}.']})
        if not 1 <= len(items) <= limit:
            raise ValidationError({"traces": [f"Send between 1 and {limit:,} traces (got {len(items)})."]})
        max_bytes = settings.TRACE_MAX_BYTES
        cleans: list[CleanTrace] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                clean = validate_trace(item)
            except TraceInvalid as exc:
                errors.append({"index": index, "errors": exc.errors})
                continue
            if clean.size > max_bytes:
                too_big = {"non_field_errors": [f"Trace is larger than {max_bytes:,} bytes."]}
                errors.append({"index": index, "errors": too_big})
            cleans.append(clean)
        if errors:
            detail = f"{len(errors)} of {len(items)} traces are invalid; nothing was stored."
            return Response({"detail": detail, "items": errors}, status=status.HTTP_400_BAD_REQUEST)
        # Done with the parsed body: free it now. Left in `request.data` it would live until the
        # cyclic collector reaches the request (DRF's request and view refer to each other),
        # often several requests later, and a worker's memory would grow by a batch each.
        items.clear()
        results = Trace.objects.ingest(cleans, request.user)
        created = sum(r.created for r in results)
        return Response(
            {"ids": [r.id for r in results], "created": created, "duplicates": len(results) - created},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(request=ScoreRequestSerializer, responses=ScoreSerializer, summary="Score a trace")
    @action(detail=True, methods=["post"])
    def score(self, request: Request, pk: str | None = None) -> Response:
        trace = self.get_object()
        params = ScoreRequestSerializer(data=request.data if request.data else {})
        params.is_valid(raise_exception=True)
        score = trace.score(params.validated_data["criteria"])
        return Response(ScoreSerializer(score).data)

    @extend_schema(
        request=ReviewRequestSerializer,
        responses={200: ReviewStateSerializer},
        summary="Rate, comment on and label a trace as yourself (omitted fields stay as they were)",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def review(self, request: Request, pk: str | None = None) -> Response:
        trace = self.get_object()
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
        try:
            review_trace(trace, request.user, parse_review(request.data))
        except ReviewInvalid as exc:
            raise ValidationError(exc.errors) from None
        return Response(review_state(trace))

    @extend_schema(
        request=BulkRequestSerializer,
        responses={200: BulkResultSerializer},
        summary="Label, rate or delete up to 1,000 traces at once (delete refuses, with the reason, "
        "traces in a dataset or not yours)",
        filters=False,
    )
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None)
    def bulk(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
        try:
            bulk = parse_bulk(request.data)
        except ReviewInvalid as exc:
            raise ValidationError(exc.errors) from None
        body: dict[str, Any] = {"action": bulk.action, "ids": bulk.ids}
        if bulk.action == "label":
            body["added"] = bulk_label(bulk.ids, bulk.labels, request.user)
        elif bulk.action == "rate":
            bulk_rate(bulk.ids, bulk.rating, request.user)
        else:
            result = bulk_delete(bulk.ids, request.user)
            body.update(deleted=result.deleted, refused=result.refused)
        return Response(body)

    @extend_schema(
        responses=FacetsSerializer, summary="Traces per current rating, and the most used labels", filters=False
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def facets(self, request: Request) -> Response:
        return Response(facets())

    @extend_schema(
        responses=TraceSummarySerializer,
        summary="How many traces match the filters (exact up to 100,000), and their top sources and tags",
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def summary(self, request: Request) -> Response:
        queryset = self.filter_queryset(Trace.objects.all())
        matching = exploring.count_matching(queryset)
        return Response({**matching.as_dict(), **exploring.facets(queryset, matching)})

    @extend_schema(
        parameters=[
            OpenApiParameter("base", int, required=True),
            OpenApiParameter("other", int, required=True),
        ],
        responses={200: TraceCompareSerializer, 404: dict},
        summary="Two traces side by side, with their scores (404 when either is unknown)",
        filters=False,
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def compare(self, request: Request) -> Response:
        ids: dict[str, int] = {}
        errors: dict[str, list[str]] = {}
        for name in ("base", "other"):
            raw = request.query_params.get(name, "")
            # isdigit() alone accepts "²" (which int() rejects) and other non-ASCII digits.
            if not (raw.isascii() and raw.isdigit()):
                errors[name] = ["A trace id (a whole number) is required."]
            else:
                # A whole number too large for any id names no trace (and int() refuses > 4,300 digits).
                ids[name] = int(raw) if len(raw) <= 19 else 0
        if errors:
            raise ValidationError(errors)
        base = get_object_or_404(Trace, pk=ids["base"])
        other = get_object_or_404(Trace, pk=ids["other"])
        for trace in (base, other):
            trace.ensure_scores()
        return Response(TraceCompareSerializer({"base": base, "other": other}).data)


def review_state(trace: Trace) -> dict[str, Any]:
    reviews = trace.reviews.select_related("user").order_by("-updated_at", "-id")
    labels = trace.labels.select_related("created_by").order_by("label")
    return {
        "id": trace.pk,
        "rating": current_rating(trace),
        "labels": LabelSerializer(labels, many=True).data,
        "reviews": ReviewSerializer(reviews, many=True).data,
    }
