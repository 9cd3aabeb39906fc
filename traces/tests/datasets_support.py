"""Helpers for the dataset tests: traces with chosen fields, builds, memberships, expected orders."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any, cast

from django.db import OperationalError

from traces.datasets.building import build_dataset, validate_build_spec
from traces.models import Dataset, DatasetMember, Trace
from traces.tests.factories import TraceFactory


def make_trace(**kwargs: Any) -> Trace:
    """A stored trace (TraceFactory's keywords: prompt, steps, final_answer, meta, created_at, …)."""
    return cast(Trace, TraceFactory(**kwargs))


def build(name: str, user: Any = None, **spec: Any) -> Dataset:
    """Validate and build a spec the way the API does (inline below DATASET_INLINE_MAX)."""
    return build_dataset(validate_build_spec({"name": name, **spec}), user)


def member_ids(dataset: Dataset, split: str | None = None) -> list[int]:
    """The dataset's trace ids in position order, optionally of one split."""
    qs = DatasetMember.objects.filter(dataset=dataset).order_by("position")
    if split is not None:
        qs = qs.filter(split=split)
    return list(qs.values_list("trace_id", flat=True))


def memberships(dataset: Dataset) -> list[tuple[int, int, str]]:
    """(position, trace id, split) of every member, in position order."""
    return list(
        DatasetMember.objects.filter(dataset=dataset)
        .order_by("position")
        .values_list("position", "trace_id", "split")
    )


def md5_key(seed: int, trace_id: int) -> str:
    return hashlib.md5(f"{seed}:{trace_id}".encode(), usedforsecurity=False).hexdigest()


def md5_order(seed: int, ids: Iterable[int]) -> list[int]:
    """The order the `random` strategy must give: md5('<seed>:<id>'), ties by id."""
    return sorted(ids, key=lambda i: (md5_key(seed, i), i))


def walk_trace_api(api: Any, params: dict[str, Any], page_size: int = 7) -> list[int]:
    """Every trace id GET /api/traces returns for `params`, following next_cursor to the end."""
    seen: list[int] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": page_size}
        if cursor:
            query["cursor"] = cursor
        response = api.get("/api/traces", query)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += [row["id"] for row in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination never ended")


def wait_until_done(key: str, seconds: float = 30.0) -> Dataset:
    """Poll the row (the source of truth) until a worker has finished building it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            dataset = Dataset.objects.by_key(key)
        except OperationalError:  # SQLite: the worker's write transaction holds the table
            dataset = None
        if dataset is not None and not dataset.is_active:
            return dataset
        time.sleep(0.1)
    raise AssertionError(f"{key} was not built within {seconds} s")
