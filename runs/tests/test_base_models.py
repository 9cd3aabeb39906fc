"""The base-model catalog: folders under MODELS_DIR in Hugging Face layout, the page, the API and add_base_model."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from runs.basemodels import catalog, human_count, inspect_folder
from runs.tests.checkpoint_support import VOCAB, specials_of, write_checkpoint
from runs.validation import base_model_choices, local_models, resolve_base_model, validate_launch
from traces.models import Dataset

FAMILY_LABELS = {
    "qwen3": "Qwen3",
    "qwen2": "Qwen2.5",
    "llama": "Llama 3",
    "gemma3_text": "Gemma 3",
    "gemma3": "Gemma 3",
}


def only(models: Path) -> Any:
    """The one catalog entry (each test writes one folder under MODELS_DIR)."""
    [entry] = catalog()
    return entry


def html(response: Any) -> str:
    return str(response.content.decode())


@pytest.mark.parametrize("family", list(FAMILY_LABELS))
def test_each_family_is_detected_with_its_parameter_count_and_dtype(settings: Any, family: str) -> None:
    tensors = write_checkpoint(settings.MODELS_DIR / "m", family, dtype=np.float16, generation_eos=[2, 7])
    entry = only(settings.MODELS_DIR)
    assert entry.usable, entry.reason
    assert entry.trainable, entry.reason
    assert entry.family == family
    assert entry.family_label == FAMILY_LABELS[family]
    assert entry.parameters == sum(math.prod(t.shape) for t in tensors.values())
    assert entry.dtype == "float16"
    assert entry.context_length == 512
    assert entry.tokenizer == "hf-json"
    assert entry.chat_template is True
    spec = specials_of(family)
    assert entry.special_tokens == {"bos": spec.bos, "eos": spec.eos, "pad": spec.pad}
    assert entry.eos_token_ids == [2, 7]
    assert entry.default_chat_template == {"qwen3": "chatml", "qwen2": "chatml", "llama": "llama3"}.get(
        family, "gemma"
    )
    files = [p for p in (settings.MODELS_DIR / "m").iterdir()]
    assert entry.size_bytes == sum(p.stat().st_size for p in files)


def test_a_bfloat16_checkpoint_reports_bfloat16(settings: Any) -> None:
    folder = settings.MODELS_DIR / "bf"
    tensors = write_checkpoint(folder, "qwen3")
    # numpy has no bfloat16: rewrite the header's dtype by hand, as a bf16 file would have it.
    raw = (folder / "model.safetensors").read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    for name, info in header.items():
        if name != "__metadata__":
            info["dtype"] = "BF16"
            start, end = info["data_offsets"]
            info["data_offsets"] = [start // 2, end // 2]
    body = json.dumps(header).encode()
    data = raw[8 + length :]
    (folder / "model.safetensors").write_bytes(len(body).to_bytes(8, "little") + body + data[: len(data) // 2])
    entry = only(settings.MODELS_DIR)
    assert entry.dtype == "bfloat16"
    assert entry.parameters == sum(t.size for t in tensors.values())


def test_tokenizer_kinds_and_what_the_trainer_accepts(settings: Any) -> None:
    write_checkpoint(settings.MODELS_DIR / "q-json", "qwen3", tokenizer="hf-json")
    write_checkpoint(settings.MODELS_DIR / "q-sp", "qwen3", tokenizer="sentencepiece")
    write_checkpoint(settings.MODELS_DIR / "q-both", "qwen3", tokenizer="both")
    write_checkpoint(settings.MODELS_DIR / "q-byte", "qwen3", tokenizer="byte")
    write_checkpoint(settings.MODELS_DIR / "gemma", "gemma3_text", tokenizer="both")
    entries = {m.name: m for m in catalog()}
    assert {n: m.tokenizer for n, m in entries.items()} == {
        "gemma": "both",
        "q-both": "both",
        "q-byte": "byte",
        "q-json": "hf-json",
        "q-sp": "sentencepiece",
    }
    assert all(m.usable and m.trainable for m in entries.values()), {n: m.reason for n, m in entries.items()}
    assert entries["q-byte"].chat_template is False


def test_a_sharded_checkpoint_counts_every_shard(settings: Any) -> None:
    tensors = write_checkpoint(settings.MODELS_DIR / "sharded", "llama", shards=3)
    entry = only(settings.MODELS_DIR)
    assert entry.usable, entry.reason
    assert entry.parameters == sum(t.size for t in tensors.values())


def test_a_missing_shard_is_the_reason(settings: Any) -> None:
    folder = settings.MODELS_DIR / "sharded"
    write_checkpoint(folder, "qwen3", shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    entry = only(settings.MODELS_DIR)
    assert not entry.usable and not entry.trainable
    assert entry.reason == "Missing shard model-00002-of-00002.safetensors (named in model.safetensors.index.json)."
    assert entry.family == "qwen3"


def test_shapes_that_disagree_with_the_config_are_the_reason(settings: Any) -> None:
    folder = settings.MODELS_DIR / "wrong"
    write_checkpoint(folder, "qwen3")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 100
    (folder / "config.json").write_text(json.dumps(config))
    assert only(settings.MODELS_DIR).reason == (
        f"model.embed_tokens.weight has shape [{VOCAB}, 16]; config.json implies [100, 16] (vocab_size, hidden_size)."
    )
    config |= {"vocab_size": VOCAB, "num_key_value_heads": 4}
    (folder / "config.json").write_text(json.dumps(config))
    assert only(settings.MODELS_DIR).reason == (
        "model.layers.0.self_attn.k_proj.weight has shape [16, 16]; config.json implies [32, 16] "
        "(num_key_value_heads × head_dim, hidden_size)."
    )
    config |= {"num_key_value_heads": 2, "intermediate_size": 32}
    (folder / "config.json").write_text(json.dumps(config))
    assert only(settings.MODELS_DIR).reason.startswith("model.layers.0.mlp.gate_proj.weight has shape [24, 16]")
    config |= {"intermediate_size": 24, "num_hidden_layers": 3}
    (folder / "config.json").write_text(json.dumps(config))
    assert only(settings.MODELS_DIR).reason == "config.json says num_hidden_layers=3; the weights hold 2 layers."


def test_newer_multimodal_gemma3_names_are_usable_but_not_trainable(settings: Any) -> None:
    # transformers >= 4.52 writes model.language_model.*; Tunix 0.1.7's loader reads language_model.model.*.
    write_checkpoint(settings.MODELS_DIR / "g", "gemma3", prefix="model.language_model.")
    entry = only(settings.MODELS_DIR)
    assert entry.usable and not entry.trainable
    assert entry.reason == (
        "Detected Gemma 3 with tensors under 'model.language_model.'; Tunix's loader reads "
        "'model.' or 'language_model.model.' only."
    )


def test_a_folder_without_a_tokenizer_is_the_reason(settings: Any) -> None:
    write_checkpoint(settings.MODELS_DIR / "notok", "gemma3_text", tokenizer="none")
    assert only(settings.MODELS_DIR).reason.startswith("No tokenizer: expected tokenizer.json, tokenizer.model")


def test_an_unknown_model_type_is_the_reason(settings: Any) -> None:
    folder = settings.MODELS_DIR / "mistral"
    write_checkpoint(folder, "llama")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "mistral"}))
    entry = only(settings.MODELS_DIR)
    assert entry.reason.startswith("Unknown model_type 'mistral' in config.json (known: gemma3, gemma3_text")
    assert entry.family == ""


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "config.json").write_text("{not json"), "config.json is not readable JSON"),
        (lambda f: (f / "config.json").unlink(), "No config.json."),
        (lambda f: (f / "model.safetensors").write_bytes(b"\x01\x02"), "model.safetensors is not a safetensors file"),
        (
            lambda f: (f / "model.safetensors").write_bytes((5).to_bytes(8, "little") + b"{oops"),
            "model.safetensors has an unreadable safetensors header",
        ),
        (lambda f: (f / "model.safetensors").unlink(), "No *.safetensors weights."),
        (lambda f: (f / "tokenizer.json").write_text("[]"), "tokenizer.json is not a tokenizer"),
    ],
)
def test_unreadable_files_are_the_reason(settings: Any, damage: Any, reason: str) -> None:
    folder = settings.MODELS_DIR / "broken"
    write_checkpoint(folder, "qwen3")
    damage(folder)
    entry = only(settings.MODELS_DIR)
    assert not entry.usable
    assert entry.reason.startswith(reason)


def test_a_missing_key_tensor_is_the_reason(settings: Any) -> None:
    folder = settings.MODELS_DIR / "partial"
    tensors = write_checkpoint(folder, "qwen2")
    del tensors["model.layers.0.self_attn.o_proj.weight"]
    safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"))
    assert (
        only(settings.MODELS_DIR).reason == "No tensor model.layers.0.self_attn.o_proj.weight in the safetensors files."
    )


def test_untied_weights_without_an_output_projection_are_the_reason(settings: Any) -> None:
    folder = settings.MODELS_DIR / "untied"
    tensors = write_checkpoint(folder, "llama")
    del tensors["lm_head.weight"]
    safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"))
    reason = only(settings.MODELS_DIR).reason
    assert reason == "config.json says tie_word_embeddings=false but there is no lm_head.weight."


def test_the_catalog_is_cached_until_a_file_changes(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import runs.basemodels as basemodels

    folder = settings.MODELS_DIR / "m"
    write_checkpoint(folder, "qwen3", tokenizer="byte")
    assert only(settings.MODELS_DIR).trainable
    calls: list[Path] = []
    real = basemodels.inspect_folder

    def counted(folder: Path, name: str | None = None) -> Any:
        calls.append(folder)
        return real(folder, name)

    monkeypatch.setattr(basemodels, "inspect_folder", counted)
    assert only(settings.MODELS_DIR).trainable
    assert calls == []
    (folder / "model.safetensors").unlink()
    assert only(settings.MODELS_DIR).reason == "No *.safetensors weights."
    assert calls == [folder]


def test_human_parameter_counts() -> None:
    assert [human_count(n) for n in (268_098_176, 596_049_920, 1_720_574_976, 12_187_325_040, 52_000, 999)] == [
        "268 M",
        "0.6 B",
        "1.7 B",
        "12.2 B",
        "52 K",
        "999",
    ]


def test_the_page_lists_every_folder_with_its_status(viewer_page: Client, settings: Any) -> None:
    write_checkpoint(settings.MODELS_DIR / "qwen-byte", "qwen3", tokenizer="byte")
    write_checkpoint(settings.MODELS_DIR / "gemma", "gemma3_text", tokenizer="both")
    write_checkpoint(settings.MODELS_DIR / "notok", "llama", tokenizer="none")
    response = viewer_page.get("/models/base/")
    assert response.status_code == 200
    text = html(response)
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr id="base-model-([\w-]+)">(.*?)</tr>', text, re.S)}
    assert list(rows) == ["gemma", "notok", "qwen-byte"]
    assert "Gemma 3" in rows["gemma"] and "both" in rows["gemma"] and "yes" in rows["gemma"]
    assert "runs use gemma" in rows["gemma"] and "badge ready" in rows["gemma"]
    assert "unusable" in rows["notok"] and "No tokenizer" in rows["notok"]
    assert "badge ready" in rows["qwen-byte"] and "Qwen3" in rows["qwen-byte"] and "float32" in rows["qwen-byte"]
    assert "<td>512</td>" in rows["qwen-byte"]


def test_the_page_needs_a_login(client: Client, db: Any) -> None:
    response = client.get("/models/base/")
    assert response.status_code == 302
    assert "/login" in response["Location"]


def test_the_api_lists_the_catalog_to_a_viewer(viewer_api: Any, settings: Any) -> None:
    tensors = write_checkpoint(settings.MODELS_DIR / "llama", "llama", generation_eos=[0, 4])
    response = viewer_api.get("/api/base-models")
    assert response.status_code == 200
    [entry] = response.json()
    assert entry == {
        "name": "llama",
        "key": "local:llama",
        "family": "llama",
        "family_label": "Llama 3",
        "parameters": sum(t.size for t in tensors.values()),
        "parameters_label": human_count(sum(t.size for t in tensors.values())),
        "dtype": "float32",
        "size_bytes": entry["size_bytes"],
        "context_length": 512,
        "tokenizer": "hf-json",
        "chat_template": True,
        "default_chat_template": "llama3",
        "special_tokens": {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": None},
        "eos_token_ids": [0, 4],
        "usable": True,
        "trainable": True,
        "reason": "",
    }
    assert entry["size_bytes"] > 0
    assert viewer_api.post("/api/base-models", {}, format="json").status_code in (403, 405)


def test_the_api_needs_a_login(db: Any) -> None:
    from rest_framework.test import APIClient

    assert APIClient().get("/api/base-models").status_code in (401, 403)


def test_the_api_with_session_auth(user: Any, settings: Any) -> None:
    write_checkpoint(settings.MODELS_DIR / "q", "qwen3", tokenizer="sentencepiece")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.get("/api/base-models")
    assert response.status_code == 200
    assert [m["trainable"] for m in response.json()] == [True]


def test_the_launch_form_offers_only_trainable_base_models(page: Client, dataset: Dataset, settings: Any) -> None:
    write_checkpoint(settings.MODELS_DIR / "qwen-sp", "qwen3", tokenizer="sentencepiece")
    write_checkpoint(settings.MODELS_DIR / "qwen-json", "qwen3", tokenizer="hf-json")
    write_checkpoint(settings.MODELS_DIR / "gemma", "gemma3", prefix="model.language_model.")
    write_checkpoint(settings.MODELS_DIR / "broken", "qwen3", tokenizer="none")
    text = html(page.get("/runs/new/", {"dataset": dataset.key}))
    for name in ("qwen-sp", "qwen-json"):
        assert f'<option value="local:{name}"' in text
    for name in ("gemma", "broken"):
        assert f'value="local:{name}"' not in text
    assert 'href="/models/base/"' in text and "Base models…" in text
    assert local_models() == ["qwen-json", "qwen-sp"]
    assert [k for k, _ in base_model_choices()] == ["tiny", "small", "local:qwen-json", "local:qwen-sp"]
    assert resolve_base_model("local:qwen-sp")["path"] == str(settings.MODELS_DIR / "qwen-sp")
    with pytest.raises(KeyError):
        resolve_base_model("local:gemma")


def test_launching_on_a_detected_but_untrainable_model_names_the_reason(
    api: Any, dataset: Dataset, settings: Any
) -> None:
    write_checkpoint(settings.MODELS_DIR / "gemma", "gemma3", prefix="model.language_model.")
    response = api.post("/api/runs", {"dataset": dataset.key, "base_model": "local:gemma"}, format="json")
    assert response.status_code == 400
    [message] = response.json()["base_model"]
    assert message.startswith("Base model 'local:gemma' cannot be trained: Detected Gemma 3 with tensors under")
    write_checkpoint(settings.MODELS_DIR / "qwen", "qwen3", tokenizer="byte")
    assert validate_launch({"dataset": dataset.key, "base_model": "local:qwen"})["base_model"] == "local:qwen"


def test_add_base_model_copies_a_valid_folder(settings: Any, tmp_path: Path) -> None:
    source = tmp_path / "downloads" / "Qwen3-tiny"
    write_checkpoint(source, "qwen3", tokenizer="both")
    call_command("add_base_model", str(source))
    target = settings.MODELS_DIR / "Qwen3-tiny"
    assert target.is_dir() and not target.is_symlink()
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in source.iterdir())
    assert local_models() == ["Qwen3-tiny"]


def test_add_base_model_links_under_another_name(settings: Any, tmp_path: Path) -> None:
    source = tmp_path / "downloads" / "gemma-3-270m"
    write_checkpoint(source, "gemma3_text", tokenizer="both")
    call_command("add_base_model", str(source), "--name", "gemma-small", "--link")
    target = settings.MODELS_DIR / "gemma-small"
    assert target.is_symlink() and target.resolve() == source.resolve()
    entry = only(settings.MODELS_DIR)
    assert entry.name == "gemma-small" and entry.usable and entry.trainable


def test_add_base_model_refuses_an_unusable_folder_with_the_reason(settings: Any, tmp_path: Path) -> None:
    source = tmp_path / "downloads" / "sharded"
    write_checkpoint(source, "qwen3", shards=2)
    (source / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(CommandError) as caught:
        call_command("add_base_model", str(source))
    assert str(caught.value) == (
        f"{source} is not a usable base model: Missing shard model-00001-of-00002.safetensors "
        "(named in model.safetensors.index.json)."
    )
    assert list(settings.MODELS_DIR.iterdir()) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "x" * 101, "-dash", "a b"])
def test_add_base_model_refuses_an_unsafe_name(settings: Any, tmp_path: Path, name: str) -> None:
    source = tmp_path / "src"
    write_checkpoint(source, "qwen3")
    with pytest.raises(CommandError, match="Invalid name"):
        call_command("add_base_model", str(source), name=name)
    assert list(settings.MODELS_DIR.iterdir()) == []


def test_add_base_model_refuses_to_overwrite(settings: Any, tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_checkpoint(source, "qwen3")
    (settings.MODELS_DIR / "taken").mkdir()
    with pytest.raises(CommandError, match="A base model named 'taken' already exists"):
        call_command("add_base_model", str(source), "--name", "taken")
    assert list((settings.MODELS_DIR / "taken").iterdir()) == []


def test_add_base_model_exits_1_on_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("add_base_model", str(tmp_path / "nope"))


def test_inspect_folder_reads_no_weights(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = settings.MODELS_DIR / "m"
    write_checkpoint(folder, "qwen3")
    header_end = 8 + int.from_bytes((folder / "model.safetensors").read_bytes()[:8], "little")
    # Truncate the tensor data: only the header is read, so the folder still inspects.
    with (folder / "model.safetensors").open("r+b") as f:
        f.truncate(header_end + 1)
    assert inspect_folder(folder).parameters is not None
