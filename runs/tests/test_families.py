"""Every model family Tunix 0.1.7 ships is a base model: Qwen3, Qwen2.5, Llama 3, Gemma 3.

Each test folder is a genuine Hugging Face checkpoint at tiny sizes (the
family's config.json keys, tensor names as `transformers` writes them, a
byte-level BPE tokenizer.json trained with the `tokenizers` package with the
family's special tokens, tokenizer_config.json, generation_config.json; see
checkpoint_support.py). Runs train on it through the worker, loading weights
with the family's own Tunix loader, and evaluations generate from it with
Tunix's sampler. Broken folders are refused at launch with the reason.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from runs.choices import RunStatus
from runs.evaluation.running import execute_evaluation, launch_evaluation
from runs.execution import execute_run
from runs.models import Prediction, Run, RunMetric
from runs.tests.checkpoint_support import VOCAB, specials_of, token_ids, write_checkpoint
from runs.tests.eval_support import make_eval_set, record_evaluation_tasks, use_eval_folders
from runs.tests.run_support import log_text, make_run, output
from runs.training import templates
from runs.training.data import encode_examples
from runs.training.tokenizers import HFTokenizer, load_tokenizer, stop_ids
from traces.models import Dataset

# A few steps on small shapes: each family compiles its own train step and sampler.
TRAIN: dict[str, Any] = {
    "max_steps": 4,
    "batch_size": 4,
    "max_seq_length": 64,
    "warmup_steps": 1,
    "eval_every_steps": 4,
    "checkpoint_every_steps": 4,
    "learning_rate": 0.01,
    "timeout_seconds": 300,
}
DEFAULT_TEMPLATES = {"qwen3": "chatml", "qwen2": "chatml", "llama": "llama3", "gemma3_text": "gemma", "gemma3": "gemma"}
ON_POSTGRES_ONLY = pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="one training run per family is slow on 2 CPU cores; they run on the PostgreSQL + Redis pass",
)


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Path) -> None:
    use_eval_folders(settings, tmp_path)


def _train_then_evaluate(settings: Any, dataset: Dataset, monkeypatch: Any, family: str, method: str) -> None:
    write_checkpoint(settings.MODELS_DIR / family, family)
    run = make_run(dataset, base_model=f"local:{family}", method=method, **TRAIN)
    assert run.chat_template == DEFAULT_TEMPLATES[family], "no template named: the family's own"

    status = execute_run(run.pk)
    run.refresh_from_db()
    losses = list(RunMetric.objects.filter(run=run, name="train_loss").values_list("value", flat=True))
    assert len(losses) == TRAIN["max_steps"], (run.error, log_text(run)[-3000:])
    assert all(math.isfinite(v) for v in losses)
    assert f"'path': '{settings.MODELS_DIR / family}'" in log_text(run)
    assert status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    # The final model is in the family's Hugging Face layout, with the base's tokenizer files.
    final = output(run) / "final"
    written = json.loads((final / "config.json").read_text())
    assert written["model_type"] == ("gemma3_text" if family.startswith("gemma3") else family)
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    base = settings.MODELS_DIR / family
    assert (final / "tokenizer_config.json").read_text() == (base / "tokenizer_config.json").read_text()
    if method == "lora":
        adapter = json.loads((final / "adapter" / "adapter_config.json").read_text())
        assert adapter["peft_type"] == "LORA" and adapter["r"] == run.lora_rank
        assert (final / "adapter" / "adapter_model.safetensors").is_file()
    assert math.isfinite(run.summary["final_train_loss"]) and math.isfinite(run.summary["final_eval_loss"])
    assert run.summary["steps_done"] == TRAIN["max_steps"]
    assert len(run.summary["samples"]) == 2

    sent = record_evaluation_tasks(monkeypatch)
    evaluation = launch_evaluation(run, make_eval_set(f"quiz-{method}"), max_new_tokens=8)
    assert sent == [(evaluation.pk,)]
    assert execute_evaluation(evaluation.pk) == RunStatus.COMPLETED
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.COMPLETED, evaluation.error
    assert Prediction.objects.filter(evaluation=evaluation).count() == 4 == evaluation.done


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["full", pytest.param("lora", marks=ON_POSTGRES_ONLY)])
def test_a_qwen3_checkpoint_trains_and_its_run_is_evaluated(settings, dataset, monkeypatch, method):
    _train_then_evaluate(settings, dataset, monkeypatch, "qwen3", method)


@ON_POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("family", ["qwen2", "llama", "gemma3_text"])
def test_each_family_trains_with_its_own_loader(settings, dataset, monkeypatch, family, method):
    _train_then_evaluate(settings, dataset, monkeypatch, family, method)


@ON_POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("family", ["qwen2", "llama", "gemma3_text", "gemma3"])
def test_each_familys_base_model_is_evaluated_with_its_template_and_stop_tokens(settings, dataset, monkeypatch, family):
    write_checkpoint(settings.MODELS_DIR / family, family)
    run = make_run(dataset, base_model=f"local:{family}", **TRAIN)
    sent = record_evaluation_tasks(monkeypatch)
    evaluation = launch_evaluation(run, make_eval_set("quiz"), baseline=True, max_new_tokens=8)
    assert sent == [(evaluation.pk,)]
    assert execute_evaluation(evaluation.pk) == RunStatus.COMPLETED
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.COMPLETED, evaluation.error
    assert Prediction.objects.filter(evaluation=evaluation).count() == 4 == evaluation.done


@pytest.mark.parametrize(
    "family",
    [
        "qwen3",
        "gemma3_text",  # Tunix's Gemma 3 config defaults to bfloat16 parameters
        pytest.param("qwen2", marks=ON_POSTGRES_ONLY),
        pytest.param("llama", marks=ON_POSTGRES_ONLY),
        pytest.param("gemma3", marks=ON_POSTGRES_ONLY),
    ],
)
def test_each_family_loads_its_weights_in_the_dtype_asked_for(tmp_path: Path, family: str) -> None:
    import numpy as np
    from flax import nnx

    from runs.training import modeling

    tensors = write_checkpoint(tmp_path, family)
    embedding = next(v for k, v in tensors.items() if k.endswith("embed_tokens.weight"))
    logits = {}
    for dtype in ("float32", "bfloat16"):
        loaded = modeling.build_base({"kind": "local", "path": str(tmp_path)}, 0, dtype=dtype)
        params = {
            ".".join(map(str, path)): v.get_value()
            for path, v in nnx.iter_graph(loaded.model)
            if isinstance(v, nnx.Param)
        }
        assert {str(p.dtype) for p in params.values()} == {dtype}
        # The file's values, not a fresh initialisation (a silently mis-mapped load would differ).
        assert np.allclose(np.asarray(params["embedder.input_embedding"], np.float32), embedding, atol=1e-2)
        tok = loaded.tokenizer
        ids = tok.encode(templates.render(templates.for_family(family), "What is 1 + 2?")[0])
        x = np.array([ids])
        positions = np.arange(len(ids))[None]
        mask = np.tril(np.ones((1, len(ids), len(ids)), bool))
        out = loaded.model(x, positions, None, mask)
        logits[dtype] = np.asarray(out[0], np.float32)
        assert logits[dtype].shape == (1, len(ids), VOCAB) and np.isfinite(logits[dtype]).all()
    assert np.allclose(logits["float32"], logits["bfloat16"], atol=0.05)


# The tokenizer, from the folder's own files (no Django, no JAX).


@pytest.mark.parametrize("family", ["qwen3", "qwen2", "llama", "gemma3_text", "gemma3"])
def test_the_tokenizer_reads_the_folders_special_tokens(tmp_path: Path, family: str) -> None:
    write_checkpoint(tmp_path, family)
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, HFTokenizer)
    ids, spec = token_ids(family), specials_of(family)
    assert tok.vocab_size == VOCAB
    assert tok.bos_id() == (ids[spec.bos] if spec.bos else None)
    assert tok.eos_id() == ids[spec.eos]
    template = templates.for_family(family)
    turn_end = templates.get(template).stop[0]
    # The turn end and every EOS of generation_config.json stop sampling; nothing else.
    assert set(stop_ids(tok, template)) == {ids[turn_end], *(ids[t] for t in spec.generation_eos)}
    if family == "llama":
        # No pad token: another EOS pads, never <|eot_id|>, which ends every user turn.
        assert tok.pad_id() == ids["<|end_of_text|>"]
    else:
        assert tok.pad_id() == ids[spec.pad or ""]


@pytest.mark.parametrize("family", ["qwen3", "llama", "gemma3_text"])
def test_a_templates_special_tokens_encode_as_single_ids(tmp_path: Path, family: str) -> None:
    write_checkpoint(tmp_path, family)
    tok = load_tokenizer(tmp_path)
    template = templates.get(templates.for_family(family))
    text = template.text("What is 1 + 2?", "3")
    ids = tok.encode(text)
    markers = [t for t in specials_of(family).tokens if t in text]
    assert len(markers) >= 2
    for marker in markers:
        marker_id = tok.token_id(marker)
        assert marker_id is not None and tok.encode(marker) == [marker_id]
        assert ids.count(marker_id) == text.count(marker)
    assert ids[0] == tok.token_id(markers[0]) and ids[-1] == tok.token_id(template.stop[0])
    assert "What is 1 + 2?" in tok.decode(ids) and template.stop[0] not in tok.decode(ids)


def test_a_turn_ending_in_an_eos_token_is_not_given_a_second_one(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "qwen3")
    tok = load_tokenizer(tmp_path)
    encoded = encode_examples([{"prompt": "What is 1 + 2?", "response": "3"}], tok, 64, "chatml")
    row = [int(i) for i in encoded.tokens[0][: encoded.lengths[0]]]
    assert row[-1] == tok.token_id("<|im_end|>") and row[-2] != row[-1]
    assert row[0] == tok.token_id("<|im_start|>"), "Qwen has no BOS"
    # The byte tokenizer's Gemma turn still ends in its EOS id.
    from runs.training.tokenizers import ByteTokenizer

    byte = encode_examples([{"prompt": "p", "response": "r"}], ByteTokenizer(), 128, "gemma")
    assert byte.tokens[0][byte.lengths[0] - 1] == ByteTokenizer.EOS
    assert byte.tokens[0][0] == ByteTokenizer.BOS


def test_sentencepiece_ids_come_from_the_folders_files(tmp_path: Path) -> None:
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"What is {a} + {b}? {a + b}" for a in range(40) for b in range(5)))
    spm.SentencePieceTrainer.Train(
        input=str(corpus),
        model_prefix=str(tmp_path / "sp"),
        vocab_size=60,
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        add_dummy_prefix=False,  # as Gemma's tokenizer.model
    )
    folder = tmp_path / "gemma"
    write_checkpoint(folder, "gemma3_text", tokenizer="none")
    (tmp_path / "sp.model").rename(folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<end_of_turn>"}))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 4]}))
    tok = load_tokenizer(folder)
    end_of_turn = tok.token_id("<end_of_turn>")
    assert end_of_turn is not None and tok.eos_id() == end_of_turn
    assert tok.bos_id() == 2 and tok.pad_id() == 0
    assert tok.encode("<start_of_turn>user")[0] == tok.token_id("<start_of_turn>")
    assert set(stop_ids(tok, "gemma")) == {end_of_turn, 1, 4}


@pytest.mark.parametrize("name", list(templates.TEMPLATES))
def test_each_template_renders_one_example(name: str) -> None:
    head, tail = templates.render(name, "What is 1 + 2?", "3")
    expected = {
        "gemma": (
            "<start_of_turn>user\nWhat is 1 + 2?<end_of_turn>\n<start_of_turn>model\n",
            "3<end_of_turn>",
        ),
        "chatml": ("<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\n", "3<|im_end|>"),
        "llama3": (
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 1 + 2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            "3<|eot_id|>",
        ),
        "plain": ("What is 1 + 2?\n", "3"),
    }
    assert (head, tail) == expected[name]
    assert templates.render(name, "What is 1 + 2?") == (head, "")


# The launch: the family's template by default, broken folders refused by name.


def test_a_launch_without_a_template_gets_the_base_models_own(api, dataset, settings, sent_tasks) -> None:
    write_checkpoint(settings.MODELS_DIR / "llama", "llama")
    response = api.post("/api/runs", {"dataset": dataset.key, "base_model": "local:llama"}, format="json")
    assert response.status_code == 201, response.content
    assert Run.objects.get(pk=response.json()["id"]).chat_template == "llama3"
    body = {"dataset": dataset.key, "base_model": "local:llama", "chat_template": "auto"}
    assert api.post("/api/runs", body, format="json").json()["config"]["chat_template"] == "llama3"
    body["chat_template"] = "plain"
    assert api.post("/api/runs", body, format="json").json()["config"]["chat_template"] == "plain"
    response = api.post("/api/runs", {"dataset": dataset.key, "base_model": "tiny"}, format="json")
    assert response.json()["config"]["chat_template"] == "gemma", "presets keep Gemma turns"


def test_a_tunixrt_final_model_keeps_the_template_it_was_trained_with(api, dataset, settings, sent_tasks) -> None:
    write_checkpoint(settings.MODELS_DIR / "preset-child", "qwen3", tokenizer="byte")
    body = {"dataset": dataset.key, "base_model": "local:preset-child"}
    assert api.post("/api/runs", body, format="json").json()["config"]["chat_template"] == "gemma"
    write_checkpoint(settings.MODELS_DIR / "tuned", "qwen3")
    (settings.MODELS_DIR / "tuned" / "tunixrt.json").write_text(json.dumps({"chat_template": "plain"}))
    body["base_model"] = "local:tuned"
    assert api.post("/api/runs", body, format="json").json()["config"]["chat_template"] == "plain"


def test_the_launch_form_offers_auto_and_stores_the_family_template(page, dataset, settings, sent_tasks) -> None:
    write_checkpoint(settings.MODELS_DIR / "qwen", "qwen2")
    text = page.get("/runs/new/", {"dataset": dataset.key}).content.decode()
    assert f'<option value="{templates.AUTO}" selected>' in text
    response = page.post(
        "/runs/new/",
        {"dataset": dataset.key, "base_model": "local:qwen", "method": "lora", "chat_template": templates.AUTO},
    )
    assert response.status_code == 302, response.content[:2000]
    assert Run.objects.get().chat_template == "chatml"


def _bad_tokenizer(folder: Path) -> None:
    data = json.loads((folder / "tokenizer.json").read_text())
    data["model"]["vocab"] = "not a vocabulary"
    (folder / "tokenizer.json").write_text(json.dumps(data))


def _missing_shard(folder: Path) -> None:
    (folder / "model-00002-of-00002.safetensors").unlink()


def _wrong_shapes(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"intermediate_size": 48}))


def _unknown_family(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "mistral"}))


def _small_vocabulary(folder: Path) -> None:
    tensors_vocab = json.loads((folder / "config.json").read_text())
    # Tokens past the embedding table would crash the first step: a smaller model with the same tokenizer.
    (folder / "config.json").write_text(json.dumps(tensors_vocab | {"vocab_size": VOCAB - 20}))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_missing_shard, "Missing shard model-00002-of-00002.safetensors (named in model.safetensors.index.json)."),
        (_wrong_shapes, "model.layers.0.mlp.gate_proj.weight has shape [24, 16]; config.json implies [48, 16]"),
        (_bad_tokenizer, "tokenizer.json is not readable by the tokenizers package:"),
        (_unknown_family, "Unknown model_type 'mistral' in config.json (known: gemma3, gemma3_text"),
        (_small_vocabulary, f"model.embed_tokens.weight has shape [{VOCAB}, 16]; config.json implies [{VOCAB - 20}"),
    ],
)
def test_a_broken_folder_is_refused_at_launch_with_the_reason(api, dataset, settings, damage, reason) -> None:
    folder = settings.MODELS_DIR / "broken"
    write_checkpoint(folder, "llama", shards=2)
    damage(folder)
    response = api.post("/api/runs", {"dataset": dataset.key, "base_model": "local:broken"}, format="json")
    assert response.status_code == 400, response.content
    [message] = response.json()["base_model"]
    assert message.startswith(f"Base model 'local:broken' cannot be trained: {reason}"), message
    assert Run.objects.count() == 0


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(api, dataset, settings) -> None:
    folder = settings.MODELS_DIR / "big-vocab"
    write_checkpoint(folder, "qwen3")
    config = json.loads((folder / "config.json").read_text())
    import safetensors.numpy

    from runs.tests.checkpoint_support import hf_tensors

    small = {k: v[: VOCAB - 20] if k.endswith("embed_tokens.weight") else v for k, v in hf_tensors("qwen3").items()}
    safetensors.numpy.save_file(small, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config | {"vocab_size": VOCAB - 20}))
    response = api.post("/api/runs", {"dataset": dataset.key, "base_model": "local:big-vocab"}, format="json")
    assert response.status_code == 400
    [message] = response.json()["base_model"]
    assert f"tokenizer.json has {VOCAB} tokens but config.json's vocab_size is {VOCAB - 20}" in message
