"""Streaming export of traces in their capture format (with the human review in `meta` when asked)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import IO, Any

from django.db.models import QuerySet

from traces.formats import dumps_line
from traces.labelling import review_summaries
from traces.models import Trace

EXPORT_CHUNK = 2000
REVIEW_KEY = "human_review"


def with_review(meta: dict[str, Any], review: dict[str, Any] | None) -> dict[str, Any]:
    """`meta` with the trace's human review (`{"rating", "labels"}`) under `human_review`, when it has one."""
    if not review:
        return meta
    return {**meta, REVIEW_KEY: review}


def iter_trace_lines(queryset: QuerySet[Trace], *, reviews: bool = False) -> Iterator[bytes]:
    """JSONL lines for `queryset`, read with a server-side cursor in chunks.

    With `reviews`, each chunk's ratings and labels are read in two queries and
    put in `meta` (see `with_review`). Off by default: the file re-imports as the
    same traces (same content hashes) only when `meta` is as captured.
    """
    rows = queryset.values_list("id", "trace_version", "prompt", "steps", "final_answer", "meta")
    # With reviews, rows are taken a chunk at a time so that chunk's reviews cost two queries.
    chunks = itertools.batched(rows.iterator(chunk_size=EXPORT_CHUNK), EXPORT_CHUNK if reviews else 1)
    for chunk in chunks:
        summaries = review_summaries(row[0] for row in chunk) if reviews else {}
        for trace_id, version, prompt, steps, answer, meta in chunk:
            yield dumps_line(
                {
                    "trace_version": version,
                    "prompt": prompt,
                    "steps": steps,
                    "final_answer": answer,
                    "meta": with_review(meta, summaries.get(trace_id)),
                }
            )


def export_traces(out: IO[bytes], *, source: str | None = None, reviews: bool = False) -> int:
    qs = Trace.objects.order_by("created_at", "id")
    if source is not None:
        qs = qs.filter(source=source)
    count = 0
    for line in iter_trace_lines(qs, reviews=reviews):
        out.write(line)
        count += 1
    return count
