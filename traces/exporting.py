"""Streaming export of traces in their capture format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from django.db.models import QuerySet

from traces.formats import dumps_line
from traces.models import Trace

EXPORT_CHUNK = 2000


def iter_trace_lines(queryset: QuerySet[Trace]) -> Iterator[bytes]:
    """JSONL lines for `queryset`, read with a server-side cursor in chunks."""
    rows = queryset.values_list("trace_version", "prompt", "steps", "final_answer", "meta")
    for version, prompt, steps, answer, meta in rows.iterator(chunk_size=EXPORT_CHUNK):
        yield dumps_line(
            {
                "trace_version": version,
                "prompt": prompt,
                "steps": steps,
                "final_answer": answer,
                "meta": meta,
            }
        )


def export_traces(out: IO[bytes], *, source: str | None = None) -> int:
    qs = Trace.objects.order_by("created_at", "id")
    if source is not None:
        qs = qs.filter(source=source)
    count = 0
    for line in iter_trace_lines(qs):
        out.write(line)
        count += 1
    return count
