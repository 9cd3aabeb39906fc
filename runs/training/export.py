"""Writing trained Tunix models in their family's Hugging Face layout (child process only).

`export_hf` writes `config.json`, `model.safetensors` (sharded with an index
above a size threshold, as `transformers` does) and the base model's tokenizer
files, so `transformers`, vLLM or Tunix itself can load the folder.
`export_peft_adapter` writes a LoRA run's adapter alone in the PEFT layout.

No weight mapping is written here: Hugging Face names and shapes come from
inverting Tunix's own loader mapping (`_get_key_and_transform_mapping` in each
family's params module). Each Tunix parameter is matched to the mapping entry
that produces it, the entry's Hugging Face pattern is instantiated with the
layer number, the result is checked by running Tunix's forward lookup on it,
and the transpose/reshape is undone. Only Gemma 3's fused q/k/v kernels need
family code: Tunix's loader fuses them in a preprocessing step, which
`_unfuse_gemma3` undoes. Neither loader rescales anything (Gemma's `1 + scale`
norms and √d embedding scaling are applied at run time by both Tunix and
`transformers`), so values are written as they are.

LoRA (qwix `LoRAParam`s) is merged in memory as W + (alpha/rank)·A·B in Tunix's
kernel layout, using the einsum qwix recorded for each adapted module, and then
written through the same path as a fully fine-tuned model.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from flax import nnx

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)
MAX_SHARD_BYTES = 2 * 1024**3
DTYPES: dict[str, Any] = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


@dataclass(frozen=True)
class Family:
    params_module: str  # the Tunix module holding `_get_key_and_transform_mapping`
    architecture: str
    model_type: str
    unfuse: Callable[[dict[str, np.ndarray], Any], dict[str, np.ndarray]] | None = None


def _unfuse_gemma3(params: dict[str, np.ndarray], cfg: Any) -> dict[str, np.ndarray]:
    """Undo the Gemma 3 loader's preprocessing: fused (N, D, H) q/k/v kernels back to `tmp.*` (D, N, H)."""
    out: dict[str, np.ndarray] = {}
    for key, value in params.items():
        m = re.fullmatch(r"layers\.(\d+)\.attn\.(qkv_einsum|q_einsum|kv_einsum)\.w", key)
        if not m:
            out[key] = value
            continue
        layer, kind = m.groups()
        slots = {"qkv_einsum": "qkv", "q_einsum": "q", "kv_einsum": "kv"}[kind]
        parts = [value] if kind == "q_einsum" else list(value)
        for slot, part in zip(slots, parts, strict=True):
            out[f"tmp.layers.{layer}.attn.{slot}"] = np.transpose(part, (1, 0, 2))
    return out


FAMILIES: dict[str, Family] = {
    "qwen3": Family("tunix.models.qwen3.params", "Qwen3ForCausalLM", "qwen3"),
    "qwen2": Family("tunix.models.qwen2.params", "Qwen2ForCausalLM", "qwen2"),
    "llama": Family("tunix.models.llama3.params", "LlamaForCausalLM", "llama"),
    "gemma3_text": Family("tunix.models.gemma3.params_safetensors", "Gemma3ForCausalLM", "gemma3_text", _unfuse_gemma3),
}
FAMILIES["gemma3"] = FAMILIES["gemma3_text"]


def family_of(family: str) -> Family:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"model_type {family!r} cannot be exported (supported: {', '.join(FAMILIES)}).") from None


def key_mapping(family: str, cfg: Any) -> dict[str, tuple[str, Any]]:
    """Tunix's own HF-key → (Tunix path, (permute, reshape)) mapping for the family."""
    module = importlib.import_module(family_of(family).params_module)
    mapping: dict[str, tuple[str, Any]] = module._get_key_and_transform_mapping(cfg)
    return mapping


# --- inverting Tunix's mapping ------------------------------------------------------------------


def _template_regex(template: str) -> re.Pattern[str]:
    """A regex matching the Tunix paths a substitution template (with \\1, \\2…) produces."""
    parts, seen = [], set()
    for piece in re.split(r"(\\\d)", template):
        if re.fullmatch(r"\\\d", piece):
            n = piece[1]
            parts.append(f"(?P=g{n})" if n in seen else f"(?P<g{n}>[^.]+)")
            seen.add(n)
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def _closing(pattern: str, start: int) -> int:
    """Index of the parenthesis closing the one opened at `start`."""
    depth, i = 0, start
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        depth += {"(": 1, ")": -1}.get(pattern[i], 0)
        if depth == 0:
            return i
        i += 1
    raise ValueError(f"Unbalanced pattern {pattern!r}")


def _top_level_alternatives(pattern: str) -> list[str]:
    out, depth, current, i = [], 0, "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            current += pattern[i : i + 2]
            i += 2
            continue
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "|" and depth == 0:
            out.append(current)
            current = ""
        else:
            current += c
        i += 1
    return [*out, current]


def _instantiate(pattern: str, groups: dict[int, str], counter: list[int] | None = None) -> str:
    """The plainest key a Tunix HF-key regex matches: groups filled in, optional parts left out."""
    counter = counter if counter is not None else [0]
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out += pattern[i + 1]
            i += 2
        elif c == "(":
            end = _closing(pattern, i)
            optional = pattern[end + 1 : end + 2] == "?"
            if pattern.startswith("(?:", i):
                if not optional:
                    out += _instantiate(_top_level_alternatives(pattern[i + 3 : end])[0], groups, counter)
            else:
                counter[0] += 1
                n = counter[0]
                inner = pattern[i + 1 : end]
                out += groups[n] if n in groups else _instantiate(_top_level_alternatives(inner)[0], groups, counter)
            i = end + (2 if optional else 1)
        elif c in ".*+?[]{}|^$":
            raise ValueError(f"Cannot spell out a key for pattern {pattern!r}")
        else:
            out += c
            i += 1
    return out


def _hf_name(tunix_key: str, mapping: dict[str, tuple[str, Any]]) -> tuple[str, Any]:
    """The Hugging Face key Tunix's loader would map onto `tunix_key`, and its transform."""
    found = []
    for hf_pattern, (template, transform) in mapping.items():
        if template.startswith("unused"):
            continue
        m = _template_regex(template).fullmatch(tunix_key)
        if m:
            groups = {int(k[1:]): v for k, v in m.groupdict().items()}
            found.append((_instantiate(hf_pattern, groups), transform))
    if not found:
        raise ValueError(f"Tunix parameter {tunix_key} has no Hugging Face name in Tunix's mapping.")
    from tunix.utils.torch_utils import torch_key_to_jax_key

    hf_key, transform = found[0]  # Gemma 3 accepts several spellings of some norms: the first is HF's
    if torch_key_to_jax_key(mapping, hf_key)[0] != tunix_key:
        raise ValueError(f"{hf_key} does not map back onto {tunix_key} in Tunix's mapping.")
    return hf_key, transform


def _permuted_shape(
    value: np.ndarray, permute: tuple[int, ...], hf_shape: tuple[int, ...] | None, cfg: Any
) -> tuple[int, ...]:
    """The shape before Tunix's reshape: from the base checkpoint when known, else the split that
    leaves the model width (embed_dim) as one axis of the Hugging Face matrix."""
    if hf_shape is not None:
        return tuple(hf_shape[p] for p in permute)
    dims, width = value.shape, int(cfg.embed_dim)
    if len(permute) != 2:
        raise ValueError(f"Cannot tell the Hugging Face shape of a {dims} tensor.")
    splits = [
        (math.prod(dims[:k]), math.prod(dims[k:]))
        for k in range(1, len(dims))
        if dims[:k] == (width,) or dims[k:] == (width,)
    ]
    if len(set(splits)) != 1:
        raise ValueError(f"Cannot tell the Hugging Face shape of a {dims} tensor (embed_dim {width}).")
    return splits[0]


def _to_hf(value: np.ndarray, transform: Any, hf_shape: tuple[int, ...] | None, cfg: Any) -> np.ndarray:
    if transform is None:
        return value
    permute, reshape = transform
    if reshape is not None:
        value = value.reshape(_permuted_shape(value, tuple(permute or range(value.ndim)), hf_shape, cfg))
    if permute:
        value = np.transpose(value, np.argsort(permute))
    return value


# --- reading the model --------------------------------------------------------------------------


def _path(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def _lora_pairs(model: nnx.Module) -> Iterator[tuple[nnx.Module, str, str, np.ndarray, np.ndarray]]:
    """(module, module path, weight name, lora_a, lora_b) for each qwix-adapted weight."""
    modules = {_path(p): m for p, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)}
    lora = {_path(p): np.asarray(v[...]) for p, v in nnx.iter_graph(model) if isinstance(v, nnx.LoRAParam)}
    for key in sorted(k for k in lora if k.endswith("_lora_a")):
        module_path, _, attr = key.rpartition(".")
        name = attr.removesuffix("_lora_a")
        yield modules[module_path], module_path, name, lora[key], lora[key[:-1] + "b"]


def _lora_parts(module: nnx.Module, name: str, a: np.ndarray, b: np.ndarray) -> tuple[str, str, str]:
    """Einsum subscripts of lora_a, lora_b and the kernel, the rank being their shared last/first axis."""
    lora_str = getattr(module, f"{name}_lora_einsum_str", None)
    if lora_str is None:  # dot_general (nnx.Linear): A is (in, r), B is (r, out)
        kernel = getattr(module, name)[...]
        if a.ndim != 2 or b.ndim != 2 or kernel.shape != (a.shape[0], b.shape[1]):
            raise ValueError(f"Unsupported LoRA shapes {a.shape} {b.shape} for kernel {kernel.shape}.")
        return "ir", "ro", "io"
    _, a_str, b_str = lora_str.split("->")[0].split(",")
    rhs = str(module.einsum_str).split("->")[0].split(",")[1]  # type: ignore[attr-defined]
    return a_str, b_str, rhs


def tunix_params(model: nnx.Module, lora: tuple[int, float] | None = None) -> dict[str, np.ndarray]:
    """The model's parameters by Tunix path, LoRA merged in (W + alpha/rank·A·B)."""
    out = {
        _path(p): np.asarray(v[...])
        for p, v in nnx.iter_graph(model)
        if isinstance(v, nnx.Param) and not isinstance(v, nnx.LoRAParam)
    }
    pairs = list(_lora_pairs(model))
    if pairs and lora is None:
        raise ValueError("The model has LoRA parameters: pass lora=(rank, alpha) to merge them.")
    for module, module_path, name, a, b in pairs:
        assert lora is not None
        rank, alpha = lora
        if a.shape[-1] != rank or b.shape[0] != rank:
            raise ValueError(f"{module_path}: LoRA rank is {a.shape[-1]}, not {rank}.")
        a_str, b_str, rhs = _lora_parts(module, name, a, b)
        key = f"{module_path}.{name}"
        delta = np.einsum(f"{a_str},{b_str}->{rhs}", a.astype(np.float32), b.astype(np.float32))
        out[key] = (out[key].astype(np.float32) + (alpha / rank) * delta).astype(out[key].dtype)
    return out


def _base_shapes(base_dir: Path | None) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the base checkpoint's safetensors headers (no tensor data is read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(base_dir.glob("*.safetensors")) if base_dir else []:
        with f.open("rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for name, meta in header.items():
            if name != "__metadata__":
                shapes[re.sub(r"^language_model\.", "", name)] = tuple(meta["shape"])
    return shapes


def hf_state_dict(
    model: nnx.Module,
    cfg: Any,
    family: str,
    *,
    lora: tuple[int, float] | None = None,
    base_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """The model's weights under Hugging Face names and shapes (LoRA merged), in the model's dtype."""
    fam = family_of(family)
    params = tunix_params(model, lora)
    if fam.unfuse is not None:
        params = fam.unfuse(params, cfg)
    mapping, shapes = key_mapping(family, cfg), _base_shapes(base_dir)
    out: dict[str, np.ndarray] = {}
    for key, value in params.items():
        hf_key, transform = _hf_name(key, mapping)
        out[hf_key] = _to_hf(value, transform, shapes.get(hf_key), cfg)
    return out


# --- writing ------------------------------------------------------------------------------------


def _tied(cfg: Any) -> bool:
    return bool(getattr(cfg, "use_tied_embedding", getattr(cfg, "weight_tying", True)))


def hf_config(cfg: Any, family: str, tokenizer: Any = None) -> dict[str, Any]:
    """A `config.json` for a model built from a Tunix ModelConfig alone (no base folder)."""
    fam = family_of(family)
    common: dict[str, Any] = {
        "architectures": [fam.architecture],
        "model_type": fam.model_type,
        "hidden_size": cfg.embed_dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "tie_word_embeddings": _tied(cfg),
        "attention_bias": fam.model_type == "qwen2",
    }
    if fam.model_type == "gemma3_text":
        from tunix.models.gemma3 import model as gemma3_model

        by_head = cfg.query_pre_attn_norm == gemma3_model.QueryPreAttentionNormalisation.BY_ONE_OVER_SQRT_HEAD_DIM
        pattern = gemma3_model.GEMMA3_ATTENTION_PATTERN
        local = gemma3_model.AttentionType.LOCAL_SLIDING
        common |= {
            "vocab_size": cfg.num_embed,
            "rms_norm_eps": 1e-6,
            "hidden_activation": "gelu_pytorch_tanh",
            "sliding_window": cfg.sliding_window_size,
            "sliding_window_pattern": len(pattern),
            "layer_types": [
                "sliding_attention" if pattern[i % len(pattern)] == local else "full_attention"
                for i in range(cfg.num_layers)
            ],
            "rope_local_base_freq": cfg.local_base_frequency,
            "rope_theta": cfg.global_base_frequency,
            "rope_scaling": (
                None if cfg.global_scale_factor == 1.0 else {"rope_type": "linear", "factor": cfg.global_scale_factor}
            ),
            "query_pre_attn_scalar": cfg.head_dim if by_head else cfg.embed_dim // cfg.num_heads,
            "final_logit_softcapping": None,
            "attn_logit_softcapping": None,
        }
    else:
        common |= {
            "vocab_size": cfg.vocab_size,
            "rms_norm_eps": cfg.norm_eps,
            "rope_theta": cfg.rope_theta,
            "hidden_act": "silu",
        }
    if tokenizer is not None:
        common |= {"bos_token_id": tokenizer.bos_id(), "eos_token_id": tokenizer.eos_id()}
        common["pad_token_id"] = tokenizer.pad_id()
    return common


def _base_config(base_dir: Path, cfg: Any, family: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((base_dir / "config.json").read_text())
    if data.get("model_type") == "gemma3" and "text_config" in data:
        # A multimodal Gemma 3: only the text model is trained and written.
        data = {**data["text_config"], "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text"}
    if family_of(family).model_type != "gemma3_text":
        data["tie_word_embeddings"] = _tied(cfg)
    return data


def _shards(tensors: dict[str, np.ndarray], max_bytes: int) -> list[dict[str, np.ndarray]]:
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, value in tensors.items():
        if shards[-1] and size + value.nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = value
        size += value.nbytes
    return shards


def write_safetensors(tensors: dict[str, np.ndarray], out_dir: Path, max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
    """`model.safetensors`, or `model-0000i-of-0000n.safetensors` + index above the threshold."""
    import safetensors.numpy

    for stale in [*out_dir.glob("model*.safetensors"), out_dir / "model.safetensors.index.json"]:
        stale.unlink(missing_ok=True)
    shards = _shards(tensors, max_shard_bytes)
    meta = {"format": "pt"}
    if len(shards) == 1:
        safetensors.numpy.save_file(shards[0], str(out_dir / "model.safetensors"), metadata=meta)
        return
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        safetensors.numpy.save_file(shard, str(out_dir / name), metadata=meta)
        weight_map |= {k: name for k in shard}
    index = {"metadata": {"total_size": sum(v.nbytes for v in tensors.values())}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def export_hf(
    model: nnx.Module,
    cfg: Any,
    family: str,
    out_dir: Path,
    *,
    base_dir: Path | None,
    tokenizer: Any = None,
    dtype: str = "float32",
    lora: tuple[int, float] | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> None:
    """Write the model (LoRA merged: pass lora=(rank, alpha)) in the family's Hugging Face layout."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: np.ascontiguousarray(v.astype(DTYPES[dtype]))
        for k, v in hf_state_dict(model, cfg, family, lora=lora, base_dir=base_dir).items()
    }
    write_safetensors(tensors, out_dir, max_shard_bytes)
    config = _base_config(base_dir, cfg, family) if base_dir else hf_config(cfg, family, tokenizer)
    config["torch_dtype"] = dtype
    if "dtype" in config:
        config["dtype"] = dtype
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    if base_dir is not None:
        for name in TOKENIZER_FILES:
            if (base_dir / name).is_file():
                shutil.copyfile(base_dir / name, out_dir / name)
    elif tokenizer is not None:
        tokenizer.save(out_dir)


def export_peft_adapter(
    lora_model: nnx.Module, cfg: Any, family: str, out_dir: Path, *, rank: int, alpha: float, base_name: str
) -> None:
    """Write the LoRA adapter alone in the PEFT layout (`adapter_config.json`, `adapter_model.safetensors`).

    PEFT's A is [r, in_features] and B is [out_features, r] (HF Linear orientation). qwix's lora_a holds
    the kernel's input axes then the rank, lora_b the rank then its output axes, in kernel order, so
    flattening them gives PEFT's matrices; the Hugging Face module comes from Tunix's mapping. Gemma 3's
    fused q/k/v adapters share A and are split along B's leading (q/k/v) axis.
    """
    import safetensors.numpy

    fam = family_of(family)
    mapping = key_mapping(family, cfg)
    tensors: dict[str, np.ndarray] = {}
    targets: set[str] = set()
    for module, module_path, name, a, b in _lora_pairs(lora_model):
        _, b_str, rhs = _lora_parts(module, name, a, b)
        key = f"{module_path}.{name}"
        kernel = np.asarray(getattr(module, name)[...])
        pieces = [(key, b)]
        if fam.unfuse is not None:
            fused = fam.unfuse({key: kernel}, cfg)
            if list(fused) != [key]:  # one B slice per unfused kernel, along the stacked axis
                stacked = b_str.index(rhs[0]) if len(fused) > 1 else None
                pieces = [(k, np.take(b, i, axis=stacked) if stacked is not None else b) for i, k in enumerate(fused)]
        lora_a = np.ascontiguousarray(a.reshape(-1, rank).T.astype(np.float32))
        for piece_key, piece_b in pieces:
            hf_key, _ = _hf_name(piece_key, mapping)
            prefix = "base_model.model." + hf_key.removesuffix(".weight")
            tensors[f"{prefix}.lora_A.weight"] = lora_a
            tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(piece_b.reshape(rank, -1).T.astype(np.float32))
            targets.add(hf_key.removesuffix(".weight").rsplit(".", 1)[-1])
    if not tensors:
        raise ValueError("The model has no LoRA parameters to export.")
    out_dir.mkdir(parents=True, exist_ok=True)
    safetensors.numpy.save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "base_model_name_or_path": base_name,
    }
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))
