"""Forms for the upload page. Validation is the shared validator."""

from __future__ import annotations

from typing import Any

import orjson
from django import forms
from django.conf import settings

from traces.validation import CleanTrace, TraceInvalid, validate_trace


class TracePasteForm(forms.Form):
    """One trace (a JSON object) or several (a JSON array), pasted as text."""

    payload = forms.CharField(
        label="Trace JSON",
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "mono"}),
        strip=False,
    )

    def clean_payload(self) -> list[CleanTrace]:
        text: str = self.cleaned_data["payload"]
        raw = text.encode()
        if len(raw) > settings.TRACE_BATCH_MAX_BYTES:
            raise forms.ValidationError(f"The text is larger than {settings.TRACE_BATCH_MAX_BYTES:,} bytes.")
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise forms.ValidationError(f"Malformed JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        limit = settings.TRACE_BATCH_MAX_ITEMS
        if not 1 <= len(items) <= limit:
            raise forms.ValidationError(f"Paste between 1 and {limit:,} traces (got {len(items)}).")
        errors: list[str] = []
        cleans: list[CleanTrace] = []
        for index, item in enumerate(items):
            prefix = f"trace {index}: " if len(items) > 1 else ""
            try:
                clean = validate_trace(item)
            except TraceInvalid as exc:
                errors.extend(f"{prefix}{key}: {' '.join(msgs)}" for key, msgs in exc.errors.items())
                continue
            if clean.size > settings.TRACE_MAX_BYTES:
                errors.append(f"{prefix}the trace is larger than {settings.TRACE_MAX_BYTES:,} bytes.")
            cleans.append(clean)
        if errors:
            raise forms.ValidationError(errors)
        return cleans


class TraceFileForm(forms.Form):
    """A `.jsonl` file or a `.json` array of traces."""

    file = forms.FileField(
        label="Trace file (.jsonl or .json array)",
        error_messages={
            "required": "No file was sent.",
            "invalid": "No file was sent (the form must be sent as multipart/form-data).",
            "empty": "The file is empty.",
        },
    )
    source = forms.CharField(
        max_length=128, required=False, help_text="Used for traces whose meta names no source."
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith((".jsonl", ".ndjson", ".json")):
            raise forms.ValidationError("Choose a .jsonl or .json file.")
        if upload.size > settings.TRACE_UPLOAD_MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {settings.TRACE_UPLOAD_MAX_BYTES:,} bytes.")
        return upload


class CompareForm(forms.Form):
    base = forms.IntegerField(min_value=1, label="Trace A")
    other = forms.IntegerField(min_value=1, label="Trace B")
