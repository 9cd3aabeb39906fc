"""Building datasets: validate a build spec, select traces in the database, freeze them.

Selection runs as one `INSERT … SELECT` over every matching trace (never a
sample in Python), ordered by the strategy: newest first, oldest first, or a
seeded hash of the trace id for `random`, so the same inputs and seed give the
same membership in any process. The validation split takes the first
`round(n × fraction)` members by a second seeded hash.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Avg, Count, Max, Min, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.text import slugify

from traces.choices import DatasetStatus, DatasetStrategy, Split
from traces.filters import TraceFilter
from traces.models import Dataset, DatasetMember, DatasetName, Trace
from tunixrt import jobs

logger = logging.getLogger(__name__)

FILTER_FIELDS = (
    "q", "source", "tag", "created_after", "created_before", "min_steps", "max_steps", "rating", "label",
)
MAX_LIMIT = 1_000_000
MAX_TRACE_IDS = 1_000_000
SEED_MAX = 2**31 - 1
NAME_MAX = 100
DESCRIPTION_MAX = 2000
CHARS_PER_TOKEN = 4
SAMPLE_SIZE = 20

Errors = dict[str, list[str]]


class BuildInvalid(ValueError):
    """The build request is invalid; `errors` maps field names to messages."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class NoTracesMatch(BuildInvalid):
    def __init__(self) -> None:
        super().__init__({"non_field_errors": ["No traces match."]})


@dataclass(slots=True)
class BuildSpec:
    """A validated dataset build request (stored on the dataset as `spec`)."""

    name: str
    description: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    trace_ids: list[int] | None = None
    strategy: str = DatasetStrategy.LATEST
    seed: int | None = None
    limit: int = MAX_LIMIT
    validation_fraction: float = 0.0
    validation_seed: int = 0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("name")
        data.pop("description")
        return data


def _int(errors: Errors, data: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    raw = data.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        errors[name] = ["A whole number is required."]
        return None
    try:
        value = int(raw)
        if isinstance(raw, float) and raw != value:
            raise ValueError
    except (TypeError, ValueError):
        errors[name] = ["A whole number is required."]
        return None
    if not low <= value <= high:
        errors[name] = [f"Ensure this value is between {low:,} and {high:,}."]
        return None
    return value


def validate_build_spec(data: Mapping[str, Any]) -> BuildSpec:
    """Check a build request from the API, the page or the command; raise BuildInvalid."""
    errors: Errors = {}
    known = {"name", "description", "trace_ids", "strategy", "seed", "limit",
             "validation_fraction", "validation_seed", *FILTER_FIELDS}
    for key in data:
        if key not in known:
            errors[str(key)] = ["Unknown field."]

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["This field is required."]
        name = ""
    elif len(name) > NAME_MAX or slugify(name) != name:
        example = slugify(name)[:NAME_MAX] or "my-dataset"
        errors["name"] = [
            f"Use 1–{NAME_MAX} lowercase letters, digits, hyphens or underscores (e.g. {example!r})."
        ]
    description = data.get("description") or ""
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        errors["description"] = [f"Must be text of at most {DESCRIPTION_MAX:,} characters."]
        description = ""
    elif "\x00" in description:
        errors["description"] = ["Null characters are not allowed."]
        description = ""

    strategy = data.get("strategy") or DatasetStrategy.LATEST
    if strategy not in DatasetStrategy.values:
        errors["strategy"] = [f"Must be one of {', '.join(DatasetStrategy.values)}."]
    seed = _int(errors, data, "seed", 0, SEED_MAX)
    if strategy == DatasetStrategy.RANDOM and seed is None and "seed" not in errors:
        errors["seed"] = ["A seed is required for the random strategy."]
    limit = _int(errors, data, "limit", 1, MAX_LIMIT)

    fraction = 0.0
    raw_fraction = data.get("validation_fraction")
    if raw_fraction not in (None, ""):
        try:
            if isinstance(raw_fraction, bool):
                raise ValueError
            fraction = float(raw_fraction)
            if not 0.0 <= fraction <= 0.5 or math.isnan(fraction):
                raise ValueError
        except (TypeError, ValueError):
            errors["validation_fraction"] = ["Must be a number between 0 and 0.5."]
    validation_seed = _int(errors, data, "validation_seed", 0, SEED_MAX)

    trace_ids: list[int] | None = None
    raw_ids = data.get("trace_ids")
    filters: dict[str, str] = {}
    if raw_ids not in (None, ""):
        if any(data.get(f) not in (None, "") for f in FILTER_FIELDS):
            errors["trace_ids"] = ["Give either trace_ids or filters, not both."]
        elif (
            not isinstance(raw_ids, list)
            or not raw_ids
            or any(not isinstance(i, int) or isinstance(i, bool) or i < 1 for i in raw_ids)
        ):
            errors["trace_ids"] = ["Must be a non-empty list of trace ids (positive integers)."]
        elif len(raw_ids) > MAX_TRACE_IDS:
            errors["trace_ids"] = [f"At most {MAX_TRACE_IDS:,} ids."]
        else:
            trace_ids = list(dict.fromkeys(raw_ids))
    else:
        raw_filters = {f: data[f] for f in FILTER_FIELDS if data.get(f) not in (None, "")}
        for key, value in raw_filters.items():
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                errors[key] = ["Must be a single value."]
        filters = {k: str(v) for k, v in raw_filters.items() if k not in errors}
        filterset = TraceFilter(filters, queryset=Trace.objects.all())
        if not filterset.is_valid():
            for key, messages in filterset.errors.items():
                errors[key] = [str(m) for m in messages]

    if errors:
        raise BuildInvalid(errors)
    return BuildSpec(
        name=name,
        description=description,
        filters=filters,
        trace_ids=trace_ids,
        strategy=strategy,
        seed=seed,
        limit=limit or MAX_LIMIT,
        validation_fraction=fraction,
        validation_seed=validation_seed or 0,
    )


def seeded_hash(seed: int, column: str) -> RawSQL:
    """md5('<seed>:<id>') — identical on PostgreSQL and SQLite (md5 registered there)."""
    cast = f"CAST({column} AS text)"
    return RawSQL(f"md5(%s || {cast})", (f"{seed}:",), output_field=models.CharField())  # noqa: S611


def matching(spec: BuildSpec) -> QuerySet[Trace]:
    """Every trace the spec selects from, unordered."""
    if spec.trace_ids is not None:
        return Trace.objects.filter(pk__in=spec.trace_ids)
    qs: QuerySet[Trace] = TraceFilter(spec.filters, queryset=Trace.objects.all()).qs
    return qs


def ordered_selection(spec: BuildSpec) -> QuerySet[Trace]:
    qs = matching(spec)
    if spec.strategy == DatasetStrategy.RANDOM:
        qs = qs.annotate(_k=seeded_hash(spec.seed or 0, '"traces_trace"."id"')).order_by("_k", "id")
    elif spec.strategy == DatasetStrategy.ALL:
        qs = qs.order_by("created_at", "id")
    else:
        qs = qs.order_by("-created_at", "-id")
    return qs[: spec.limit]


def count_selected(spec: BuildSpec) -> int:
    """How many traces a build of `spec` would take (the matches, capped by the limit)."""
    if spec.trace_ids is not None:
        found = matching(spec).count()
        return min(found, spec.limit)
    return matching(spec)[: spec.limit].count()


def missing_trace_ids(spec: BuildSpec) -> list[int]:
    if spec.trace_ids is None:
        return []
    wanted = set(spec.trace_ids)
    found: set[int] = set()
    ids = list(wanted)
    for start in range(0, len(ids), 10_000):
        found.update(Trace.objects.filter(pk__in=ids[start : start + 10_000]).values_list("pk", flat=True))
    return sorted(wanted - found)


def _insert_members(dataset: Dataset, spec: BuildSpec) -> int:
    """INSERT … SELECT the selection into DatasetMember, numbering positions in order."""
    if spec.strategy == DatasetStrategy.RANDOM:
        selection = ordered_selection(spec).values("id", "_k")  # type: ignore[misc]
        window = "ORDER BY sel._k, sel.id"
    elif spec.strategy == DatasetStrategy.ALL:
        selection = ordered_selection(spec).values("id", "created_at")
        window = "ORDER BY sel.created_at, sel.id"
    else:
        selection = ordered_selection(spec).values("id", "created_at")
        window = "ORDER BY sel.created_at DESC, sel.id DESC"
    sql, params = selection.query.sql_with_params()
    table = DatasetMember._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f'INSERT INTO "{table}" (dataset_id, trace_id, position, split) '  # noqa: S608 - no user text
            f"SELECT %s, sel.id, ROW_NUMBER() OVER ({window}) - 1, %s FROM ({sql}) sel",
            [dataset.pk, Split.TRAIN, *params],
        )
        inserted: int = cur.rowcount
    return inserted


def _assign_validation(dataset: Dataset, spec: BuildSpec, total: int) -> int:
    if spec.validation_fraction <= 0 or total < 2:
        return 0
    k = max(1, round(total * spec.validation_fraction))
    k = min(k, total - 1)
    chosen = (
        DatasetMember.objects.filter(dataset=dataset)
        .annotate(_v=seeded_hash(spec.validation_seed, f'"{DatasetMember._meta.db_table}"."trace_id"'))
        .order_by("_v", "trace_id")
        .values("pk")[:k]
    )
    return DatasetMember.objects.filter(pk__in=list(chosen.values_list("pk", flat=True))).update(
        split=Split.VALIDATION
    )


def compute_stats(dataset: Dataset) -> dict[str, Any]:
    members = DatasetMember.objects.filter(dataset=dataset)
    agg = members.aggregate(
        n=Count("id"),
        steps_min=Min("trace__step_count"),
        steps_max=Max("trace__step_count"),
        steps_mean=Avg("trace__step_count"),
        chars_mean=Avg("trace__char_count"),
        chars_total=Sum("trace__char_count"),
    )
    per_split = dict(members.values_list("split").annotate(n=Count("id")).values_list("split", "n"))
    chars_total = agg["chars_total"] or 0
    return {
        "count": agg["n"],
        "train": per_split.get(Split.TRAIN, 0),
        "validation": per_split.get(Split.VALIDATION, 0),
        "steps_min": agg["steps_min"],
        "steps_max": agg["steps_max"],
        "steps_mean": round(agg["steps_mean"] or 0.0, 2),
        "chars_mean": round(agg["chars_mean"] or 0.0, 1),
        "chars_total": chars_total,
        "tokens_estimate": math.ceil(chars_total / CHARS_PER_TOKEN),
    }


def populate(dataset: Dataset, spec: BuildSpec) -> None:
    """Fill a dataset's members and stats (inside the caller's transaction)."""
    total = _insert_members(dataset, spec)
    if total == 0:
        raise NoTracesMatch()
    _assign_validation(dataset, spec, total)
    dataset.stats = compute_stats(dataset)
    dataset.built_at = timezone.now()
    dataset.save(update_fields=["stats", "built_at"])


def _create_row(spec: BuildSpec, user: Any, status: str) -> Dataset:
    for _ in range(5):
        try:
            with transaction.atomic():
                return Dataset.objects.create(
                    name=spec.name,
                    version=DatasetName.allocate(spec.name),
                    description=spec.description,
                    spec=spec.as_json(),
                    status=status,
                    created_by=user if user is not None and user.is_authenticated else None,
                )
        except IntegrityError:
            continue  # another build of the same name took this version: take the next
    raise RuntimeError(f"Could not allocate a version for {spec.name!r}.")


def build_dataset(spec: BuildSpec, user: Any = None, *, inline_limit: int | None = None) -> Dataset:
    """Build `spec` into the next version of its name.

    Small builds finish here, in one transaction; builds larger than
    DATASET_INLINE_MAX traces are queued for a Celery worker and returned as
    `pending` (still pending with `awaiting_broker` when the broker is away: the
    reaper queues it later). Raises BuildInvalid (nothing created) when ids are
    unknown or nothing matches.
    """
    missing = missing_trace_ids(spec)
    if missing:
        shown = ", ".join(str(i) for i in missing[:20])
        raise BuildInvalid({"trace_ids": [f"Unknown trace ids: {shown}{' …' if len(missing) > 20 else ''}."]})
    selected = count_selected(spec)
    if selected == 0:
        raise NoTracesMatch()
    limit = settings.DATASET_INLINE_MAX if inline_limit is None else inline_limit
    if selected <= limit:
        with transaction.atomic():
            # Ready from the start: nobody sees the row before the members are in.
            dataset = _create_row(spec, user, DatasetStatus.READY)
            populate(dataset, spec)
        return dataset

    with transaction.atomic():
        dataset = _create_row(spec, user, DatasetStatus.PENDING)
        jobs.publish_on_commit(dataset)
    dataset.refresh_from_db()
    return dataset


def run_queued_build(dataset_id: int, task_id: str = "") -> str:
    """The worker side of a large build: claim the row, populate it, or record the failure.

    The build is one transaction: a worker that dies mid-build leaves nothing
    half-written, and the reaper queues the build again.
    """
    dataset: Dataset | None = jobs.claim(Dataset, dataset_id, task_id)
    if dataset is None:
        return "not pending"
    try:
        # Inside the try: a spec this code cannot read must fail the row, not leave it building.
        spec = spec_from_json(dataset)
        with jobs.heartbeat_thread(dataset), transaction.atomic():
            populate(dataset, spec)
            # Ready in the same transaction as the members: never a ready row without them.
            jobs.finish(dataset, DatasetStatus.READY)
    except Exception as exc:
        logger.exception("dataset build %s failed", dataset.key)
        jobs.finish(dataset, DatasetStatus.FAILED, error=str(exc))
        return "failed"
    return "ready"


def spec_from_json(dataset: Dataset) -> BuildSpec:
    data = dict(dataset.spec)
    data.pop("name", None)
    data.pop("description", None)
    return BuildSpec(name=dataset.name, description=dataset.description, **data)


def sample_members(dataset: Dataset, size: int = SAMPLE_SIZE) -> list[DatasetMember]:
    return list(
        DatasetMember.objects.filter(dataset=dataset)
        .select_related("trace")
        .only("position", "split", "trace__id", "trace__prompt", "trace__final_answer", "trace__step_count")
        .order_by("position")[:size]
    )


def register_sqlite_md5(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Give SQLite the md5() PostgreSQL has, so seeded orderings match across databases."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            "md5",
            1,
            lambda s: hashlib.md5(str(s).encode(), usedforsecurity=False).hexdigest(),
            deterministic=True,
        )
