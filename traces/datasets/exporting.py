"""Streaming export of a dataset's members in a training format, and the download response pages and API share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from django.http import StreamingHttpResponse

from runs.training import templates
from traces.choices import ExportFormat, Split
from traces.exporting import EXPORT_CHUNK, with_review
from traces.formats import dumps_line
from traces.labelling import review_summaries
from traces.models import Dataset, DatasetMember


def reasoning_text(steps: list[dict[str, Any]], final_answer: str) -> str:
    """The model's side of a training example: numbered reasoning, then the answer."""
    lines = ["Reasoning:"]
    lines.extend(f"{n}. {step['content']}" for n, step in enumerate(steps, start=1))
    lines.append(f"Answer: {final_answer}")
    return "\n".join(lines)


def gemma_turns(prompt: str, response: str) -> str:
    """The Gemma chat-turn template used for Tunix SFT."""
    return templates.GEMMA.text(prompt, response)


def render_record(fmt: str, trace_id: int, prompt: str, steps: list[dict[str, Any]], answer: str,
                  meta: dict[str, Any], review: dict[str, Any] | None = None) -> dict[str, Any]:
    """One export record of a dataset member in `fmt` (see ExportFormat).

    `review` (the trace's current rating and labels, traces.labelling.review_summaries) goes into the
    `trace` format's metadata as `human_review`; a trace nobody reviewed keeps its metadata as captured.
    """
    if fmt == ExportFormat.TRACE:
        return {
            "id": trace_id,
            "prompts": prompt,
            "trace_steps": [step["content"] for step in steps],
            "final_answer": answer,
            "metadata": with_review(meta, review),
        }
    response = reasoning_text(steps, answer)
    if fmt == ExportFormat.TUNIX_SFT:
        return {"text": gemma_turns(prompt, response)}
    if fmt == ExportFormat.TRAINING_EXAMPLE:
        return {"prompt": prompt, "response": response}
    if fmt == ExportFormat.CHAT:
        return {
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": response},
            ]
        }
    raise ValueError(f"Unknown export format {fmt!r}.")


def iter_dataset_lines(dataset: Dataset, fmt: str, split: str = "all") -> Iterator[bytes]:
    """JSONL export of a dataset's members in position order, streamed with a server-side cursor."""
    if fmt not in ExportFormat.values:
        raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(ExportFormat.values)}.")
    if split not in (*Split.values, "all"):
        raise ValueError(f"Unknown split {split!r}; use train, validation or all.")
    members = DatasetMember.objects.filter(dataset=dataset).order_by("position")
    if split != "all":
        members = members.filter(split=split)
    rows = members.values_list(
        "position", "trace_id", "trace__prompt", "trace__steps", "trace__final_answer", "trace__meta"
    )
    reviews: dict[int, dict[str, Any]] = {}
    window_end = -1
    for position, trace_id, prompt, steps, answer, meta in rows.iterator(chunk_size=EXPORT_CHUNK):
        if fmt == ExportFormat.TRACE and position >= window_end:
            # The reviews of the next EXPORT_CHUNK positions, in two queries: per chunk, never per row,
            # and still one row pulled at a time.
            window_end = position + EXPORT_CHUNK
            window = DatasetMember.objects.filter(dataset=dataset, position__gte=position, position__lt=window_end)
            reviews = review_summaries(window.values("trace_id"))
        yield dumps_line(render_record(fmt, trace_id, prompt, steps, answer, meta, reviews.get(trace_id)))


def export_dataset(dataset: Dataset, fmt: str, out: IO[bytes], split: str = "all") -> int:
    count = 0
    for line in iter_dataset_lines(dataset, fmt, split):
        out.write(line)
        count += 1
    return count


def export_response(dataset: Dataset, fmt: str, split: str) -> StreamingHttpResponse:
    """A streamed JSONL download (validates format and split first: ValueError if bad)."""
    lines = iter_dataset_lines(dataset, fmt, split)
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    filename = f"{dataset.name}-v{dataset.version}.{fmt}.{split}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
