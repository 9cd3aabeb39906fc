"""Reasoning traces and their scores."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Exists, Max, OuterRef, Q, StringAgg, Subquery, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone

from traces import pgwrite, searchindex
from traces.choices import DatasetKind, DatasetStatus, PairSource, Rating, ScoreCriteria, Split
from traces.formats import reasoning_text
from traces.scoring import score_trace
from traces.validation import NOTE_MAX, SOURCE_MAX, CleanPair, CleanTrace, PairInvalid, validate_pair
from tunixrt.jobs import Job

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

# The PostgreSQL full-text document of a trace (English: prompt, every string in
# steps, final answer), GIN-indexed, written by an insert trigger or, for bulk
# captures, by the search indexer (migrations 0004-0005, traces.searchindex).
# Not a model field: SQLite has no tsvector.
SEARCH_DOCUMENT_SQL = '"traces_trace"."search_document"'


class TraceQuerySet(models.QuerySet["Trace"]):
    def newest_first(self) -> TraceQuerySet:
        return self.order_by("-created_at", "-id")

    def search(self, text: str) -> TraceQuerySet:
        """Full-text search over prompt, steps and answer.

        PostgreSQL: `websearch_to_tsquery` against the GIN-indexed document
        (stemmed English; quotes and `-word` work). SQLite: every word must
        appear, case-insensitively, in the prompt, the answer or a string of a
        step (its type or content; as on PostgreSQL, never the JSON keys).
        """
        text = text.strip()
        if not text:
            return self
        if connection.vendor == "postgresql":
            return self.filter(
                RawSQL(  # noqa: S611 - the search text is a bound parameter
                    f"{SEARCH_DOCUMENT_SQL} @@ websearch_to_tsquery('english'::regconfig, %s)",
                    (text,),
                    output_field=models.BooleanField(),
                )
            )
        qs = self
        for word in text.split()[:10]:
            # json_tree looks inside the steps' strings only (not keys, not numbers), decoded:
            # the stored JSON text escapes non-ASCII letters, so a substring test on it can
            # only serve as a cheap pre-filter for ASCII words.
            in_steps = Q(
                RawSQL(
                    """EXISTS (SELECT 1 FROM json_tree("traces_trace"."steps")"""
                    """ WHERE type = 'text' AND value LIKE %s ESCAPE '\\')""",
                    (f"%{connection.ops.prep_for_like_query(word)}%",),
                    output_field=models.BooleanField(),
                )
            )
            if word.isascii():
                in_steps &= Q(steps__icontains=word)
            qs = qs.filter(Q(prompt__icontains=word) | Q(final_answer__icontains=word) | in_steps)
        return qs

    def with_tag(self, tag: str) -> TraceQuerySet:
        if connection.vendor == "postgresql":
            return self.filter(tags__contains=[tag])
        # SQLite has no JSON containment operator; ask json_each instead.
        return self.filter(
            RawSQL(
                'EXISTS (SELECT 1 FROM json_each("traces_trace"."tags") WHERE value = %s)',
                (tag,),
                output_field=models.BooleanField(),
            )
        )


    def with_review(self) -> TraceQuerySet:
        """Annotate `rating` (the newest rating any reviewer gave, or None) and `label_text` (labels, newline-joined).

        Both are correlated subqueries in the one list query, so a page of rows costs no extra queries.
        Written as SQL text: built with the ORM (`current_rating_subquery`), Django compiled them
        anew on every request, ~1 ms of a list page.
        """
        rating_sql, labels_sql = review_annotation_sql(connection.vendor)
        return self.annotate(
            rating=RawSQL(rating_sql, (), output_field=models.CharField()),  # noqa: S611 - constant SQL
            label_text=RawSQL(labels_sql, (), output_field=models.TextField()),  # noqa: S611 - constant SQL
        )

    def rated(self, value: str) -> TraceQuerySet:
        """Traces whose current rating (the newest one given) is `value`, or that nobody rated (`unrated`)."""
        qs = self.alias(_current_rating=current_rating_subquery())
        if value == "unrated":
            return qs.filter(_current_rating__isnull=True)
        return qs.filter(_current_rating=value)

    def with_label(self, label: str) -> TraceQuerySet:
        return self.filter(Exists(TraceLabel.objects.filter(trace=OuterRef("pk"), label=label)))


@functools.cache
def review_annotation_sql(vendor: str) -> tuple[str, str]:
    """The SQL of `with_review`'s two annotations (constant: table names from the models)."""
    review = TraceReview._meta.db_table
    label = TraceLabel._meta.db_table
    join = "string_agg(l.label, chr(10))" if vendor == "postgresql" else "group_concat(l.label, char(10))"
    rating = (
        f'(SELECT r.rating FROM "{review}" r WHERE r.trace_id = "traces_trace"."id"'  # noqa: S608
        " AND r.rated_at IS NOT NULL ORDER BY r.rated_at DESC, r.id DESC LIMIT 1)"
    )
    labels = f'(SELECT {join} FROM "{label}" l WHERE l.trace_id = "traces_trace"."id")'  # noqa: S608
    return rating, labels


# Labels hold no control characters (traces.labelling), so a newline joins them unambiguously.
LABEL_JOIN = "\n"


def current_rating_subquery() -> Subquery:
    """The rating of the trace's most recently rated review (None when nobody rated it)."""
    return Subquery(
        TraceReview.objects.filter(trace=OuterRef("pk"), rated_at__isnull=False)
        .order_by("-rated_at", "-id")
        .values("rating")[:1]
    )


def label_text_subquery() -> Subquery:
    return Subquery(
        TraceLabel.objects.filter(trace=OuterRef("pk"))
        .values("trace")
        .annotate(text=StringAgg("label", delimiter=Value(LABEL_JOIN)))
        .values("text")[:1]
    )


class TraceInUse(Exception):
    """The trace belongs to datasets (their keys in `keys`) and cannot be deleted."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"The trace belongs to dataset {', '.join(keys)} and cannot be deleted.")
        self.keys = keys


class DatasetInUse(Exception):
    """Runs used the dataset (their ids in `run_ids`), so it cannot be deleted."""

    def __init__(self, key: str, run_ids: list[int]) -> None:
        shown = ", ".join(str(i) for i in run_ids)
        super().__init__(f"Dataset {key} was used by run {shown} and cannot be deleted.")
        self.run_ids = run_ids


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Where one submitted trace ended up: a new row, or the identical one already stored."""

    id: int
    created_at: dt.datetime
    trace_version: str
    created: bool


class TraceManager(models.Manager["Trace"]):
    def get_queryset(self) -> TraceQuerySet:
        return TraceQuerySet(self.model, using=self._db)

    def newest_first(self) -> TraceQuerySet:
        return self.get_queryset().newest_first()

    def search(self, text: str) -> TraceQuerySet:
        return self.get_queryset().search(text)

    def with_tag(self, tag: str) -> TraceQuerySet:
        return self.get_queryset().with_tag(tag)

    def with_review(self) -> TraceQuerySet:
        return self.get_queryset().with_review()

    def ingest(
        self,
        cleans: Sequence[CleanTrace],
        user: AbstractBaseUser | AnonymousUser | None = None,
    ) -> list[IngestResult]:
        """Store validated traces idempotently, all or nothing.

        Returns one result per input, in input order: identical traces (same
        content hash, in this call or stored earlier) map to one row.
        """
        creator = user if user is not None and user.is_authenticated else None
        # On PostgreSQL one trace is one INSERT … ON CONFLICT statement, atomic by
        # itself: outside a transaction, skip BEGIN/COMMIT round trips.
        single_statement = (
            connection.vendor == "postgresql"
            and not connection.in_atomic_block
            and len({c.content_hash for c in cleans}) == 1
        )
        for attempt in range(3):
            try:
                if single_statement:
                    return self._ingest_once(cleans, creator)
                with transaction.atomic():
                    return self._ingest_once(cleans, creator)
            except IntegrityError:
                # A concurrent request stored one of these hashes between our
                # lookup and insert; the next pass finds it as existing.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _ingest_once(self, cleans: Sequence[CleanTrace], creator: Any) -> list[IngestResult]:
        if connection.vendor == "postgresql":
            return self._ingest_postgres(cleans, creator)
        hashes = list(dict.fromkeys(c.content_hash for c in cleans))
        known: dict[str, IngestResult] = {
            h: IngestResult(pk, created_at, version, False)
            for h, pk, created_at, version in self.filter(content_hash__in=hashes).values_list(
                "content_hash", "id", "created_at", "trace_version"
            )
        }
        now = timezone.now()
        new_rows: list[Trace] = []
        for clean in cleans:
            if clean.content_hash in known:
                continue
            known[clean.content_hash] = IngestResult(0, now, clean.trace_version, True)
            new_rows.append(Trace.from_clean(clean, created_at=now, created_by=creator))
        if new_rows:
            self.bulk_create(new_rows)
            if any(row.pk is None for row in new_rows):
                ids = dict(
                    self.filter(content_hash__in=[r.content_hash for r in new_rows]).values_list(
                        "content_hash", "id"
                    )
                )
                for row in new_rows:
                    row.pk = ids[row.content_hash]
            for row in new_rows:
                known[row.content_hash] = IngestResult(row.pk, now, row.trace_version, True)
        results: list[IngestResult] = []
        first_seen: set[str] = set()
        for clean in cleans:
            result = known[clean.content_hash]
            if result.created and clean.content_hash in first_seen:
                # The same trace twice in one request: the second is a duplicate.
                result = IngestResult(result.id, result.created_at, result.trace_version, False)
            first_seen.add(clean.content_hash)
            results.append(result)
        return results

    def _ingest_postgres(self, cleans: Sequence[CleanTrace], creator: Any) -> list[IngestResult]:
        """One `INSERT … ON CONFLICT DO NOTHING RETURNING` for the new traces, one lookup for the rest.

        The ORM path above costs more in Python (model instances, SQL building)
        than PostgreSQL spends storing the rows.
        """
        by_hash: dict[str, CleanTrace] = {}
        for clean in cleans:
            by_hash.setdefault(clean.content_hash, clean)
        firsts = list(by_hash.values())  # the first occurrence of each hash, in input order
        now = timezone.now()
        creator_id = creator.pk if creator is not None else None
        # Small captures are searchable at once; bulk ones are indexed after commit (see traces.searchindex).
        with searchindex.bulk_write(len(firsts)) as deferred:
            new_ids = pgwrite.insert_new(connection, firsts, now, creator_id)
        if deferred:
            searchindex.after_capture_on_commit(len(new_ids), len(new_ids))
        stored = [c.content_hash for c in firsts if c.content_hash not in new_ids]
        known = pgwrite.known_hashes(connection, stored)
        if len(known) < len(stored):
            # A conflicting row was deleted before we could read it: start over.
            raise IntegrityError("A stored trace vanished during capture.")
        results: list[IngestResult] = []
        first_seen: set[str] = set()
        for clean in cleans:
            h = clean.content_hash
            if h in new_ids:
                # The same trace twice in one request: the second is a duplicate.
                created = h not in first_seen
                results.append(IngestResult(new_ids[h], now, clean.trace_version, created))
            else:
                pk, created_at, version = known[h]
                results.append(IngestResult(pk, created_at, version, False))
            first_seen.add(h)
        return results


class Trace(models.Model):
    """One reasoning trace: a prompt, numbered steps (ordered by `i`), a final answer.

    The payload is stored as given (steps sorted); `source`, `tags`,
    `step_count`, `char_count` and `content_hash` are derived at write time for
    filtering. `content_hash` (SHA-256 of the canonical JSON of the whole
    trace) is unique, which makes every capture path idempotent.
    """

    trace_version = models.CharField(max_length=64)
    prompt = models.TextField()
    steps = models.JSONField()
    final_answer = models.TextField()
    meta = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=SOURCE_MAX, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    step_count = models.PositiveIntegerField()
    char_count = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = TraceManager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="trace_newest_idx"),
            models.Index(fields=["source", "-created_at", "-id"], name="trace_source_newest_idx"),
            models.Index(fields=["step_count", "id"], name="trace_steps_id_idx"),
        ]

    def __str__(self) -> str:
        return f"Trace {self.pk}: {self.prompt[:60]}"

    @classmethod
    def from_clean(
        cls, clean: CleanTrace, *, created_at: dt.datetime | None = None, created_by: Any = None
    ) -> Trace:
        return cls(
            trace_version=clean.trace_version,
            prompt=clean.prompt,
            steps=clean.steps,
            final_answer=clean.final_answer,
            meta=clean.meta,
            source=clean.source,
            tags=clean.tags,
            step_count=clean.step_count,
            char_count=clean.char_count,
            content_hash=clean.content_hash,
            created_at=created_at or timezone.now(),
            created_by=created_by,
        )

    def document(self) -> dict[str, Any]:
        """The trace in its exchange format, exactly as it was captured."""
        return {
            "trace_version": self.trace_version,
            "prompt": self.prompt,
            "steps": self.steps,
            "final_answer": self.final_answer,
            "meta": self.meta,
        }

    def score(self, criteria: str = ScoreCriteria.BASELINE) -> TraceScore:
        """Compute and store (or refresh) this trace's score for `criteria`."""
        value, details = score_trace(self.steps, criteria)
        score, _ = TraceScore.objects.update_or_create(
            trace=self, criteria=criteria, defaults={"score": value, "details": details}
        )
        return score

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Delete the trace, unless a dataset contains it (datasets are immutable)."""
        keys = Dataset.objects.keys_containing([self.pk])
        if keys:
            raise TraceInUse(keys)
        return super().delete(*args, **kwargs)

    @staticmethod
    def label_list(label_text: str | None) -> list[str]:
        """Labels from the `label_text` annotation, sorted (SQLite before 3.44 cannot order inside an aggregate)."""
        return sorted(label_text.split(LABEL_JOIN)) if label_text else []

    @property
    def label_names(self) -> list[str]:
        """The trace's labels, sorted (from the `with_review` annotation when present)."""
        if hasattr(self, "label_text"):
            return self.label_list(self.label_text)
        return list(self.labels.order_by("label").values_list("label", flat=True))

    def ensure_scores(self) -> list[TraceScore]:
        """Stored scores, with the baseline computed and stored first when missing."""
        scores = list(self.scores.order_by("criteria"))
        if not any(s.criteria == ScoreCriteria.BASELINE for s in scores):
            scores.append(self.score(ScoreCriteria.BASELINE))
            scores.sort(key=lambda s: s.criteria)
        return scores


class TraceScore(models.Model):
    """A trace's score under one criteria (0–100), with the parts that made it up."""

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="scores")
    criteria = models.CharField(max_length=32, choices=ScoreCriteria.choices)
    score = models.FloatField()
    details = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trace", "criteria"], name="score_one_per_criteria"),
        ]
        indexes = [models.Index(fields=["criteria", "score"], name="score_criteria_value_idx")]

    def __str__(self) -> str:
        return f"{self.criteria}={self.score:.1f} for trace {self.trace_id}"


class TraceReview(models.Model):
    """One reviewer's verdict on a trace: a rating (good, bad or none) and a comment.

    One row per user and trace; reviewing again updates it. `rated_at` is when
    the rating was last set (NULL while the user gave none): the trace's
    current rating is the one with the newest `rated_at`, whoever gave it.
    """

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="reviews")
    # A deleted user's verdicts stay, unattributed: the team's history outlives accounts.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    rating = models.CharField(max_length=8, choices=Rating.choices, blank=True, default="")
    comment = models.TextField(blank=True, default="")
    rated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-updated_at", "-id")
        constraints = [models.UniqueConstraint(fields=["trace", "user"], name="review_one_per_user")]
        indexes = [models.Index(fields=["trace", "-rated_at", "-id"], name="review_trace_rated_idx")]

    def __str__(self) -> str:
        return f"{self.rating or 'unrated'} on trace {self.trace_id} by user {self.user_id}"


class TraceLabel(models.Model):
    """A label a person put on a trace (like a tag, but given after capture), with who and when.

    A label is on a trace once; the first person to add it is recorded.
    """

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="labels")
    label = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("label",)
        constraints = [models.UniqueConstraint(fields=["trace", "label"], name="label_once_per_trace")]
        indexes = [models.Index(fields=["label", "trace"], name="label_traces_idx")]

    def __str__(self) -> str:
        return f"{self.label} on trace {self.trace_id}"


def dataset_key_q(value: str, prefix: str = "") -> Q:
    """A filter for `name@vN` (that version) or a bare name (every version), on the dataset at `prefix`.

    A version that is not a plain, short decimal number (`@v²`, 5,000 digits) leaves
    the value as a name, which matches nothing rather than failing in int().
    """
    name, sep, version = value.rpartition("@v")
    if sep and version.isascii() and version.isdigit() and len(version) <= 9:
        return Q(**{f"{prefix}name": name, f"{prefix}version": int(version)})
    return Q(**{f"{prefix}name": value})


class DatasetQuerySet(models.QuerySet["Dataset"]):
    def by_key(self, key: str) -> Dataset:
        """The dataset called `name@vN`; raises Dataset.DoesNotExist for unknown or malformed keys."""
        name, sep, version = key.rpartition("@v")
        # No name holds a NUL, and PostgreSQL would refuse to compare one.
        if not sep or not name or not (version.isascii() and version.isdigit()) or len(version) > 9 or "\x00" in name:
            raise Dataset.DoesNotExist(f"No dataset {key!r}.")
        return self.get(name=name, version=int(version))

    def keys_containing(self, trace_ids: Iterable[int]) -> list[str]:
        rows = (
            self.filter(members__trace_id__in=list(trace_ids))
            .values_list("name", "version")
            .distinct()
            .order_by("name", "version")
        )
        return [f"{name}@v{version}" for name, version in rows]

    def keys_containing_pairs(self, pair_ids: Iterable[int]) -> list[str]:
        rows = (
            self.filter(pair_members__pair_id__in=list(pair_ids))
            .values_list("name", "version")
            .distinct()
            .order_by("name", "version")
        )
        return [f"{name}@v{version}" for name, version in rows]


class Dataset(Job):
    """An immutable, versioned snapshot of traces (`sft`) or preference pairs (`preference`): `name@vN`.

    Building an existing name creates the next version; nothing is changed after
    the build. Membership is an ordered list of DatasetMember rows (traces) or
    PreferenceMember rows (pairs), each marked train or validation. `spec`
    records how it was built, `stats` what it holds.
    """

    name = models.SlugField(max_length=100)
    kind = models.CharField(max_length=16, choices=DatasetKind.choices, default=DatasetKind.SFT)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True, default="")
    spec = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=DatasetStatus.choices, default=DatasetStatus.READY)
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    built_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = DatasetQuerySet.as_manager()

    job_label = "dataset build"
    job_task = "traces.build_dataset"
    resume_note = "Building it again"
    running_status = DatasetStatus.BUILDING

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="dataset_name_version")]
        indexes = [models.Index(fields=["-created_at", "-id"], name="dataset_newest_idx")]

    def __str__(self) -> str:
        return self.key

    @property
    def key(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def is_preference(self) -> bool:
        return self.kind == DatasetKind.PREFERENCE

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Delete the snapshot, unless runs trained on it (their provenance needs it)."""
        run_ids = list(self.runs.order_by("id").values_list("id", flat=True)[:50])
        if run_ids:
            raise DatasetInUse(self.key, run_ids)
        return super().delete(*args, **kwargs)


class DatasetName(models.Model):
    """One row per dataset name, holding the last version number handed out.

    Version numbers are never reused: after `name@v3` is deleted the next build
    is `name@v4`, so a key someone wrote down always meant one snapshot.
    """

    name = models.SlugField(max_length=100, unique=True)
    last_version = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} (v{self.last_version})"

    @classmethod
    def allocate(cls, name: str) -> int:
        """Reserve `name`'s next version number; call inside the transaction that creates it.

        The row lock serialises concurrent builds of one name. Versions created
        without going through here (fixtures, older databases) are respected.
        """
        cls.objects.get_or_create(name=name)
        entry = cls.objects.select_for_update().get(name=name)
        stored = Dataset.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0
        entry.last_version = max(entry.last_version, stored) + 1
        entry.save(update_fields=["last_version"])
        return entry.last_version


class DatasetMember(models.Model):
    """One trace's place in a dataset. PROTECT keeps member traces from being deleted."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="members")
    trace = models.ForeignKey(Trace, on_delete=models.PROTECT, related_name="memberships")
    position = models.PositiveIntegerField()
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.TRAIN)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "position"], name="member_position"),
        ]
        indexes = [models.Index(fields=["trace"], name="member_trace_idx")]

    def __str__(self) -> str:
        return f"{self.dataset_id}#{self.position} → trace {self.trace_id}"


class PairInUse(Exception):
    """The preference pair belongs to datasets (their keys in `keys`) and cannot be deleted."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"The pair belongs to dataset {', '.join(keys)} and cannot be deleted.")
        self.keys = keys


@dataclass(frozen=True, slots=True)
class PairIngestResult:
    """Where one submitted pair ended up: a new row, or the stored one with the same content."""

    id: int
    created_at: dt.datetime
    created: bool


class PreferencePairQuerySet(models.QuerySet["PreferencePair"]):
    def newest_first(self) -> PreferencePairQuerySet:
        return self.order_by("-created_at", "-id")

    def search(self, text: str) -> PreferencePairQuerySet:
        """Every word (up to ten) must appear, case-insensitively, in the prompt, the chosen or the rejected text."""
        qs = self
        for word in text.split()[:10]:
            qs = qs.filter(Q(prompt__icontains=word) | Q(chosen__icontains=word) | Q(rejected__icontains=word))
        return qs


class PreferencePairManager(models.Manager["PreferencePair"]):
    def get_queryset(self) -> PreferencePairQuerySet:
        return PreferencePairQuerySet(self.model, using=self._db)

    def newest_first(self) -> PreferencePairQuerySet:
        return self.get_queryset().newest_first()

    def search(self, text: str) -> PreferencePairQuerySet:
        return self.get_queryset().search(text)

    def ingest(
        self,
        cleans: Sequence[CleanPair],
        source: str,
        user: AbstractBaseUser | AnonymousUser | None = None,
        *,
        item_links: Sequence[dict[str, Any]] | None = None,
        **links: Any,
    ) -> list[PairIngestResult]:
        """Store validated pairs idempotently, all or nothing, one result per input in input order.

        A pair whose content hash is stored already (or repeats in `cleans`) maps to
        that row, which keeps its first provenance. `links` (chosen_trace,
        rejected_trace, chosen_evaluation, rejected_evaluation, eval_item) go on
        every new row; `item_links`, one dict per pair, on that pair's row.
        """
        creator = user if user is not None and user.is_authenticated else None
        per_item = [{**links, **extra} for extra in item_links] if item_links is not None else [links] * len(cleans)
        for attempt in range(3):
            try:
                with transaction.atomic():
                    return self._ingest_once(cleans, source, creator, per_item)
            except IntegrityError:
                # A concurrent request stored one of these hashes between our lookup and
                # insert: the next pass finds it stored.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _ingest_once(
        self, cleans: Sequence[CleanPair], source: str, creator: Any, links: Sequence[dict[str, Any]]
    ) -> list[PairIngestResult]:
        hashes = list(dict.fromkeys(c.content_hash for c in cleans))
        known: dict[str, PairIngestResult] = {
            h: PairIngestResult(pk, created_at, False)
            for h, pk, created_at in self.filter(content_hash__in=hashes).values_list(
                "content_hash", "id", "created_at"
            )
        }
        now = timezone.now()
        new_rows: dict[str, PreferencePair] = {}
        for clean, row_links in zip(cleans, links, strict=True):
            if clean.content_hash not in known and clean.content_hash not in new_rows:
                new_rows[clean.content_hash] = PreferencePair.from_clean(
                    clean, source=source, created_at=now, created_by=creator, **row_links
                )
        if new_rows:
            self.bulk_create(new_rows.values())
            for h, row in new_rows.items():
                known[h] = PairIngestResult(row.pk, now, True)
        results: list[PairIngestResult] = []
        seen: set[str] = set()
        for clean in cleans:
            result = known[clean.content_hash]
            if result.created and clean.content_hash in seen:
                # The same pair twice in one request: the second is a duplicate.
                result = PairIngestResult(result.id, result.created_at, False)
            seen.add(clean.content_hash)
            results.append(result)
        return results

    def from_traces(
        self,
        chosen: Trace,
        rejected: Trace,
        *,
        note: str = "",
        user: AbstractBaseUser | AnonymousUser | None = None,
    ) -> PairIngestResult:
        """Record that `chosen` answers the prompt better than `rejected` (the compare page's buttons).

        Both traces must answer the same prompt (compared without surrounding
        whitespace). Each side is the trace rendered as a training target
        (`traces.formats.reasoning_text`: `Reasoning:`, numbered steps, `Answer:`),
        exactly what SFT exports train on, so DPO prefers one SFT target over another.
        Raises PairInvalid naming the problem.
        """
        if chosen.pk == rejected.pk:
            raise PairInvalid({"non_field_errors": ["Pick two different traces."]})
        if chosen.prompt.strip() != rejected.prompt.strip():
            reason = "The traces answer different prompts; a preference pair compares two answers to one prompt."
            raise PairInvalid({"non_field_errors": [reason]})
        clean = validate_pair(
            {
                "prompt": chosen.prompt,
                "chosen": reasoning_text(chosen.steps, chosen.final_answer),
                "rejected": reasoning_text(rejected.steps, rejected.final_answer),
                "note": note,
            }
        )
        return self.ingest([clean], PairSource.COMPARE, user, chosen_trace=chosen, rejected_trace=rejected)[0]


class PreferencePair(models.Model):
    """A preference: for `prompt`, the `chosen` answer is better than the `rejected` one.

    Provenance: `source` (compare page, API, import or evaluation), the traces or
    evaluations the two answers came from when known, a note and free `meta`.
    `content_hash` (SHA-256 of prompt, chosen and rejected; traces.validation.pair_hash)
    is unique, so every capture path is idempotent. Pairs are immutable.
    """

    prompt = models.TextField()
    chosen = models.TextField()
    rejected = models.TextField()
    source = models.CharField(max_length=16, choices=PairSource.choices)
    note = models.TextField(blank=True, default="", max_length=NOTE_MAX)
    meta = models.JSONField(default=dict, blank=True)
    # The links are NULL on most rows (every import): partial indexes (Meta) serve the deletes that null
    # them at no cost to a pair stored without them, where a full index per column would slow imports ~2x.
    chosen_trace = models.ForeignKey(
        Trace, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    rejected_trace = models.ForeignKey(
        Trace, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    chosen_evaluation = models.ForeignKey(
        "runs.Evaluation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    rejected_evaluation = models.ForeignKey(
        "runs.Evaluation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    eval_item = models.ForeignKey(
        "runs.EvalItem", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # A constraint (Meta), not unique=True: on PostgreSQL that adds a second, LIKE-pattern index nobody uses.
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    objects = PreferencePairManager()

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [models.UniqueConstraint(fields=["content_hash"], name="pair_content_hash")]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="pair_newest_idx"),
            models.Index(fields=["source", "-created_at", "-id"], name="pair_source_newest_idx"),
            *(
                models.Index(fields=[column], name=f"pair_{short}_idx", condition=Q(**{f"{column}__isnull": False}))
                for column, short in (
                    ("created_by", "creator"),
                    ("chosen_trace", "chosen_trace"),
                    ("rejected_trace", "rejected_trace"),
                    ("chosen_evaluation", "chosen_eval"),
                    ("rejected_evaluation", "rejected_eval"),
                    ("eval_item", "eval_item"),
                )
            ),
        ]

    def __str__(self) -> str:
        return f"Pair {self.pk}: {self.prompt[:60]}"

    @classmethod
    def from_clean(
        cls,
        clean: CleanPair,
        *,
        source: str,
        created_at: dt.datetime | None = None,
        created_by: Any = None,
        **links: Any,
    ) -> PreferencePair:
        return cls(
            prompt=clean.prompt,
            chosen=clean.chosen,
            rejected=clean.rejected,
            note=clean.note,
            meta=clean.meta,
            source=source,
            content_hash=clean.content_hash,
            created_at=created_at or timezone.now(),
            created_by=created_by,
            **links,
        )

    def document(self) -> dict[str, Any]:
        """The pair in its exchange format (re-imports as the same pair)."""
        doc: dict[str, Any] = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.note:
            doc["note"] = self.note
        doc["meta"] = self.meta
        return doc

    def dataset_keys(self) -> list[str]:
        return Dataset.objects.keys_containing_pairs([self.pk])

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Delete the pair, unless a dataset holds it (datasets are immutable)."""
        keys = self.dataset_keys()
        if keys:
            raise PairInUse(keys)
        return super().delete(*args, **kwargs)


class PreferenceMember(models.Model):
    """One preference pair's place in a preference dataset. PROTECT keeps member pairs from being deleted."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="pair_members")
    pair = models.ForeignKey(PreferencePair, on_delete=models.PROTECT, related_name="memberships")
    position = models.PositiveIntegerField()
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.TRAIN)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "position"], name="pair_member_position"),
        ]
        indexes = [models.Index(fields=["pair"], name="pair_member_pair_idx")]

    def __str__(self) -> str:
        return f"{self.dataset_id}#{self.position} → pair {self.pair_id}"
