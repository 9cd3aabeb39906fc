"""Tiny checkpoint folders in genuine Hugging Face layout (each family's real config keys and tensor names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from runs.training.tokenizers import BYTE_TOKENIZER_CLASS

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, INTER = 64, 16, 2, 4, 2, 8, 24

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
        "bos_token_id": 1,
        "eos_token_id": 2,
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


def hf_tensors(family: str, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """The family's tensors under the names `transformers` saves, filled with small random values."""
    rng = np.random.default_rng(0)
    prefix = "language_model.model." if family == "gemma3" else "model."
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


def tokenizer_json() -> dict[str, Any]:
    """A minimal byte-level BPE tokenizer.json (the structure the `tokenizers` package writes)."""
    vocab = {f"<{i}>": i for i in range(VOCAB)}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": 1, "content": "<bos>", "special": True},
            {"id": 2, "content": "<eos>", "special": True},
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab, "merges": []},
    }


def write_checkpoint(
    folder: Path,
    family: str = "qwen3",
    *,
    tokenizer: str = "hf-json",
    dtype: Any = np.float32,
    shards: int = 1,
    generation_eos: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """Write a loadable-looking checkpoint; `tokenizer` is hf-json, sentencepiece, both, byte or none."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(family), indent=2))
    tensors = hf_tensors(family, dtype)
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
        (folder / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "bos_token": "<bos>",
                    "eos_token": {"content": "<eos>", "special": True},
                    "pad_token": "<pad>",
                    "chat_template": template,
                }
            )
        )
    if tokenizer in ("hf-json", "both"):
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json()))
    if tokenizer in ("sentencepiece", "both"):
        # The catalog only checks that it is there; training tests use a real SentencePiece model.
        (folder / "tokenizer.model").write_bytes(b"\x0a\x05<unk>")
    if generation_eos is not None:
        (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": generation_eos}))
    return tensors
