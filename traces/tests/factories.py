"""factory-boy factories for traces."""

from __future__ import annotations

from typing import Any

import factory

from traces.models import Trace
from traces.validation import validate_trace


def trace_document(n: int = 0, steps: int | list[dict[str, Any]] = 3, **overrides: Any) -> dict[str, Any]:
    """A valid trace document (the capture format); `steps` is a count or the steps themselves."""
    if isinstance(steps, int):
        steps = [{"i": i, "type": "compute", "content": f"step {i} of problem {n}"} for i in range(steps)]
    doc: dict[str, Any] = {
        "trace_version": "1.0",
        "prompt": f"What is {n} + {n}?",
        "steps": steps,
        "final_answer": str(2 * n),
        "meta": {"source": "factory", "tags": ["arithmetic"]},
    }
    doc.update(overrides)
    return doc


class TraceFactory(factory.django.DjangoModelFactory[Trace]):
    class Meta:
        model = Trace

    n = factory.declarations.Sequence(lambda n: n)

    @classmethod
    def _create(cls, model_class: type[Trace], *args: Any, **kwargs: Any) -> Trace:
        n = kwargs.pop("n")
        doc_keys = {"prompt", "steps", "final_answer", "meta", "trace_version"}
        doc_overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in doc_keys}
        clean = validate_trace(trace_document(n, **doc_overrides))
        trace = Trace.from_clean(clean)
        for key, value in kwargs.items():
            setattr(trace, key, value)
        trace.save()
        return trace


def make_trace(**kwargs: Any) -> Trace:
    """A stored trace; TraceFactory's keywords (document fields, or model fields such as created_at)."""
    trace: Trace = TraceFactory(**kwargs)  # type: ignore[assignment]
    return trace


def pair_document(n: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid preference pair (the capture format)."""
    doc: dict[str, Any] = {
        "prompt": f"What is {n} + {n}?",
        "chosen": f"Reasoning:\n1. {n} + {n} = {2 * n}\nAnswer: {2 * n}",
        "rejected": f"Reasoning:\n1. guess\nAnswer: {2 * n + 1}",
        "meta": {"origin": "factory"},
    }
    doc.update(overrides)
    return doc


def make_pair(n: int = 0, source: str = "api", created_by: Any = None, **overrides: Any) -> Any:
    """A stored preference pair."""
    from traces.models import PreferencePair
    from traces.validation import validate_pair

    result = PreferencePair.objects.ingest([validate_pair(pair_document(n, **overrides))], source, created_by)[0]
    return PreferencePair.objects.get(pk=result.id)
