"""The floor's two URLs: `/trace/<id>` and `/traces` (the newest 50), one SQL query each."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path

# The stored row as tunix-rt's detail API shows its fields (no reviews, scores or labels).
DETAIL_SQL = """
SELECT json_build_object(
    'id', id, 'created_at', created_at, 'trace_version', trace_version, 'prompt', prompt,
    'steps', steps, 'final_answer', final_answer, 'meta', meta, 'source', source, 'tags', tags,
    'step_count', step_count, 'char_count', char_count, 'content_hash', content_hash
)::text FROM traces_trace WHERE id = %s
"""
# The columns of tunix-rt's list API, newest first (its index), as one JSON array.
LIST_SQL = """
SELECT coalesce(json_agg(t), '[]')::text FROM (
    SELECT id, created_at, trace_version, prompt, final_answer, source, tags, step_count,
           char_count, content_hash
    FROM traces_trace ORDER BY created_at DESC, id DESC LIMIT 50
) t
"""


def trace(request: HttpRequest, pk: int) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute(DETAIL_SQL, [pk])
        row = cursor.fetchone()
    if row is None:
        return HttpResponse(b'{"detail":"Not found."}', status=404, content_type="application/json")
    return HttpResponse(row[0], content_type="application/json")


def traces(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute(LIST_SQL)
        row = cursor.fetchone()
    return HttpResponse(row[0] if row else "[]", content_type="application/json")


urlpatterns = [
    path("trace/<int:pk>", trace),
    path("traces", traces),
]
