"""Dataset export: exact JSONL per format, splits, stable bytes, errors, one result from every door, streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models.query import QuerySet
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from traces import exporting
from traces.choices import DatasetStatus, Split
from traces.datasets.exporting import iter_dataset_lines
from traces.models import Dataset, DatasetMember, Trace
from traces.tests.datasets_support import build, make_trace, member_ids

pytestmark = pytest.mark.django_db

FORMATS = ["trace", "tunix_sft", "training_example", "chat"]
SPLITS = ["all", "train", "validation"]


@pytest.fixture
def known() -> Trace:
    """The spec's example trace, its steps given out of order (they are stored and exported by `i`)."""
    return make_trace(
        prompt="Convert 68°F to Celsius",
        steps=[
            {"i": 5, "type": "compute", "content": "(68 - 32) × 5/9 = 20"},
            {"i": 0, "type": "parse", "content": "Parse the task: 68°F to °C"},
            {"i": 2, "type": "formula", "content": '°C = (°F - 32) × 5/9, "the formula"'},
        ],
        final_answer="20°C",
        # Key order as PostgreSQL's jsonb stores it (shorter keys first), so both databases agree.
        meta={"tags": ["temperature"], "source": "example"},
    )


def expected_line(fmt: str, trace_id: int) -> bytes:
    """Written out by hand: compact JSON, UTF-8 (no \\u escapes), one line each."""
    lines = {
        "trace": (
            f'{{"id":{trace_id},"prompts":"Convert 68°F to Celsius",'
            '"trace_steps":["Parse the task: 68°F to °C","°C = (°F - 32) × 5/9, \\"the formula\\"",'
            '"(68 - 32) × 5/9 = 20"],"final_answer":"20°C",'
            '"metadata":{"tags":["temperature"],"source":"example"}}'
        ),
        "tunix_sft": (
            '{"text":"<start_of_turn>user\\nConvert 68°F to Celsius<end_of_turn>\\n'
            "<start_of_turn>model\\nReasoning:\\n1. Parse the task: 68°F to °C\\n"
            '2. °C = (°F - 32) × 5/9, \\"the formula\\"\\n3. (68 - 32) × 5/9 = 20\\n'
            'Answer: 20°C<end_of_turn>"}'
        ),
        "training_example": (
            '{"prompt":"Convert 68°F to Celsius",'
            '"response":"Reasoning:\\n1. Parse the task: 68°F to °C\\n'
            '2. °C = (°F - 32) × 5/9, \\"the formula\\"\\n3. (68 - 32) × 5/9 = 20\\nAnswer: 20°C"}'
        ),
        "chat": (
            '{"messages":[{"role":"user","content":"Convert 68°F to Celsius"},'
            '{"role":"assistant","content":"Reasoning:\\n1. Parse the task: 68°F to °C\\n'
            '2. °C = (°F - 32) × 5/9, \\"the formula\\"\\n3. (68 - 32) × 5/9 = 20\\nAnswer: 20°C"}]}'
        ),
    }
    return lines[fmt].encode() + b"\n"


def streamed(response: StreamingHttpResponse) -> bytes:
    return b"".join(cast(Iterator[bytes], response.streaming_content))


def download(client: Any, url: str, **params: str) -> bytes:
    response = client.get(url, params)
    assert response.status_code == 200, getattr(response, "content", b"")
    assert isinstance(response, StreamingHttpResponse)
    return streamed(response)


def api_url(key: str) -> str:
    return f"/api/datasets/{key}/export"


def page_url(key: str) -> str:
    return f"/datasets/{key}/export/"


@pytest.fixture
def split_dataset() -> Dataset:
    """Ten traces, three of them in the validation split, in a seeded order."""
    for n in range(10):
        make_trace(steps=1 + n % 3)
    return build("split", strategy="random", seed=3, validation_fraction=0.3, validation_seed=8)


def exported_ids(body: bytes) -> list[int]:
    return [json.loads(line)["id"] for line in body.splitlines()]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_writes_exactly_the_expected_line(api, known, fmt):
    build("known", trace_ids=[known.pk])
    body = download(api, api_url("known@v1"), format=fmt)
    assert body == expected_line(fmt, known.pk)


def test_the_default_format_is_trace_and_the_default_split_all(api, known):
    build("known", trace_ids=[known.pk])
    assert download(api, api_url("known@v1")) == expected_line("trace", known.pk)


def test_the_download_is_named_after_key_format_and_split(api, page, known):
    build("known", trace_ids=[known.pk])
    for client, url in ((api, api_url("known@v1")), (page, page_url("known@v1"))):
        response = client.get(url, {"format": "chat", "split": "train"})
        assert response["Content-Type"] == "application/x-ndjson"
        assert response["Content-Disposition"] == 'attachment; filename="known-v1.chat.train.jsonl"'


def test_splits_export_their_members_in_position_order(api, split_dataset):
    key = split_dataset.key
    assert exported_ids(download(api, api_url(key), split="all")) == member_ids(split_dataset)
    train = exported_ids(download(api, api_url(key), split="train"))
    validation = exported_ids(download(api, api_url(key), split="validation"))
    assert train == member_ids(split_dataset, Split.TRAIN)
    assert validation == member_ids(split_dataset, Split.VALIDATION)
    assert (len(train), len(validation)) == (7, 3)
    assert sorted(train + validation) == sorted(member_ids(split_dataset))


@pytest.mark.parametrize("fmt", FORMATS)
def test_exporting_twice_gives_identical_bytes(api, split_dataset, fmt):
    first = download(api, api_url(split_dataset.key), format=fmt)
    second = download(api, api_url(split_dataset.key), format=fmt)
    assert first == second
    assert first.count(b"\n") == 10


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("split", SPLITS)
def test_api_page_and_command_export_the_same_bytes(api, page, split_dataset, tmp_path, fmt, split):
    key = split_dataset.key
    from_api = download(api, api_url(key), format=fmt, split=split)
    from_page = download(page, page_url(key), format=fmt, split=split)
    out = tmp_path / "out.jsonl"
    call_command("export_dataset", key, str(out), "--format", fmt, "--split", split)
    assert from_api == from_page == out.read_bytes()
    assert from_api.count(b"\n") == {"all": 10, "train": 7, "validation": 3}[split]


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"format": "csv"}, {"format"}),
        ({"split": "test"}, {"split"}),
        ({"format": "json", "split": "eval"}, {"format", "split"}),
        ({"format": ""}, {"format"}),
    ],
)
def test_an_unknown_format_or_split_is_400(api, page, split_dataset, params, fields):
    response = api.get(api_url(split_dataset.key), params)
    assert response.status_code == 400
    assert set(response.json()) == fields
    assert page.get(page_url(split_dataset.key), params).status_code == 400


@pytest.mark.parametrize("key", ["split@v2", "nothing@v1", "split", "split@vx", "split@v-1"])
def test_an_unknown_or_malformed_key_is_404(api, page, split_dataset, key):
    assert api.get(api_url(key)).status_code == 404
    assert page.get(page_url(key)).status_code == 404
    with pytest.raises(CommandError, match="No dataset"):
        call_command("export_dataset", key, "-")


@pytest.mark.parametrize("status", [DatasetStatus.PENDING, DatasetStatus.BUILDING, DatasetStatus.FAILED])
def test_a_dataset_that_is_not_ready_cannot_be_exported(api, page, status):
    Dataset.objects.create(name="later", version=1, status=status)
    response = api.get(api_url("later@v1"))
    assert response.status_code == 409
    assert "not ready" in response.json()["detail"]
    assert page.get(page_url("later@v1")).status_code == 409
    with pytest.raises(CommandError, match="not ready"):
        call_command("export_dataset", "later@v1", "-")


def test_the_export_reads_no_member_until_the_body_is_streamed(api, split_dataset):
    member_table = DatasetMember._meta.db_table
    with CaptureQueriesContext(connection) as before:
        response = api.get(api_url(split_dataset.key))
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert not [q for q in before.captured_queries if member_table in q["sql"]]
    with CaptureQueriesContext(connection) as during:
        body = streamed(response)
    assert body.count(b"\n") == 10
    assert [q for q in during.captured_queries if member_table in q["sql"]]


def test_lines_come_from_a_chunked_queryset_iterator_one_at_a_time(monkeypatch, split_dataset):
    calls: list[dict[str, Any]] = []
    pulled = 0
    original = QuerySet.iterator

    def spy(self: QuerySet[Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        nonlocal pulled
        calls.append({"model": self.model, "args": args, "kwargs": kwargs})
        for row in original(self, *args, **kwargs):
            pulled += 1
            yield row

    monkeypatch.setattr(QuerySet, "iterator", spy)
    with CaptureQueriesContext(connection) as at_creation:
        lines = iter_dataset_lines(split_dataset, "trace", "all")
    assert len(at_creation) == 0, "nothing is read before the first line is asked for"
    first = next(lines)
    assert calls == [{"model": DatasetMember, "args": (), "kwargs": {"chunk_size": exporting.EXPORT_CHUNK}}]
    assert pulled == 1
    assert json.loads(first)["id"] == member_ids(split_dataset)[0]
    rest = list(lines)
    assert pulled == 10
    assert len(rest) == 9


def test_iter_dataset_lines_refuses_unknown_formats_and_splits(split_dataset):
    with pytest.raises(ValueError, match="format"):
        next(iter_dataset_lines(split_dataset, "csv"))
    with pytest.raises(ValueError, match="split"):
        next(iter_dataset_lines(split_dataset, "trace", "test"))
