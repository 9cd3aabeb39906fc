"""Tiny checkpoint folders in genuine Hugging Face layout (each family's real config keys and tensor names)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from runs.training.tokenizers import BYTE_TOKENIZER_CLASS

# The vocabulary leaves room for the 256 byte-level symbols, the family's special tokens and some merges.
VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, INTER = 320, 16, 2, 4, 2, 8, 24


@dataclass(frozen=True)
class Specials:
    """A family's special tokens as its real tokenizer_config.json / generation_config.json name them."""

    tokens: tuple[str, ...]  # in id order from 0
    bos: str | None
    eos: str
    pad: str | None
    generation_eos: tuple[str, ...]  # generation_config.json's eos_token_id list
    add_bos: bool | None = None


SPECIALS = {
    # Qwen adds no BOS; its instruct models end a turn with <|im_end|>.
    "qwen": Specials(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        None,
        "<|im_end|>",
        "<|endoftext|>",
        ("<|im_end|>", "<|endoftext|>"),
    ),
    # Llama 3 has no pad token; instruct models end a turn with <|eot_id|>.
    "llama": Specials(
        # <|begin_of_text|> is not id 0: Tunix's Sampler only prepends a truthy BOS id.
        ("<|end_of_text|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "<|begin_of_text|>",
        "<|eot_id|>",
        None,
        ("<|end_of_text|>", "<|eot_id|>"),
    ),
    # Gemma: <eos> ends a document, <end_of_turn> a chat turn (both in generation_config.json).
    "gemma": Specials(
        ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        "<bos>",
        "<eos>",
        "<pad>",
        ("<eos>", "<end_of_turn>"),
        add_bos=True,
    ),
}


def specials_of(family: str) -> Specials:
    return SPECIALS["gemma" if family.startswith("gemma") else "llama" if family == "llama" else "qwen"]


CORPUS = [
    f"What is {a} + {b}?\n{a} + {b} = {a + b}\nAnswer: {a + b}\nuser model assistant system"
    for a in range(10, 60, 3)
    for b in range(11, 40, 7)
]

CHAT_TEMPLATES = {
    "gemma": "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}",
    "chatml": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}",
    "llama": (
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
    ),
}

ARCHITECTURES = {
    "qwen3": "Qwen3ForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "llama": "LlamaForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM",
    "gemma3": "Gemma3ForConditionalGeneration",
}


def hf_config(family: str) -> dict[str, Any]:
    """config.json as `transformers` writes it for this family, at tiny sizes."""
    text: dict[str, Any] = {
        "model_type": "gemma3_text" if family == "gemma3" else family,
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000,
        "tie_word_embeddings": family != "llama",
        "torch_dtype": "float32",
        **_config_ids(family),
    }
    if family.startswith("gemma3"):
        text.update(
            hidden_activation="gelu_pytorch_tanh",
            sliding_window=32,
            rope_local_base_freq=10_000.0,
            query_pre_attn_scalar=HEAD_DIM,
            rope_theta=1_000_000.0,
        )
    else:
        text["hidden_act"] = "silu"
    if family == "gemma3":
        # The multimodal config nests the language model (its vision tower is left out at this size).
        return {"architectures": [ARCHITECTURES[family]], "model_type": "gemma3", "text_config": text}
    return {"architectures": [ARCHITECTURES[family]], **text}


def _config_ids(family: str) -> dict[str, Any]:
    # config.json repeats the ids: Qwen's bos/eos are <|endoftext|>, Gemma 3's eos is a list.
    spec, ids = specials_of(family), token_ids(family)
    if family.startswith("gemma"):
        return {"bos_token_id": ids["<bos>"], "eos_token_id": [ids[t] for t in spec.generation_eos], "pad_token_id": 0}
    if family == "llama":
        return {"bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": [ids[t] for t in spec.generation_eos]}
    return {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|endoftext|>"]}


def hf_tensors(family: str, dtype: Any = np.float32, prefix: str | None = None) -> dict[str, np.ndarray]:
    """The family's tensors under the names `transformers` saves, filled with small random values.

    The multimodal Gemma 3 uses the `language_model.model.` prefix of the released checkpoints
    unless `prefix` says otherwise (newer transformers write `model.language_model.`).
    """
    rng = np.random.default_rng(0)
    prefix = prefix or ("language_model.model." if family == "gemma3" else "model.")
    shapes: dict[str, tuple[int, ...]] = {
        f"{prefix}embed_tokens.weight": (VOCAB, HIDDEN),
        f"{prefix}norm.weight": (HIDDEN,),
    }
    for n in range(LAYERS):
        layer = f"{prefix}layers.{n}."
        shapes |= {
            f"{layer}input_layernorm.weight": (HIDDEN,),
            f"{layer}post_attention_layernorm.weight": (HIDDEN,),
            f"{layer}self_attn.q_proj.weight": (HEADS * HEAD_DIM, HIDDEN),
            f"{layer}self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
            f"{layer}self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
            f"{layer}self_attn.o_proj.weight": (HIDDEN, HEADS * HEAD_DIM),
            f"{layer}mlp.gate_proj.weight": (INTER, HIDDEN),
            f"{layer}mlp.up_proj.weight": (INTER, HIDDEN),
            f"{layer}mlp.down_proj.weight": (HIDDEN, INTER),
        }
        if family in ("qwen3", "gemma3", "gemma3_text"):
            shapes |= {f"{layer}self_attn.q_norm.weight": (HEAD_DIM,), f"{layer}self_attn.k_norm.weight": (HEAD_DIM,)}
        if family == "qwen2":
            shapes |= {
                f"{layer}self_attn.q_proj.bias": (HEADS * HEAD_DIM,),
                f"{layer}self_attn.k_proj.bias": (KV_HEADS * HEAD_DIM,),
                f"{layer}self_attn.v_proj.bias": (KV_HEADS * HEAD_DIM,),
            }
        if family.startswith("gemma3"):
            shapes |= {
                f"{layer}pre_feedforward_layernorm.weight": (HIDDEN,),
                f"{layer}post_feedforward_layernorm.weight": (HIDDEN,),
            }
    if family == "llama":
        shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return {name: rng.normal(0, 0.02, shape).astype(dtype) for name, shape in shapes.items()}


@functools.cache
def tokenizer_json(family: str = "qwen3") -> str:
    """A byte-level BPE tokenizer.json trained with the `tokenizers` package, with the family's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=list(specials_of(family).tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS, trainer)
    return str(tk.to_str())


def token_ids(family: str) -> dict[str, int]:
    """The special tokens' ids in the family's tokenizer.json."""
    return {t: i for i, t in enumerate(specials_of(family).tokens)}


def write_checkpoint(
    folder: Path,
    family: str = "qwen3",
    *,
    tokenizer: str = "hf-json",
    dtype: Any = np.float32,
    shards: int = 1,
    generation_eos: list[int] | None = None,
    prefix: str | None = None,
) -> dict[str, np.ndarray]:
    """Write a checkpoint folder as `transformers` saves it; `tokenizer` is hf-json, sentencepiece, both, byte or none.

    With hf-json or both it loads and trains: a tokenizer.json trained for the family, the
    family's tokenizer_config.json and generation_config.json (`generation_eos` overrides its ids).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(family), indent=2))
    tensors = hf_tensors(family, dtype, prefix)
    names = sorted(tensors)
    if shards == 1:
        safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map: dict[str, str] = {}
        for k in range(shards):
            shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[k::shards]}
            safetensors.numpy.save_file(part, str(folder / shard), metadata={"format": "pt"})
            weight_map |= dict.fromkeys(part, shard)
        total = sum(t.nbytes for t in tensors.values())
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
        )
    template = CHAT_TEMPLATES["gemma" if family.startswith("gemma") else "llama" if family == "llama" else "chatml"]
    if tokenizer == "byte":
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": BYTE_TOKENIZER_CLASS}))
    elif tokenizer != "none":
        spec = specials_of(family)
        config: dict[str, Any] = {
            "bos_token": spec.bos,
            "eos_token": {"content": spec.eos, "special": True, "lstrip": False, "rstrip": False},
            "pad_token": spec.pad,
            "chat_template": template,
        }
        if spec.add_bos is not None:
            config["add_bos_token"] = spec.add_bos
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        ids = token_ids(family)
        generation: dict[str, Any] = {"eos_token_id": generation_eos or [ids[t] for t in spec.generation_eos]}
        if spec.bos is not None:
            generation["bos_token_id"] = ids[spec.bos]
        (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    if tokenizer in ("hf-json", "both"):
        (folder / "tokenizer.json").write_text(tokenizer_json(family))
    if tokenizer in ("sentencepiece", "both"):
        # The catalog only checks that it is there; training tests use a real SentencePiece model.
        (folder / "tokenizer.model").write_bytes(b"\x0a\x05<unk>")
    return tensors
