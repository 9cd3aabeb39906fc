"""Dataset exports in each family's chat template: tunix_sft's text and chat's added text, every door."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from traces.datasets.exporting import iter_dataset_lines
from traces.tests.datasets_support import build, make_trace

pytestmark = pytest.mark.django_db

RESPONSE = "Reasoning:\n1. add\nAnswer: 4"


@pytest.fixture
def dataset() -> Any:
    make_trace(prompt="What is 2 + 2?", steps=[{"i": 0, "type": "note", "content": "add"}], final_answer="4")
    return build("tpl", strategy="all", validation_fraction=0)


def records(dataset: Any, fmt: str, template: str | None) -> list[dict[str, Any]]:
    return [json.loads(line) for line in iter_dataset_lines(dataset, fmt, "all", template)]


def test_tunix_sft_renders_the_chosen_template_and_defaults_to_gemma_turns(dataset: Any) -> None:
    gemma = f"<start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n<start_of_turn>model\n{RESPONSE}<end_of_turn>"
    assert records(dataset, "tunix_sft", None) == [{"text": gemma}]
    assert records(dataset, "tunix_sft", "gemma") == [{"text": gemma}]
    assert records(dataset, "tunix_sft", "chatml") == [
        {"text": f"<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n{RESPONSE}<|im_end|>"}
    ]
    assert records(dataset, "tunix_sft", "llama3") == [
        {
            "text": "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>"
            f"<|start_header_id|>assistant<|end_header_id|>\n\n{RESPONSE}<|eot_id|>"
        }
    ]


def test_chat_keeps_its_messages_and_adds_the_rendered_text_only_when_asked(dataset: Any) -> None:
    messages = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": RESPONSE}]
    assert records(dataset, "chat", None) == [{"messages": messages}]
    (record,) = records(dataset, "chat", "chatml")
    assert record["messages"] == messages and record["text"].startswith("<|im_start|>user\n")


def test_every_door_takes_the_template_and_names_it_when_wrong(
    dataset: Any, page: Any, api: Any, tmp_path: Any
) -> None:
    url = f"/api/datasets/{dataset.key}/export?format=tunix_sft&template=chatml"
    response = api.get(url)
    assert response.status_code == 200
    assert b"<|im_start|>" in b"".join(response.streaming_content)
    assert "chatml" in response["Content-Disposition"]
    bad = api.get(f"/api/datasets/{dataset.key}/export?format=tunix_sft&template=vicuna")
    assert bad.status_code == 400 and "template" in bad.json()
    wrong_format = api.get(f"/api/datasets/{dataset.key}/export?format=trace&template=chatml")
    assert wrong_format.status_code == 400 and "takes no template" in wrong_format.json()["template"][0]

    page_answer = page.get(f"/datasets/{dataset.key}/export/?format=chat&template=llama3&split=all")
    assert page_answer.status_code == 200
    assert b"<|eot_id|>" in b"".join(page_answer.streaming_content)
    assert page.get(f"/datasets/{dataset.key}/export/?format=chat&template=nope").status_code == 400
    detail = page.get(f"/datasets/{dataset.key}/").content.decode()
    assert 'id="template-export"' in detail and 'value="chatml"' in detail

    out = tmp_path / "out.jsonl"
    call_command(
        "export_dataset", dataset.key, str(out), "--format", "tunix_sft", "--template", "llama3", stderr=io.StringIO()
    )
    assert "<|start_header_id|>" in out.read_text()
    with pytest.raises(CommandError, match="takes no template"):
        call_command("export_dataset", dataset.key, str(out), "--format", "trace", "--template", "gemma")
