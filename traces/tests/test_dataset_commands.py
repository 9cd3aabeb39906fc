"""The build_dataset and export_dataset management commands."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from traces.choices import DatasetStatus, Split
from traces.models import Dataset
from traces.tests.datasets_support import build, make_trace, md5_order, member_ids

pytestmark = pytest.mark.django_db


def run_build(*args: str) -> str:
    out = io.StringIO()
    call_command("build_dataset", *args, stdout=out)
    return out.getvalue()


def test_build_command_builds_from_filters_and_reports_the_counts():
    gsm = [make_trace(meta={"source": "gsm", "tags": ["math"]}, steps=2) for _ in range(10)]
    make_trace(meta={"source": "arc"})
    output = run_build(
        "gsm-math", "--source", "gsm", "--tag", "math", "--strategy", "random", "--seed", "9",
        "--validation-fraction", "0.2", "--validation-seed", "1", "--description", "from the command",
    )
    dataset = Dataset.objects.by_key("gsm-math@v1")
    assert dataset.status == DatasetStatus.READY
    assert dataset.description == "from the command"
    assert member_ids(dataset) == md5_order(9, [t.pk for t in gsm])
    assert len(member_ids(dataset, Split.VALIDATION)) == 2
    tokens = dataset.stats["tokens_estimate"]
    assert output.strip() == f"Built gsm-math@v1: 10 traces (8 train, 2 validation), ≈{tokens:,} tokens"


def test_build_command_takes_explicit_ids_and_versions_like_the_api():
    made = [make_trace() for _ in range(5)]
    run_build("picked", "--trace-ids", f"{made[3].pk},{made[0].pk}", "--strategy", "all")
    run_build("picked", "--trace-ids", f"{made[1].pk}", "--limit", "1")
    assert member_ids(Dataset.objects.by_key("picked@v1")) == [made[0].pk, made[3].pk]
    assert member_ids(Dataset.objects.by_key("picked@v2")) == [made[1].pk]


def test_build_command_gives_the_same_result_as_the_api(api):
    for n in range(12):
        make_trace(steps=1 + n % 4)
    run_build("same", "--min-steps", "2", "--strategy", "random", "--seed", "5", "--limit", "7")
    response = api.post(
        "/api/datasets", {"name": "same", "min_steps": 2, "strategy": "random", "seed": 5, "limit": 7}, format="json"
    )
    assert response.status_code == 201
    assert member_ids(Dataset.objects.by_key("same@v1")) == member_ids(Dataset.objects.by_key("same@v2"))


def test_build_command_builds_large_datasets_inline_without_a_worker(settings):
    settings.DATASET_INLINE_MAX = 1
    for _ in range(4):
        make_trace()
    run_build("big")
    dataset = Dataset.objects.by_key("big@v1")
    assert dataset.status == DatasetStatus.READY
    assert dataset.stats["count"] == 4


def test_export_command_writes_a_file(tmp_path: Path):
    make_trace(prompt="Only one")
    build("one")
    out = tmp_path / "one.jsonl"
    err = io.StringIO()
    call_command("export_dataset", "one@v1", str(out), "--format", "chat", stderr=err)
    record = json.loads(out.read_bytes())
    assert record["messages"][0] == {"role": "user", "content": "Only one"}
    assert record["messages"][1]["role"] == "assistant"
    assert "1 records written" in err.getvalue()


def test_export_command_writes_to_standard_output(capfdbinary):
    for _ in range(10):
        make_trace()
    build("std", validation_fraction=0.3)
    call_command("export_dataset", "std@v1", "-", "--format", "training_example", "--split", "validation")
    out, err = capfdbinary.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(set(json.loads(line)) == {"prompt", "response"} for line in lines)
    assert b"3 records written" in err


def test_export_command_refuses_an_unknown_format_or_split():
    make_trace()
    build("one")
    with pytest.raises(CommandError, match="format"):
        call_command("export_dataset", "one@v1", "-", "--format", "csv")
    with pytest.raises(CommandError, match="split"):
        call_command("export_dataset", "one@v1", "-", "--split", "test")


def test_export_command_reports_an_unwritable_path(tmp_path: Path):
    make_trace()
    build("one")
    with pytest.raises(CommandError, match="Cannot write"):
        call_command("export_dataset", "one@v1", str(tmp_path / "missing" / "out.jsonl"))
