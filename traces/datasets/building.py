"""Building datasets: validate a build spec, select traces (or preference pairs) in the database, freeze them.

Selection runs as one `INSERT … SELECT` over every matching trace (never a
sample in Python), ordered by the strategy: newest first, oldest first, or a
seeded hash of the trace id for `random`, so the same inputs and seed give the
same membership in any process. The validation split takes the first
`round(n × fraction)` members by a second seeded hash. A `preference` dataset
is built the same way from preference pairs (their filters: traces.filters.PairFilter).
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
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.text import slugify

from traces.choices import DatasetKind, DatasetStatus, DatasetStrategy, Split
from traces.filters import PairFilter, TraceFilter
from traces.models import Dataset, DatasetMember, DatasetName, PreferenceMember, PreferencePair, Trace
from tunixrt import jobs

logger = logging.getLogger(__name__)

FILTER_FIELDS = (
    "q", "source", "tag", "created_after", "created_before", "min_steps", "max_steps", "rating", "label",
)
# The preference pair filters (traces.filters.PairFilter) a preference dataset is built from.
PAIR_FILTER_FIELDS = ("q", "source", "created_by", "created_after", "created_before")
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
    def __init__(self, what: str = "traces") -> None:
        super().__init__({"non_field_errors": [f"No {what} match."]})


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
    kind: str = DatasetKind.SFT  # stored as the dataset's `kind`, not in `spec`
    pair_ids: list[int] | None = None

    @property
    def is_preference(self) -> bool:
        return self.kind == DatasetKind.PREFERENCE

    @property
    def ids(self) -> list[int] | None:
        """The explicitly chosen members' ids (traces or pairs), or None when selected by filters."""
        return self.pair_ids if self.is_preference else self.trace_ids

    @property
    def what(self) -> str:
        return "preference pairs" if self.is_preference else "traces"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("name")
        data.pop("description")
        data.pop("kind")
        if self.pair_ids is None:
            data.pop("pair_ids")  # an SFT spec reads as it always has
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
    """Check a build request from the API, the page or the command; raise BuildInvalid.

    `kind` (default `sft`) picks what is selected: traces by the trace filters or
    `trace_ids`, or preference pairs by the pair filters or `pair_ids`.
    """
    errors: Errors = {}
    kind = data.get("kind") or DatasetKind.SFT
    if kind not in DatasetKind.values:
        errors["kind"] = [f"Must be one of {', '.join(DatasetKind.values)}."]
        kind = DatasetKind.SFT
    preference = kind == DatasetKind.PREFERENCE
    filter_fields = PAIR_FILTER_FIELDS if preference else FILTER_FIELDS
    ids_field = "pair_ids" if preference else "trace_ids"
    known = {"name", "description", "kind", ids_field, "strategy", "seed", "limit",
             "validation_fraction", "validation_seed", *filter_fields}
    for key in data:
        if key not in known:
            if preference and key in ("trace_ids", *FILTER_FIELDS):
                errors[str(key)] = ["Not a preference pair filter (preference datasets select pairs)."]
            elif not preference and key in ("pair_ids", *PAIR_FILTER_FIELDS):
                errors[str(key)] = ["Only preference datasets select pairs (set kind to preference)."]
            else:
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

    ids: list[int] | None = None
    raw_ids = data.get(ids_field)
    filters: dict[str, str] = {}
    noun = "pair" if preference else "trace"
    if raw_ids not in (None, ""):
        if any(data.get(f) not in (None, "") for f in filter_fields):
            errors[ids_field] = [f"Give either {ids_field} or filters, not both."]
        elif (
            not isinstance(raw_ids, list)
            or not raw_ids
            or any(not isinstance(i, int) or isinstance(i, bool) or i < 1 for i in raw_ids)
        ):
            errors[ids_field] = [f"Must be a non-empty list of {noun} ids (positive integers)."]
        elif len(raw_ids) > MAX_TRACE_IDS:
            errors[ids_field] = [f"At most {MAX_TRACE_IDS:,} ids."]
        else:
            ids = list(dict.fromkeys(raw_ids))
    else:
        raw_filters = {f: data[f] for f in filter_fields if data.get(f) not in (None, "")}
        for key, value in raw_filters.items():
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                errors[key] = ["Must be a single value."]
        filters = {k: str(v) for k, v in raw_filters.items() if k not in errors}
        filterset: PairFilter | TraceFilter = (
            PairFilter(filters, queryset=PreferencePair.objects.all())
            if preference
            else TraceFilter(filters, queryset=Trace.objects.all())
        )
        if not filterset.is_valid():
            for key, messages in filterset.errors.items():
                errors[key] = [str(m) for m in messages]

    if errors:
        raise BuildInvalid(errors)
    return BuildSpec(
        name=name,
        description=description,
        filters=filters,
        trace_ids=None if preference else ids,
        pair_ids=ids if preference else None,
        kind=kind,
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


def matching(spec: BuildSpec) -> QuerySet[Any]:
    """Every trace (or, for a preference dataset, every pair) the spec selects from, unordered."""
    if spec.is_preference:
        if spec.pair_ids is not None:
            return PreferencePair.objects.filter(pk__in=spec.pair_ids)
        pairs: QuerySet[PreferencePair] = PairFilter(spec.filters, queryset=PreferencePair.objects.all()).qs
        return pairs
    if spec.trace_ids is not None:
        return Trace.objects.filter(pk__in=spec.trace_ids)
    qs: QuerySet[Trace] = TraceFilter(spec.filters, queryset=Trace.objects.all()).qs
    return qs


def ordered_selection(spec: BuildSpec) -> QuerySet[Any]:
    qs = matching(spec)
    if spec.strategy == DatasetStrategy.RANDOM:
        id_column = f'"{qs.model._meta.db_table}"."id"'
        qs = qs.annotate(_k=seeded_hash(spec.seed or 0, id_column)).order_by("_k", "id")
    elif spec.strategy == DatasetStrategy.ALL:
        qs = qs.order_by("created_at", "id")
    else:
        qs = qs.order_by("-created_at", "-id")
    return qs[: spec.limit]


def count_selected(spec: BuildSpec) -> int:
    """How many traces (pairs) a build of `spec` would take (the matches, capped by the limit)."""
    if spec.ids is not None:
        found = matching(spec).count()
        return min(found, spec.limit)
    return matching(spec)[: spec.limit].count()


def missing_trace_ids(spec: BuildSpec) -> list[int]:
    """The spec's `trace_ids` (or `pair_ids`) that name nothing stored."""
    if spec.ids is None:
        return []
    model = PreferencePair if spec.is_preference else Trace
    wanted = set(spec.ids)
    found: set[int] = set()
    ids = list(wanted)
    for start in range(0, len(ids), 10_000):
        found.update(model.objects.filter(pk__in=ids[start : start + 10_000]).values_list("pk", flat=True))
    return sorted(wanted - found)


def member_model(dataset: Dataset) -> type[DatasetMember] | type[PreferenceMember]:
    return PreferenceMember if dataset.is_preference else DatasetMember


def _insert_members(dataset: Dataset, spec: BuildSpec) -> int:
    """INSERT … SELECT the selection into DatasetMember (PreferenceMember), numbering positions in order."""
    if spec.strategy == DatasetStrategy.RANDOM:
        selection = ordered_selection(spec).values("id", "_k")
        window = "ORDER BY sel._k, sel.id"
    elif spec.strategy == DatasetStrategy.ALL:
        selection = ordered_selection(spec).values("id", "created_at")
        window = "ORDER BY sel.created_at, sel.id"
    else:
        selection = ordered_selection(spec).values("id", "created_at")
        window = "ORDER BY sel.created_at DESC, sel.id DESC"
    sql, params = selection.query.sql_with_params()
    table = member_model(dataset)._meta.db_table
    column = "pair_id" if spec.is_preference else "trace_id"
    with connection.cursor() as cur:
        cur.execute(
            f'INSERT INTO "{table}" (dataset_id, {column}, position, split) '  # noqa: S608 - no user text
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
    model = member_model(dataset)
    column = "pair_id" if spec.is_preference else "trace_id"
    chosen = (
        model.objects.filter(dataset=dataset)
        .annotate(_v=seeded_hash(spec.validation_seed, f'"{model._meta.db_table}"."{column}"'))
        .order_by("_v", column)
        .values("pk")[:k]
    )
    return model.objects.filter(pk__in=list(chosen.values_list("pk", flat=True))).update(split=Split.VALIDATION)


def compute_pair_stats(dataset: Dataset) -> dict[str, Any]:
    members = PreferenceMember.objects.filter(dataset=dataset)
    agg = members.aggregate(
        n=Count("id"),
        prompt_chars=Sum(Length("pair__prompt")),
        chosen_chars=Sum(Length("pair__chosen")),
        rejected_chars=Sum(Length("pair__rejected")),
    )
    per_split = dict(members.values_list("split").annotate(n=Count("id")).values_list("split", "n"))
    n = agg["n"] or 0
    chars_total = (agg["prompt_chars"] or 0) + (agg["chosen_chars"] or 0) + (agg["rejected_chars"] or 0)
    return {
        "count": n,
        "train": per_split.get(Split.TRAIN, 0),
        "validation": per_split.get(Split.VALIDATION, 0),
        "prompt_chars_mean": round((agg["prompt_chars"] or 0) / n, 1) if n else 0.0,
        "chosen_chars_mean": round((agg["chosen_chars"] or 0) / n, 1) if n else 0.0,
        "rejected_chars_mean": round((agg["rejected_chars"] or 0) / n, 1) if n else 0.0,
        "chars_total": chars_total,
        "tokens_estimate": math.ceil(chars_total / CHARS_PER_TOKEN),
    }


def compute_stats(dataset: Dataset) -> dict[str, Any]:
    if dataset.is_preference:
        return compute_pair_stats(dataset)
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
        raise NoTracesMatch(spec.what)
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
                    kind=spec.kind,
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
        field, noun = ("pair_ids", "pair") if spec.is_preference else ("trace_ids", "trace")
        raise BuildInvalid({field: [f"Unknown {noun} ids: {shown}{' …' if len(missing) > 20 else ''}."]})
    selected = count_selected(spec)
    if selected == 0:
        raise NoTracesMatch(spec.what)
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
    return BuildSpec(name=dataset.name, description=dataset.description, kind=dataset.kind, **data)


def sample_pair_members(dataset: Dataset, size: int = SAMPLE_SIZE) -> list[PreferenceMember]:
    return list(
        PreferenceMember.objects.filter(dataset=dataset)
        .select_related("pair")
        .only("position", "split", "pair__id", "pair__prompt", "pair__source")
        .order_by("position")[:size]
    )


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
