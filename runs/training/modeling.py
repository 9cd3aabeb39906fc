"""Building, adapting and exporting Tunix Qwen3-family models (child process only).

Checkpoints on disk use the Hugging Face Qwen3 layout (`config.json`,
`model.safetensors`, tokenizer files), which Tunix 0.1.7 loads with
`create_model_from_safe_tensors`. Final models are written in the same layout,
so a trained run can itself be used as a local base model, and other tools
can read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tunix.models.qwen3 import model as qwen3_model
from tunix.models.qwen3 import params as qwen3_params

from runs.training.job import PRESETS
from runs.training.tokenizers import ByteTokenizer, SentencePieceTokenizer, load_tokenizer

LORA_TARGETS = ".*q_proj|.*k_proj|.*v_proj|.*o_proj|.*gate_proj|.*up_proj|.*down_proj"
Tokenizer = ByteTokenizer | SentencePieceTokenizer


def preset_config(name: str, dtype: str = "float32") -> qwen3_model.ModelConfig:
    """A preset's config; `dtype` is both the compute and the parameter dtype."""
    p = PRESETS[name]
    return qwen3_model.ModelConfig(
        num_layers=p.num_layers,
        vocab_size=p.vocab_size,
        embed_dim=p.embed_dim,
        hidden_dim=p.hidden_dim,
        num_heads=p.num_heads,
        head_dim=p.head_dim,
        num_kv_heads=p.num_kv_heads,
        rope_theta=p.rope_theta,
        norm_eps=p.norm_eps,
        use_tied_embedding=True,
        dtype=jnp.dtype(dtype),
        param_dtype=jnp.dtype(dtype),
    )


def config_from_hf(directory: Path) -> qwen3_model.ModelConfig:
    """A Qwen3 ModelConfig from a Hugging Face `config.json`."""
    data = json.loads((directory / "config.json").read_text())
    if data.get("model_type") not in (None, "qwen3"):
        raise ValueError(f"{directory}: model_type {data.get('model_type')!r} is not supported (qwen3 only).")
    heads = int(data["num_attention_heads"])
    return qwen3_model.ModelConfig(
        num_layers=int(data["num_hidden_layers"]),
        vocab_size=int(data["vocab_size"]),
        embed_dim=int(data["hidden_size"]),
        hidden_dim=int(data["intermediate_size"]),
        num_heads=heads,
        head_dim=int(data.get("head_dim") or int(data["hidden_size"]) // heads),
        num_kv_heads=int(data.get("num_key_value_heads") or heads),
        rope_theta=int(data.get("rope_theta", 1_000_000)),
        norm_eps=float(data.get("rms_norm_eps", 1e-6)),
        use_tied_embedding=bool(data.get("tie_word_embeddings", False)),
    )


def hf_config(cfg: qwen3_model.ModelConfig) -> dict[str, Any]:
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": cfg.embed_dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "rope_theta": cfg.rope_theta,
        "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.use_tied_embedding,
        "torch_dtype": "float32",
        "hidden_act": "silu",
    }


def reinit_zero_kernels(model: nnx.Module, seed: int, std: float = 0.02) -> int:
    """Re-draw every all-zero ≥2-D parameter.

    Tunix's Qwen3 class zero-initialises the MLP kernels because it expects
    pretrained weights; trained from scratch they would get zero gradient
    forever and the MLP would stay dead.
    """
    key = jax.random.key(seed)
    redrawn = 0
    for _, var in nnx.iter_graph(model):
        if (
            isinstance(var, nnx.Param)
            and not isinstance(var, nnx.LoRAParam)
            and var.value.ndim >= 2
            and not bool(jnp.any(var.value))
        ):
            key, sub = jax.random.split(key)
            var.value = (std * jax.random.normal(sub, var.value.shape)).astype(var.value.dtype)
            redrawn += 1
    return redrawn


def build_base(
    base_model: dict[str, Any], seed: int, *, dtype: str = "float32", mesh: jax.sharding.Mesh | None = None
) -> tuple[nnx.Module, Any, Tokenizer]:
    """The base model, its config and tokenizer: a preset (random init) or a local checkpoint.

    `dtype` ("float32" or "bfloat16") is the parameters' and the computation's.
    With a `mesh`, the parameters are placed by the model's sharding annotations
    (Tunix's Qwen3 ShardingConfig names the axes "fsdp" and "tp").
    """
    if base_model["kind"] == "preset":
        cfg = preset_config(base_model["name"], dtype)
        model = qwen3_model.Qwen3(cfg, rngs=nnx.Rngs(params=seed))
        reinit_zero_kernels(model, seed)
        if mesh is not None:
            shard_model(model, mesh)
        return model, cfg, ByteTokenizer()
    directory = Path(base_model["path"])
    cfg = config_from_hf(directory)
    cfg.dtype = cfg.param_dtype = jnp.dtype(dtype)
    tokenizer = load_tokenizer(directory)
    model = qwen3_params.create_model_from_safe_tensors(str(directory), cfg, mesh=mesh, dtype=jnp.dtype(dtype))
    return model, cfg, tokenizer


def shard_model(model: nnx.Module, mesh: jax.sharding.Mesh) -> None:
    """Move every variable onto `mesh` as its sharding annotation says (unannotated ones are replicated)."""
    state = nnx.state(model)
    shardings = nnx.get_named_sharding(state, mesh)
    nnx.update(model, jax.device_put(state, shardings))


def sharded_parameters(model: nnx.Module) -> tuple[int, int]:
    """(parameter arrays split over more than one device, all parameter arrays)."""
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    split = sum(1 for x in leaves if len({str(s.index) for s in x.addressable_shards}) > 1)
    return split, len(leaves)


def training_mesh(devices: list[Any]) -> jax.sharding.Mesh | None:
    """An FSDP mesh over every device (`fsdp`=n, `tp`=1); None for a single device.

    Auto axes: jax 0.10's make_mesh defaults to Explicit ones, which break the
    Qwen3 embedding's gather (ShardingTypeError).
    """
    if len(devices) < 2:
        return None
    from jax.sharding import AxisType

    return jax.make_mesh(
        (len(devices), 1), ("fsdp", "tp"), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices
    )


@contextlib.contextmanager
def active_mesh(mesh: jax.sharding.Mesh | None) -> Iterator[None]:
    """Make `mesh` the one Tunix's trainer reads (pxla.thread_resources, set by `with mesh:` only).

    jax 0.10 deprecates `with mesh:` for jax.set_mesh, which Tunix 0.1.7 does not read yet.
    """
    if mesh is None:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        mesh.__enter__()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        mesh.__exit__(None, None, None)  # type: ignore[no-untyped-call]


def apply_lora(model: nnx.Module, rank: int, alpha: float, seed: int) -> nnx.Module:
    import qwix

    provider = qwix.LoraProvider(module_path=LORA_TARGETS, rank=rank, alpha=alpha)
    inputs = model.get_model_input()  # type: ignore[attr-defined]
    lora_model: nnx.Module = qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(seed), **inputs)
    return lora_model


def count_params(model: nnx.Module, kind: type = nnx.Param) -> int:
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, kind))))


def _flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for path, var in nnx.iter_graph(model):
        if isinstance(var, nnx.Param) and not isinstance(var, nnx.LoRAParam):
            out[".".join(str(p) for p in path)] = np.asarray(var.value)
    return out


def hf_state_dict(model: nnx.Module, cfg: Any) -> dict[str, np.ndarray]:
    """The model's weights under Hugging Face Qwen3 names and shapes (inverse of Tunix's loader)."""
    d, h, kv, hd = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    out: dict[str, np.ndarray] = {}
    for name, value in _flat_params(model).items():
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
        if name == "embedder.input_embedding":
            out["model.embed_tokens.weight"] = value
        elif name == "final_norm.w":
            out["model.norm.weight"] = value
        elif name == "lm_head.w":
            out["lm_head.weight"] = value.T
        elif m:
            layer, rest = m.group(1), m.group(2)
            prefix = f"model.layers.{layer}"
            if rest == "attn.q_proj.w":
                out[f"{prefix}.self_attn.q_proj.weight"] = value.reshape(d, h * hd).T
            elif rest in ("attn.k_proj.w", "attn.v_proj.w"):
                which = rest.split(".")[1]
                out[f"{prefix}.self_attn.{which}.weight"] = value.reshape(d, kv * hd).T
            elif rest == "attn.o_proj.w":
                out[f"{prefix}.self_attn.o_proj.weight"] = value.reshape(h * hd, d).T
            elif rest in ("attn.q_norm.w", "attn.k_norm.w"):
                out[f"{prefix}.self_attn.{rest.split('.')[1]}.weight"] = value
            elif rest in ("mlp.gate_proj.kernel", "mlp.up_proj.kernel", "mlp.down_proj.kernel"):
                out[f"{prefix}.mlp.{rest.split('.')[1]}.weight"] = value.T
            elif rest in ("input_layernorm.w", "post_attention_layernorm.w"):
                out[f"{prefix}.{rest.split('.')[0]}.weight"] = value
            else:
                raise ValueError(f"Unexpected parameter {name}")
        else:
            raise ValueError(f"Unexpected parameter {name}")
    return {k: np.ascontiguousarray(v.astype(np.float32)) for k, v in out.items()}


def save_hf(model: nnx.Module, cfg: Any, tokenizer: Tokenizer, directory: Path) -> None:
    """Write `model.safetensors`, `config.json` and the tokenizer in the HF Qwen3 layout."""
    import safetensors.numpy

    directory.mkdir(parents=True, exist_ok=True)
    safetensors.numpy.save_file(hf_state_dict(model, cfg), str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(hf_config(cfg), indent=2))
    tokenizer.save(directory)


def save_final(
    model: nnx.Module,
    cfg: Any,
    tokenizer: Tokenizer,
    directory: Path,
    *,
    lora: tuple[int, float] | None,
    base_dir: Path | None,
) -> None:
    """The trained model in HF layout; LoRA runs are merged into the base with Tunix's exporter."""
    if lora is None:
        save_hf(model, cfg, tokenizer, directory)
        return
    assert base_dir is not None
    rank, alpha = lora
    qwen3_params.save_lora_merged_model_as_safetensors(
        local_model_path=str(base_dir), output_dir=str(directory), lora_model=model, rank=rank, alpha=alpha
    )
    os.makedirs(directory, exist_ok=True)
