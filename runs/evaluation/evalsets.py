"""Eval sets: import from JSONL (all or nothing, errors by line) or from a dataset's validation split."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

import orjson
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from runs.models import EvalItem, EvalSet
from traces.choices import Split
from traces.models import Dataset, DatasetMember

REQUIRED = ("id", "prompt", "expected_answer")
OPTIONAL = ("category", "difficulty", "section")
MAX_ITEMS = 100_000
TEXT_MAX = 50_000
LABEL_MAX = 100


class EvalSetInvalid(ValueError):
    """Errors as (line, message) pairs, or a field-keyed dict for the name."""

    def __init__(self, errors: list[tuple[int, str]] | dict[str, list[str]]) -> None:
        if isinstance(errors, dict):
            text = "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        else:
            text = "; ".join(f"line {line}: {msg}" for line, msg in errors[:20])
        super().__init__(text)
        self.errors = errors


def check_name(name: str) -> str:
    if not name or len(name) > 100 or slugify(name) != name:
        example = slugify(name)[:100] or "my-eval-set"
        raise EvalSetInvalid({"name": [f"Use 1–100 lowercase letters, digits, - or _ (e.g. {example!r})."]})
    if EvalSet.objects.filter(name=name).exists():
        raise EvalSetInvalid({"name": [f"An eval set called {name!r} exists already."]})
    return name


def parse_items(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    """Validate every line; raise EvalSetInvalid listing each bad line (missing fields, duplicate ids)."""
    items: list[dict[str, Any]] = []
    errors: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            errors.append((number, f"Malformed JSON: {exc}"))
            continue
        if not isinstance(data, dict):
            errors.append((number, "Expected a JSON object."))
            continue
        problems = []
        for key in REQUIRED:
            value = data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "prompt":
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{key}: required (a non-empty string)")
            elif len(value) > TEXT_MAX or "\x00" in value:
                problems.append(f"{key}: too long or contains NUL")
        for key in OPTIONAL:
            value = data.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > LABEL_MAX):
                problems.append(f"{key}: must be text of at most {LABEL_MAX:,} characters")
            elif value is not None and "\x00" in value:
                problems.append(f"{key}: contains NUL")
        unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            problems.append(f"unknown fields {', '.join(unknown)}")
        if problems:
            errors.append((number, "; ".join(problems)))
            continue
        item_id = str(data["id"]).strip()[:200]
        if item_id in seen:
            errors.append((number, f"duplicate id {item_id!r} (first on line {seen[item_id]})"))
            continue
        seen[item_id] = number
        items.append(
            {
                "item_id": item_id,
                "prompt": data["prompt"],
                "expected_answer": str(data["expected_answer"]).strip(),
                "category": data.get("category") or "",
                "difficulty": data.get("difficulty") or "",
                "section": data.get("section") or "",
            }
        )
        if len(items) > MAX_ITEMS:
            errors.append((number, f"more than {MAX_ITEMS:,} items"))
            break
    if errors:
        raise EvalSetInvalid(errors)
    if not items:
        raise EvalSetInvalid([(0, "The file holds no items.")])
    return items


def _create(name: str, items: list[dict[str, Any]], source: str, description: str, user: Any) -> EvalSet:
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            eval_set = EvalSet.objects.create(
                name=name, description=description, source=source, item_count=len(items), created_by=creator
            )
            EvalItem.objects.bulk_create(
                [EvalItem(eval_set=eval_set, position=n, **item) for n, item in enumerate(items)], batch_size=1000
            )
    except IntegrityError:
        raise EvalSetInvalid({"name": [f"An eval set called {name!r} exists already."]}) from None
    return eval_set


def import_evalset(
    stream: IO[bytes], name: str, *, source: str = "upload", description: str = "", user: Any = None
) -> EvalSet:
    check_name(name)
    items = parse_items(stream)
    return _create(name, items, source, description, user)


def evalset_from_dataset(dataset: Dataset, name: str, *, user: Any = None) -> EvalSet:
    """The dataset's validation split as an eval set (answer = the trace's final answer)."""
    check_name(name)
    members = (
        DatasetMember.objects.filter(dataset=dataset, split=Split.VALIDATION)
        .order_by("position")
        .values_list("trace_id", "trace__prompt", "trace__final_answer", "trace__source")
    )
    items = [
        {
            "item_id": f"trace-{trace_id}",
            "prompt": prompt,
            "expected_answer": answer,
            "category": source[:LABEL_MAX],
            "difficulty": "",
            "section": "",
        }
        for trace_id, prompt, answer, source in members.iterator(chunk_size=2000)
    ]
    if not items:
        raise EvalSetInvalid({"dataset": [f"Dataset {dataset.key} has no validation split."]})
    return _create(name, items, f"dataset:{dataset.key}", f"Validation split of {dataset.key}", user)
