"""Human review of traces: ratings, comments and labels, one trace at a time or in bulk.

The rules for what a rating, a label or a comment may be live here once and
are used by the API, the pages and the exports alike. Every change is all or
nothing: a request with one bad value stores none of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.db.models.deletion import ProtectedError
from django.utils import timezone

from traces.choices import Rating
from traces.models import Dataset, Trace, TraceInUse, TraceLabel, TraceReview, current_rating_subquery
from tunixrt.roles import Action, can, explain

LABEL_MAX = 64
LABELS_MAX = 20
COMMENT_MAX = 5000
BULK_MAX = 1000
BULK_ACTIONS = ("label", "rate", "delete")
RATING_FILTERS = (*Rating.values, "unrated")

Errors = dict[str, list[str]]


class ReviewInvalid(ValueError):
    """The review or bulk request is invalid; `errors` maps field names to messages."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def clean_rating(value: Any) -> str:
    """`good` or `bad`; "" (or None) clears the rating. Raises ReviewInvalid naming `rating`."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value not in Rating.values:
        raise ReviewInvalid({"rating": [f"Must be one of {', '.join(Rating.values)}, or empty to clear."]})
    return value


def check_label(label: str) -> str | None:
    """Why `label` (already stripped) is not a label, or None when it is one."""
    if not label:
        return "A label cannot be empty."
    if len(label) > LABEL_MAX:
        return f"A label has at most {LABEL_MAX} characters ({label[:20]!r}… has {len(label)})."
    # Control characters (NUL among them: PostgreSQL refuses it) and commas, which the pages split on.
    if any(ord(c) < 32 or ord(c) == 127 for c in label) or "," in label:
        return f"{label!r} holds a comma or a control character."
    return None


def split_labels(text: str) -> list[str]:
    """The labels typed into a page's text box, separated by commas."""
    return [part for part in text.split(",") if part.strip()]


def clean_labels(value: Any, name: str = "labels") -> list[str]:
    """A list of labels, stripped and deduplicated."""
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise ReviewInvalid({name: ["Must be a list of labels (strings)."]})
    labels = list(dict.fromkeys(v.strip() for v in value))
    if len(labels) > LABELS_MAX:
        raise ReviewInvalid({name: [f"At most {LABELS_MAX} labels at once."]})
    problems = [p for p in (check_label(label) for label in labels) if p]
    if problems:
        raise ReviewInvalid({name: problems})
    return labels


def clean_comment(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReviewInvalid({"comment": ["Must be text."]})
    if len(value) > COMMENT_MAX:
        raise ReviewInvalid({"comment": [f"At most {COMMENT_MAX:,} characters."]})
    if "\x00" in value:
        raise ReviewInvalid({"comment": ["Null characters are not allowed."]})
    return value.strip()


@dataclass(slots=True)
class ReviewChange:
    """What one request changes: None leaves the rating or comment as it was."""

    rating: str | None = None
    comment: str | None = None
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)


REVIEW_FIELDS = ("rating", "comment", "labels", "remove_labels")


def parse_review(data: Mapping[str, Any]) -> ReviewChange:
    """Check a review request (API body or page form); raise ReviewInvalid naming every bad field."""
    errors: Errors = {}
    for key in data:
        if key not in REVIEW_FIELDS:
            errors[str(key)] = ["Unknown field."]
    change = ReviewChange()
    for name in REVIEW_FIELDS:
        if name not in data:
            continue
        try:
            if name == "rating":
                change.rating = clean_rating(data[name])
            elif name == "comment":
                change.comment = clean_comment(data[name])
            elif name == "labels":
                change.add = clean_labels(data[name])
            else:
                change.remove = clean_labels(data[name], "remove_labels")
        except ReviewInvalid as exc:
            errors.update(exc.errors)
    if not errors and change == ReviewChange():
        errors["non_field_errors"] = [f"Give at least one of {', '.join(REVIEW_FIELDS)}."]
    if errors:
        raise ReviewInvalid(errors)
    return change


def review_trace(trace: Trace, user: Any, change: ReviewChange) -> None:
    """Apply `change` as `user`'s review of `trace`, all at once.

    Removing a label someone else added needs the right to change their work
    (a maintainer); a member may remove their own. Raises ReviewInvalid naming
    `remove_labels` (nothing stored) otherwise.
    """
    now = timezone.now()
    with transaction.atomic():
        if change.remove:
            present = list(TraceLabel.objects.filter(trace=trace, label__in=change.remove))
            refused = [lab.label for lab in present if not can(user, Action.CHANGE, lab)]
            if refused:
                raise ReviewInvalid(
                    {"remove_labels": [f"Only who added {', '.join(refused)} or a maintainer may remove it."]}
                )
            TraceLabel.objects.filter(pk__in=[lab.pk for lab in present]).delete()
        if change.add:
            TraceLabel.objects.bulk_create(
                [TraceLabel(trace=trace, label=label, created_by=user, created_at=now) for label in change.add],
                ignore_conflicts=True,
            )
        if change.rating or change.comment or (
            (change.rating is not None or change.comment is not None)
            and TraceReview.objects.filter(trace=trace, user=user).exists()
        ):
            # An empty rating and comment from someone who never reviewed stores nothing.
            review, _ = TraceReview.objects.select_for_update().get_or_create(
                trace=trace, user=user, defaults={"created_at": now}
            )
            if change.rating is not None and change.rating != review.rating:
                review.rating = change.rating
                review.rated_at = now if change.rating else None
            if change.comment is not None:
                review.comment = change.comment
            review.updated_at = now
            review.save()


def current_rating(trace: Trace) -> str | None:
    review = trace.reviews.filter(rated_at__isnull=False).order_by("-rated_at", "-id").first()
    return review.rating if review else None


@dataclass(slots=True)
class BulkRequest:
    action: str
    ids: list[int]
    labels: list[str] = field(default_factory=list)
    rating: str = ""


def clean_ids(value: Any) -> list[int]:
    """1–BULK_MAX trace ids (positive whole numbers; from a page, numeric strings)."""
    if not isinstance(value, list) or not value:
        raise ReviewInvalid({"ids": ["Must be a non-empty list of trace ids."]})
    ids: list[int] = []
    for item in value:
        if isinstance(item, str) and item.isascii() and item.isdigit() and len(item) <= 18:
            item = int(item)
        if not isinstance(item, int) or isinstance(item, bool) or not 1 <= item < 2**63:
            raise ReviewInvalid({"ids": ["Must be a non-empty list of trace ids (positive whole numbers)."]})
        ids.append(item)
    ids = list(dict.fromkeys(ids))
    if len(ids) > BULK_MAX:
        raise ReviewInvalid({"ids": [f"At most {BULK_MAX:,} traces at once."]})
    return ids


def parse_bulk(data: Mapping[str, Any]) -> BulkRequest:
    """Check a bulk request: `action` (label, rate, delete), `ids`, and `labels` or `rating` as the action needs."""
    errors: Errors = {}
    for key in data:
        if key not in ("action", "ids", "labels", "rating"):
            errors[str(key)] = ["Unknown field."]
    action = data.get("action")
    if action not in BULK_ACTIONS:
        errors["action"] = [f"Must be one of {', '.join(BULK_ACTIONS)}."]
    request = BulkRequest(action=str(action), ids=[])
    try:
        request.ids = clean_ids(data.get("ids"))
    except ReviewInvalid as exc:
        errors.update(exc.errors)
    try:
        if action == "label":
            request.labels = clean_labels(data.get("labels"))
            if not request.labels:
                errors["labels"] = ["Give at least one label."]
        elif action == "rate":
            if "rating" not in data:
                errors["rating"] = ["This field is required (good, bad, or empty to clear)."]
            request.rating = clean_rating(data.get("rating"))
    except ReviewInvalid as exc:
        errors.update(exc.errors)
    if not errors:
        missing = missing_ids(request.ids)
        if missing:
            shown = ", ".join(str(i) for i in missing[:20])
            errors["ids"] = [f"Unknown trace ids: {shown}{' …' if len(missing) > 20 else ''}."]
    if errors:
        raise ReviewInvalid(errors)
    return request


def missing_ids(ids: Sequence[int]) -> list[int]:
    found = set(Trace.objects.filter(pk__in=ids).values_list("pk", flat=True))
    return [i for i in ids if i not in found]


def bulk_label(ids: Sequence[int], labels: Sequence[str], user: Any) -> int:
    """Put every label on every trace (those already there stay as they were); returns the labels added."""
    now = timezone.now()
    with transaction.atomic():
        before = TraceLabel.objects.filter(trace_id__in=ids, label__in=labels).count()
        TraceLabel.objects.bulk_create(
            [
                TraceLabel(trace_id=trace_id, label=label, created_by=user, created_at=now)
                for trace_id, label in itertools.product(ids, labels)
            ],
            ignore_conflicts=True,
        )
        return TraceLabel.objects.filter(trace_id__in=ids, label__in=labels).count() - before


def bulk_rate(ids: Sequence[int], rating: str, user: Any) -> int:
    """Set `user`'s rating of every trace (their comments stay); returns how many traces."""
    for attempt in range(3):
        try:
            return _bulk_rate_once(ids, rating, user)
        except IntegrityError:
            # The same user's other request created one of these reviews between our read and insert.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _bulk_rate_once(ids: Sequence[int], rating: str, user: Any) -> int:
    now = timezone.now()
    with transaction.atomic():
        existing = {
            r.trace_id: r for r in TraceReview.objects.select_for_update().filter(trace_id__in=ids, user=user)
        }
        changed: list[TraceReview] = []
        new: list[TraceReview] = []
        for trace_id in ids:
            review = existing.get(trace_id)
            if review is None:
                if rating:
                    new.append(
                        TraceReview(trace_id=trace_id, user=user, rating=rating, rated_at=now,
                                    created_at=now, updated_at=now)
                    )
            elif review.rating != rating:
                review.rating = rating
                review.rated_at = now if rating else None
                review.updated_at = now
                changed.append(review)
        TraceReview.objects.bulk_create(new)
        TraceReview.objects.bulk_update(changed, ["rating", "rated_at", "updated_at"])
    return len(ids)


@dataclass(slots=True)
class BulkDeleteResult:
    deleted: list[int] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def bulk_delete(ids: Sequence[int], user: Any) -> BulkDeleteResult:
    """Delete the traces `user` may delete and no dataset holds; the others are refused with the reason."""
    result = BulkDeleteResult()
    traces = list(Trace.objects.filter(pk__in=ids).only("id", "created_by").order_by("id"))
    in_datasets: dict[int, list[str]] = {}
    rows = (
        Dataset.objects.filter(members__trace_id__in=[t.pk for t in traces])
        .values_list("members__trace_id", "name", "version")
        .order_by("members__trace_id", "name", "version")
        .distinct()
    )
    for trace_id, name, version in rows:
        in_datasets.setdefault(trace_id, []).append(f"{name}@v{version}")
    deletable: list[Trace] = []
    for trace in traces:
        if not can(user, Action.CHANGE, trace):
            result.refused.append({"id": trace.pk, "reason": explain(user, Action.CHANGE, trace)})
        elif trace.pk in in_datasets:
            keys = in_datasets[trace.pk]
            result.refused.append({"id": trace.pk, "reason": str(TraceInUse(keys)), "datasets": keys})
        else:
            deletable.append(trace)
    try:
        with transaction.atomic():
            Trace.objects.filter(pk__in=[t.pk for t in deletable]).delete()
        result.deleted = [t.pk for t in deletable]
    except ProtectedError:
        # A build took some of them since the check above: delete one at a time, refusing those.
        for trace in deletable:
            try:
                trace.delete()
            except TraceInUse as exc:
                result.refused.append({"id": trace.pk, "reason": str(exc), "datasets": exc.keys})
            else:
                result.deleted.append(trace.pk)
        result.refused.sort(key=lambda r: r["id"])
    return result


def review_summaries(trace_ids: Iterable[int] | QuerySet[Any]) -> dict[int, dict[str, Any]]:
    """`{"rating": …, "labels": […]}` for each of these traces that has a rating or labels (two queries).

    `trace_ids`: ids, or a queryset of them (used as a subquery).
    """
    ids = trace_ids if isinstance(trace_ids, QuerySet) else list(trace_ids)
    summaries: dict[int, dict[str, Any]] = {}
    ratings = (
        TraceReview.objects.filter(trace_id__in=ids, rated_at__isnull=False)
        .order_by("trace_id", "-rated_at", "-id")
        .values_list("trace_id", "rating")
    )
    for trace_id, rating in ratings:
        summaries.setdefault(trace_id, {"rating": rating, "labels": []})
    labels = TraceLabel.objects.filter(trace_id__in=ids).order_by("trace_id", "label").values_list("trace_id", "label")
    for trace_id, label in labels:
        summaries.setdefault(trace_id, {"rating": None, "labels": []})["labels"].append(label)
    return summaries


def facets() -> dict[str, Any]:
    """How many traces have each current rating, and the 50 most used labels (over all traces)."""
    reviewed = Trace.objects.filter(reviews__rated_at__isnull=False).values("pk")
    counts = dict(
        Trace.objects.filter(pk__in=reviewed)
        .annotate(current=current_rating_subquery())
        .values_list("current")
        .annotate(n=Count("id"))
        .values_list("current", "n")
    )
    labels = (
        TraceLabel.objects.values("label").annotate(count=Count("id")).order_by("-count", "label")[:50]
    )
    return {
        "ratings": {value: counts.get(value, 0) for value in Rating.values},
        "labels": [{"label": row["label"], "count": row["count"]} for row in labels],
    }
