"""The one validator for reasoning traces (SPEC §3.1).

Used by the API serializer, the upload form, the batch endpoint and the import
command alike, so every entry point accepts and rejects exactly the same
documents with the same field-named messages (`steps[2].content`, ...).

It is hand-written rather than a DRF serializer because it runs for every line
of multi-million-line imports: one pass, no per-field objects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

TRACE_FIELDS = ("trace_version", "prompt", "steps", "final_answer", "meta")
STEP_FIELDS = ("i", "type", "content")
TRACE_VERSION_MAX = 64
TEXT_MAX = 50_000
STEPS_MAX = 1_000
STEP_TYPE_MAX = 64
STEP_CONTENT_MAX = 20_000
SOURCE_MAX = 128
TAG_MAX = 64
TAGS_MAX = 50

# The numbers every reader can take back: PostgreSQL's jsonb keeps any number as
# written but prints an integral one (1e20 too) as digits, which the JSON renderer
# cannot encode beyond 64 bits, so such a trace would be stored and then unreadable.
META_INT_MIN = -(2**63)
META_INT_MAX = 2**64 - 1

REQUIRED = "This field is required."
UNKNOWN = "Unknown field."

Errors = dict[str, list[str]]


class TraceInvalid(ValueError):
    """A trace document broke one or more rules; `errors` maps field paths to messages."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(slots=True)
class CleanTrace:
    """A validated trace, its steps ordered by `i`, with the fields derived for filtering."""

    trace_version: str
    prompt: str
    steps: list[dict[str, Any]]
    final_answer: str
    meta: dict[str, Any]
    source: str = ""
    tags: list[str] = field(default_factory=list)
    step_count: int = 0
    char_count: int = 0
    content_hash: str = ""
    # Bytes of the canonical JSON (what TRACE_MAX_BYTES limits). The JSON itself is not kept:
    # orjson's output holds its whole write buffer (~4-8 KB however short the JSON), so a
    # batch of 1,000 traces kept ~4 MB alive to the end of the request for one length.
    size: int = 0

    def document(self) -> dict[str, Any]:
        """The trace in its exchange format (what export writes and import reads)."""
        return {
            "trace_version": self.trace_version,
            "prompt": self.prompt,
            "steps": self.steps,
            "final_answer": self.final_answer,
            "meta": self.meta,
        }


def _text(errors: Errors, name: str, value: Any, max_len: int) -> str:
    if value is None:
        errors[name] = [REQUIRED]
        return ""
    if not isinstance(value, str):
        errors[name] = ["Must be a string."]
        return ""
    if not value.strip():
        errors[name] = ["May not be blank."]
    elif len(value) > max_len:
        errors[name] = [f"Ensure this field has no more than {max_len:,} characters."]
    elif "\x00" in value:
        errors[name] = ["Must not contain NUL characters."]
    return value


def _steps(errors: Errors, value: Any) -> list[dict[str, Any]]:
    if value is None:
        errors["steps"] = [REQUIRED]
        return []
    if not isinstance(value, list):
        errors["steps"] = ["Must be a list of steps."]
        return []
    if not value:
        errors["steps"] = ["Must contain at least 1 step."]
        return []
    if len(value) > STEPS_MAX:
        errors["steps"] = [f"Must contain no more than {STEPS_MAX:,} steps."]
        return []
    steps: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for n, step in enumerate(value):
        prefix = f"steps[{n}]"
        if not isinstance(step, dict):
            errors[prefix] = ["Must be an object with i, type and content."]
            continue
        for key in step:
            if key not in STEP_FIELDS:
                errors[f"{prefix}.{key}"] = [UNKNOWN]
        i = step.get("i")
        if i is None:
            errors[f"{prefix}.i"] = [REQUIRED]
        elif not isinstance(i, int) or isinstance(i, bool):
            errors[f"{prefix}.i"] = ["Must be an integer."]
        elif i < 0:
            errors[f"{prefix}.i"] = ["Must be an integer >= 0."]
        elif i in seen:
            errors[f"{prefix}.i"] = [f"Duplicate step index {i} (also used by steps[{seen[i]}])."]
        else:
            seen[i] = n
        step_type = _text(errors, f"{prefix}.type", step.get("type"), STEP_TYPE_MAX)
        content = _text(errors, f"{prefix}.content", step.get("content"), STEP_CONTENT_MAX)
        steps.append({"i": i, "type": step_type, "content": content})
    if not errors:
        steps.sort(key=lambda s: s["i"])
    return steps


def _derive_source(meta: dict[str, Any], default_source: str) -> str:
    source = meta.get("source")
    if isinstance(source, str) and source.strip():
        return source.strip()[:SOURCE_MAX]
    return default_source


def _derive_tags(meta: dict[str, Any]) -> list[str]:
    tags = meta.get("tags")
    if not isinstance(tags, list):
        return []
    out: list[str] = []
    for tag in tags:
        if isinstance(tag, str) and tag.strip() and tag.strip()[:TAG_MAX] not in out:
            out.append(tag.strip()[:TAG_MAX])
            if len(out) == TAGS_MAX:
                break
    return out


_TRACE_FIELD_SET = frozenset(TRACE_FIELDS)
_STEP_FIELD_SET = frozenset(STEP_FIELDS)


def _good_text(value: Any, max_len: int) -> bool:
    """True when `_text` would accept `value` without an error (for the fast path)."""
    return (
        type(value) is str
        and len(value) <= max_len
        and not value.isspace()  # with `value` non-empty: `value.strip()` is non-empty
        and value != ""
        and "\x00" not in value
    )


def _fast_steps(value: Any) -> list[dict[str, Any]] | None:
    """The steps of a valid `steps` value as `_steps` returns them, or None to take the slow path."""
    if type(value) is not list or not 1 <= len(value) <= STEPS_MAX:
        return None
    steps: list[dict[str, Any]] = []
    seen: set[int] = set()
    ordered = True
    prev = -1
    for step in value:
        if type(step) is not dict:
            return None
        # A step written as stored (i, type, content in that order) is kept as it is: one
        # dict fewer per step, for the whole request or import batch.
        as_stored = tuple(step) == STEP_FIELDS
        if not as_stored and step.keys() != _STEP_FIELD_SET:
            return None
        i = step["i"]
        step_type = step["type"]
        content = step["content"]
        if (
            type(i) is not int
            or i < 0
            or i in seen
            or not _good_text(step_type, STEP_TYPE_MAX)
            or not _good_text(content, STEP_CONTENT_MAX)
        ):
            return None
        seen.add(i)
        if i < prev:
            ordered = False
        prev = i
        steps.append(step if as_stored else {"i": i, "type": step_type, "content": content})
    if not ordered:
        steps.sort(key=lambda s: s["i"])
    return steps


def _fast_clean(data: Any) -> CleanTrace | None:
    """A valid, plainly typed document without any error checks' bookkeeping, else None.

    Imports and batches are almost always valid: this path accepts exactly the
    documents the full checks accept (or defers to them) and builds the same
    `CleanTrace`, at about half the cost.
    """
    if type(data) is not dict or not data.keys() <= _TRACE_FIELD_SET:
        return None
    trace_version = data.get("trace_version")
    prompt = data.get("prompt")
    final_answer = data.get("final_answer")
    meta = data.get("meta")
    if meta is None:
        meta = {}
    elif type(meta) is not dict:
        return None
    if not (
        _good_text(trace_version, TRACE_VERSION_MAX)
        and _good_text(prompt, TEXT_MAX)
        and _good_text(final_answer, TEXT_MAX)
    ):
        return None
    steps = _fast_steps(data.get("steps"))
    if steps is None:
        return None
    return CleanTrace(
        trace_version=cast(str, trace_version),
        prompt=cast(str, prompt),
        steps=steps,
        final_answer=cast(str, final_answer),
        meta=meta,
    )


def validate_trace(data: Any, *, default_source: str = "") -> CleanTrace:
    """Validate one trace document; raise `TraceInvalid` naming every bad field."""
    clean = _fast_clean(data)
    if clean is None:
        clean = _checked_clean(data)
    return _finish(clean, default_source)


def _checked_clean(data: Any) -> CleanTrace:
    """Every check, collecting a message per bad field."""
    if not isinstance(data, dict):
        raise TraceInvalid({"non_field_errors": ["Expected a JSON object (a trace)."]})
    errors: Errors = {}
    for key in data:
        if key not in TRACE_FIELDS:
            errors[str(key)] = [UNKNOWN]
    trace_version = _text(errors, "trace_version", data.get("trace_version"), TRACE_VERSION_MAX)
    prompt = _text(errors, "prompt", data.get("prompt"), TEXT_MAX)
    final_answer = _text(errors, "final_answer", data.get("final_answer"), TEXT_MAX)
    steps = _steps(errors, data.get("steps"))
    meta = data.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        errors["meta"] = ["Must be a JSON object."]
    if errors:
        raise TraceInvalid(errors)
    return CleanTrace(
        trace_version=trace_version,
        prompt=prompt,
        steps=steps,
        final_answer=final_answer,
        meta=meta,
    )


def _meta_errors(meta: dict[str, Any]) -> Errors:
    """NULs (PostgreSQL cannot store them) and numbers beyond 64 bits anywhere in meta, by path."""
    errors: Errors = {}
    too_big = (
        f"Must be a number between {META_INT_MIN:,} and {META_INT_MAX:,}; send larger ones as strings."
    )
    stack: list[tuple[str, Any]] = [("meta", meta)]
    while stack:
        path, value = stack.pop()
        kind = type(value)
        if kind is str:
            if "\x00" in value:
                errors[path] = ["Must not contain NUL characters."]
        elif kind is int or kind is float:
            if not META_INT_MIN <= value <= META_INT_MAX:
                errors[path] = [too_big]
        elif kind is dict:
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    errors[path] = ["Keys must not contain NUL characters."]
                else:
                    stack.append((f"{path}.{key}", item))
        elif kind is list:
            stack.extend((f"{path}[{n}]", item) for n, item in enumerate(value))
    return dict(sorted(errors.items()))


def _finish(clean: CleanTrace, default_source: str) -> CleanTrace:
    """The canonical form, its hash and the fields derived for filtering."""
    steps = clean.steps
    meta = clean.meta
    if meta:
        meta_errors = _meta_errors(meta)
        if meta_errors:
            raise TraceInvalid(meta_errors)
    try:
        canonical = orjson.dumps(clean.document(), option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise TraceInvalid({"meta": [f"Must be plain JSON: {exc}."]}) from None
    clean.size = len(canonical)
    clean.content_hash = hashlib.sha256(canonical).hexdigest()
    clean.source = _derive_source(meta, default_source)
    clean.tags = _derive_tags(meta)
    clean.step_count = len(steps)
    clean.char_count = (
        len(clean.prompt) + len(clean.final_answer) + sum(len(s["content"]) for s in steps)
    )
    return clean


PAIR_FIELDS = ("prompt", "chosen", "rejected", "note", "meta")
NOTE_MAX = 2_000
_PAIR_FIELD_SET = frozenset(PAIR_FIELDS)


class PairInvalid(TraceInvalid):
    """A preference pair broke one or more rules; `errors` maps field paths to messages."""


@dataclass(slots=True)
class CleanPair:
    """A validated preference pair, with the hash of its training content."""

    prompt: str
    chosen: str
    rejected: str
    note: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    size: int = 0

    def document(self) -> dict[str, Any]:
        """The pair in its exchange format (what `import_preferences` reads)."""
        doc: dict[str, Any] = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.note:
            doc["note"] = self.note
        doc["meta"] = self.meta
        return doc


def pair_hash(prompt: str, chosen: str, rejected: str) -> str:
    """SHA-256 of the canonical JSON of the training content (prompt, chosen, rejected).

    Note and meta are left out on purpose: the same preference captured twice
    (two clicks, two imports with different notes) is one pair, so a dataset
    never trains on it twice.
    """
    canonical = orjson.dumps({"chosen": chosen, "prompt": prompt, "rejected": rejected}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _fast_pair(data: Any) -> CleanPair | None:
    """A valid, plainly typed pair without the error bookkeeping, else None (see `_fast_clean`)."""
    if type(data) is not dict or not data.keys() <= _PAIR_FIELD_SET:
        return None
    prompt = data.get("prompt")
    chosen = data.get("chosen")
    rejected = data.get("rejected")
    note = data.get("note", "")
    meta = data.get("meta")
    if meta is None:
        meta = {}
    elif type(meta) is not dict:
        return None
    if note is None:
        note = ""
    if not (
        _good_text(prompt, TEXT_MAX)
        and _good_text(chosen, TEXT_MAX)
        and _good_text(rejected, TEXT_MAX)
        and type(note) is str
        and len(note) <= NOTE_MAX
        and "\x00" not in note
        and chosen != rejected
    ):
        return None
    return CleanPair(cast(str, prompt), cast(str, chosen), cast(str, rejected), note, meta)


def _checked_pair(data: Any) -> CleanPair:
    if not isinstance(data, dict):
        raise PairInvalid({"non_field_errors": ["Expected a JSON object (a preference pair)."]})
    errors: Errors = {}
    for key in data:
        if key not in PAIR_FIELDS:
            errors[str(key)] = [UNKNOWN]
    prompt = _text(errors, "prompt", data.get("prompt"), TEXT_MAX)
    chosen = _text(errors, "chosen", data.get("chosen"), TEXT_MAX)
    rejected = _text(errors, "rejected", data.get("rejected"), TEXT_MAX)
    if "chosen" not in errors and "rejected" not in errors and chosen == rejected:
        errors["rejected"] = ["Must differ from chosen."]
    note = data.get("note")
    if note is None:
        note = ""
    elif not isinstance(note, str):
        errors["note"] = ["Must be a string."]
    elif len(note) > NOTE_MAX:
        errors["note"] = [f"Ensure this field has no more than {NOTE_MAX:,} characters."]
    elif "\x00" in note:
        errors["note"] = ["Must not contain NUL characters."]
    meta = data.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        errors["meta"] = ["Must be a JSON object."]
    if errors:
        raise PairInvalid(errors)
    return CleanPair(prompt, chosen, rejected, note, meta)


def validate_pair(data: Any) -> CleanPair:
    """Validate one preference pair; raise `PairInvalid` naming every bad field.

    The texts follow the trace rules (required, not blank, at most TEXT_MAX
    characters, no NUL); `chosen` and `rejected` must differ; `meta` follows the
    trace rules too (plain JSON, no NUL, integers within 64 bits).
    """
    clean = _fast_pair(data)
    if clean is None:
        clean = _checked_pair(data)
    if clean.meta:
        meta_errors = _meta_errors(clean.meta)
        if meta_errors:
            raise PairInvalid(meta_errors)
    try:
        # The stored size, as the trace rules measure it: the pair's JSON in bytes.
        clean.size = len(orjson.dumps(clean.document()))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise PairInvalid({"meta": [f"Must be plain JSON: {exc}."]}) from None
    clean.content_hash = pair_hash(clean.prompt, clean.chosen, clean.rejected)
    return clean
