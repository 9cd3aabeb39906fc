"""Streaming export of a dataset's members in a training format, and the download response pages and API share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from django.http import StreamingHttpResponse

from runs.training import templates
from traces.choices import ExportFormat, Split
from traces.exporting import EXPORT_CHUNK, with_review
from traces.formats import dumps_line, reasoning_text
from traces.labelling import review_summaries
from traces.models import Dataset, DatasetMember, PreferenceMember

TEMPLATED = (ExportFormat.TUNIX_SFT, ExportFormat.CHAT, ExportFormat.DPO)  # the formats that take a chat template
PREFERENCE_FORMATS = (ExportFormat.DPO,)  # the formats of preference datasets (every other is for SFT datasets)


def dpo_record(prompt: str, chosen: str, rejected: str, template: str | None = None) -> dict[str, str]:
    """One `dpo` record: the prompt as the template's user turn up to where the model answers, each answer
    as the model's turn with its end-of-turn marker (`runs.training.templates.render`: the same split the
    SFT trainer uses, so a DPO run reads the turns an SFT run on the same template learned).
    Gemma turns when `template` is None, as for `tunix_sft`."""
    t = templates.get(template or templates.GEMMA.name)
    return {"prompt": t.head(prompt), "chosen": t.tail(chosen), "rejected": t.tail(rejected)}



def render_record(fmt: str, trace_id: int, prompt: str, steps: list[dict[str, Any]], answer: str,
                  meta: dict[str, Any], review: dict[str, Any] | None = None,
                  template: str | None = None) -> dict[str, Any]:
    """One export record of a dataset member in `fmt` (see ExportFormat).

    `template` (runs.training.templates) renders `tunix_sft`'s text (Gemma turns when None) and adds
    the rendered `text` to a `chat` record beside its messages (none when None: the records stay as
    they always were). `review` (the trace's current rating and labels, traces.labelling.review_summaries) goes into the
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
        return {"text": templates.get(template or templates.GEMMA.name).text(prompt, response)}
    if fmt == ExportFormat.TRAINING_EXAMPLE:
        return {"prompt": prompt, "response": response}
    if fmt == ExportFormat.CHAT:
        record: dict[str, Any] = {
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": response},
            ]
        }
        if template:
            record["text"] = templates.get(template).text(prompt, response)
        return record
    raise ValueError(f"Unknown export format {fmt!r}.")


def check_format(dataset: Dataset, fmt: str) -> None:
    """A ValueError when `fmt` does not fit the dataset's kind (dpo for preference datasets, the rest for SFT)."""
    if dataset.is_preference and fmt not in PREFERENCE_FORMATS:
        raise ValueError(f"{dataset.key} is a preference dataset: export it as {' or '.join(PREFERENCE_FORMATS)}.")
    if not dataset.is_preference and fmt in PREFERENCE_FORMATS:
        raise ValueError(f"The {fmt} format is for preference datasets; {dataset.key} holds traces.")


def check_template(fmt: str, template: str | None) -> None:
    """A ValueError naming what is wrong with a template choice for `fmt`."""
    if template is None:
        return
    if template not in templates.TEMPLATES:
        raise ValueError(f"Unknown template {template!r}; use one of {', '.join(templates.TEMPLATES)}.")
    if fmt not in TEMPLATED:
        raise ValueError(f"The {fmt} format takes no template (only {' and '.join(TEMPLATED)} do).")


def iter_dataset_lines(
    dataset: Dataset, fmt: str, split: str = "all", template: str | None = None
) -> Iterator[bytes]:
    """JSONL export of a dataset's members in position order, streamed with a server-side cursor.

    A preference dataset exports as `dpo` (`{"prompt", "chosen", "rejected"}` per line, see `dpo_record`).
    """
    if fmt not in ExportFormat.values:
        raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(ExportFormat.values)}.")
    check_format(dataset, fmt)
    check_template(fmt, template)
    if split not in (*Split.values, "all"):
        raise ValueError(f"Unknown split {split!r}; use train, validation or all.")
    if dataset.is_preference:
        yield from _iter_pair_lines(dataset, split, template)
        return
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
        yield dumps_line(render_record(fmt, trace_id, prompt, steps, answer, meta, reviews.get(trace_id), template))


def _iter_pair_lines(dataset: Dataset, split: str, template: str | None) -> Iterator[bytes]:
    members = PreferenceMember.objects.filter(dataset=dataset).order_by("position")
    if split != "all":
        members = members.filter(split=split)
    rows = members.values_list("pair__prompt", "pair__chosen", "pair__rejected")
    for prompt, chosen, rejected in rows.iterator(chunk_size=EXPORT_CHUNK):
        yield dumps_line(dpo_record(prompt, chosen, rejected, template))


def export_dataset(
    dataset: Dataset, fmt: str, out: IO[bytes], split: str = "all", template: str | None = None
) -> int:
    count = 0
    for line in iter_dataset_lines(dataset, fmt, split, template):
        out.write(line)
        count += 1
    return count


def export_response(
    dataset: Dataset, fmt: str, split: str, template: str | None = None
) -> StreamingHttpResponse:
    """A streamed JSONL download (validates format, split and template first: ValueError if bad)."""
    check_format(dataset, fmt)
    check_template(fmt, template)
    lines = iter_dataset_lines(dataset, fmt, split, template)
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    suffix = f".{template}" if template else ""
    filename = f"{dataset.name}-v{dataset.version}.{fmt}{suffix}.{split}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
