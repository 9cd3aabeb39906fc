"""Building, adapting and exporting Tunix models (child process only).

A base model is a preset (a random-initialised Qwen3-class decoder with the byte
tokenizer) or a Hugging Face checkpoint folder of one of the families Tunix
0.1.7 ships a safetensors loader for: `qwen3`, `qwen2` (Qwen2.5), `llama`
(Llama 3.x) and `gemma3` / `gemma3_text`. `FAMILIES` maps each `model_type` to
its Tunix ModelConfig (built from `config.json`), model class, loader and the
LoRA target modules under Tunix's own module names; weights are always loaded
by Tunix's loader for that family, never re-mapped here.

Final models of the Qwen3 presets and checkpoints are written in the Hugging
Face Qwen3 layout, so a trained run can itself be used as a local base model.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from tunix.models.qwen3 import model as qwen3_model
from tunix.models.qwen3 import params as qwen3_params

from runs.training.job import PRESETS
from runs.training.tokenizers import ByteTokenizer, Tokenizer, load_tokenizer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Tunix's attention and MLP projections in the Qwen and Llama classes.
PROJECTIONS = ".*q_proj|.*k_proj|.*v_proj|.*o_proj|.*gate_proj|.*up_proj|.*down_proj"


@dataclass(frozen=True)
class Family:
    """How one Hugging Face `model_type` becomes a Tunix model."""

    name: str
    config: Callable[[Mapping[str, Any], Any], Any]  # (config.json, param dtype) → Tunix ModelConfig
    model_class: Callable[[], Any]  # the Tunix nnx.Module class (imported on first use)
    loader: Callable[[], Any]  # returns the family's create_model_from_safe_tensors
    lora_targets: str  # qwix module_path regex over Tunix's module names


def _int(cfg: Mapping[str, Any], key: str, default: Any = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise ValueError(f"config.json lacks {key}.")
    return int(value)


def _head_dim(cfg: Mapping[str, Any]) -> int:
    return _int(cfg, "head_dim", _int(cfg, "hidden_size") // _int(cfg, "num_attention_heads"))


def _decoder_fields(cfg: Mapping[str, Any], *, rope_theta: int, norm_eps: float) -> dict[str, Any]:
    """The ModelConfig fields the Qwen3, Qwen2 and Llama 3 decoders share, from config.json."""
    heads = _int(cfg, "num_attention_heads")
    return {
        "num_layers": _int(cfg, "num_hidden_layers"),
        "vocab_size": _int(cfg, "vocab_size"),
        "embed_dim": _int(cfg, "hidden_size"),
        "hidden_dim": _int(cfg, "intermediate_size"),
        "num_heads": heads,
        "head_dim": _head_dim(cfg),
        "num_kv_heads": _int(cfg, "num_key_value_heads", heads),
        "rope_theta": int(cfg.get("rope_theta", rope_theta)),
        "norm_eps": float(cfg.get("rms_norm_eps", norm_eps)),
    }


def _qwen3_config(cfg: Mapping[str, Any], dtype: Any) -> Any:
    return qwen3_model.ModelConfig(
        **_decoder_fields(cfg, rope_theta=1_000_000, norm_eps=1e-6),
        use_tied_embedding=bool(cfg.get("tie_word_embeddings", False)),
        dtype=dtype,
        param_dtype=dtype,
    )


def _qwen2_config(cfg: Mapping[str, Any], dtype: Any) -> Any:
    from tunix.models.qwen2 import model

    return model.ModelConfig(
        **_decoder_fields(cfg, rope_theta=1_000_000, norm_eps=1e-6),
        use_tied_embedding=bool(cfg.get("tie_word_embeddings", False)),
        dtype=dtype,
        param_dtype=dtype,
    )


def _llama3_config(cfg: Mapping[str, Any], dtype: Any) -> Any:
    # Tunix's Llama 3 config has no dtype fields: the loader casts every tensor to `dtype`.
    from tunix.models.llama3 import model

    return model.ModelConfig(
        **_decoder_fields(cfg, rope_theta=500_000, norm_eps=1e-5),
        weight_tying=bool(cfg.get("tie_word_embeddings", False)),
    )


def _gemma3_config(config: Mapping[str, Any], dtype: Any) -> Any:
    from tunix.models.gemma3 import model

    # The multimodal checkpoint keeps the language model under text_config; its vision tower is not loaded.
    cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    assert cfg is not None
    hidden, heads = _int(cfg, "hidden_size"), _int(cfg, "num_attention_heads")
    head_dim = _int(cfg, "head_dim", 256)
    scalar = cfg.get("query_pre_attn_scalar", head_dim)
    norms = model.QueryPreAttentionNormalisation
    if scalar == head_dim:
        query_norm = norms.BY_ONE_OVER_SQRT_HEAD_DIM
    elif scalar == hidden // heads:
        query_norm = norms.BY_ONE_OVER_SQRT_EMBED_DIM_DIV_NUM_HEADS
    else:
        raise ValueError(f"config.json: query_pre_attn_scalar {scalar} is neither head_dim nor hidden_size / heads.")
    scaling = cfg.get("rope_scaling")
    factor = float(scaling.get("factor", 1.0)) if isinstance(scaling, dict) else 1.0
    return model.ModelConfig(
        num_layers=_int(cfg, "num_hidden_layers"),
        num_embed=_int(cfg, "vocab_size", 262_208),
        embed_dim=hidden,
        hidden_dim=_int(cfg, "intermediate_size"),
        num_heads=heads,
        head_dim=head_dim,
        num_kv_heads=_int(cfg, "num_key_value_heads", heads),
        sliding_window_size=_int(cfg, "sliding_window", 4096),
        local_base_frequency=int(cfg.get("rope_local_base_freq", 10_000)),
        global_base_frequency=int(cfg.get("rope_theta", 1_000_000)),
        global_scale_factor=factor,
        query_pre_attn_norm=query_norm,
        vision_config=None,
        param_dtype=dtype,  # Tunix defaults to bfloat16; a float32 run asks for float32
    )


def _qwen2_class() -> Any:
    from tunix.models.qwen2 import model

    return model.Qwen2


def _llama3_class() -> Any:
    from tunix.models.llama3 import model

    return model.Llama3


def _gemma3_class() -> Any:
    from tunix.models.gemma3 import model

    return model.Gemma3


def _qwen2_loader() -> Any:
    from tunix.models.qwen2 import params

    return params.create_model_from_safe_tensors


def _llama3_loader() -> Any:
    from tunix.models.llama3 import params

    return params.create_model_from_safe_tensors


def _gemma3_loader() -> Any:
    from tunix.models.gemma3 import params_safetensors

    return params_safetensors.create_model_from_safe_tensors


QWEN3 = Family(
    "qwen3",
    _qwen3_config,
    lambda: qwen3_model.Qwen3,
    lambda: qwen3_params.create_model_from_safe_tensors,
    PROJECTIONS,
)
GEMMA3 = Family(
    "gemma3",
    _gemma3_config,
    _gemma3_class,
    _gemma3_loader,
    # Gemma's attention fuses projections: q + kv, or qkv when every head has its own kv.
    ".*q_einsum|.*kv_einsum|.*qkv_einsum|.*attn_vec_einsum|.*gate_proj|.*up_proj|.*down_proj",
)
FAMILIES: dict[str, Family] = {
    "qwen3": QWEN3,
    "qwen2": Family("qwen2", _qwen2_config, _qwen2_class, _qwen2_loader, PROJECTIONS),
    "llama": Family("llama", _llama3_config, _llama3_class, _llama3_loader, PROJECTIONS),
    "gemma3": GEMMA3,
    "gemma3_text": GEMMA3,
}


def family_of(config: Mapping[str, Any]) -> Family:
    model_type = config.get("model_type")
    try:
        return FAMILIES[str(model_type)]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise ValueError(f"model_type {model_type!r} is not supported (known: {known}).") from None


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


def config_from_hf(directory: Path, dtype: str = "float32") -> Any:
    """The family's Tunix ModelConfig from a Hugging Face `config.json`."""
    data = json.loads((directory / "config.json").read_text())
    return family_of(data).config(data, DTYPES[dtype])


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


@dataclass
class Loaded:
    """A built base model: the Tunix model, its ModelConfig, tokenizer and family."""

    model: nnx.Module
    config: Any
    tokenizer: Tokenizer
    family: Family


def build_base(
    base_model: dict[str, Any], seed: int, *, dtype: str = "float32", mesh: jax.sharding.Mesh | None = None
) -> Loaded:
    """The base model: a preset (random init) or a local checkpoint loaded by its family's Tunix loader.

    `dtype` ("float32" or "bfloat16") is the parameters' and the computation's.
    With a `mesh`, the parameters are placed by the model's sharding annotations
    (Tunix's ShardingConfigs name the axes "fsdp" and "tp").
    """
    if base_model["kind"] == "preset":
        cfg = preset_config(base_model["name"], dtype)
        model = qwen3_model.Qwen3(cfg, rngs=nnx.Rngs(params=seed))
        reinit_zero_kernels(model, seed)
        if mesh is not None:
            shard_model(model, mesh)
        return Loaded(model, cfg, ByteTokenizer(), QWEN3)
    directory = Path(base_model["path"])
    config = json.loads((directory / "config.json").read_text())
    family = family_of(config)
    cfg = family.config(config, DTYPES[dtype])
    tokenizer = load_tokenizer(directory)
    model = family.loader()(str(directory), cfg, mesh=mesh, dtype=DTYPES[dtype])
    return Loaded(model, cfg, tokenizer, family)


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


def apply_lora(model: nnx.Module, rank: int, alpha: float, seed: int, family: Family = QWEN3) -> nnx.Module:
    import qwix

    provider = qwix.LoraProvider(module_path=family.lora_targets, rank=rank, alpha=alpha)
    inputs = model.get_model_input()  # type: ignore[attr-defined]
    lora_model: nnx.Module = qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(seed), **inputs)
    return lora_model


def cache_config(cfg: Any, size: int) -> Any:
    """The Sampler's KV-cache shape (every family's ModelConfig names these fields alike)."""
    from tunix.generate import sampler as sampler_lib

    return sampler_lib.CacheConfig(
        cache_size=size, num_layers=cfg.num_layers, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim
    )


def count_params(model: nnx.Module, kind: type = nnx.Param) -> int:
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, kind))))


def save_hf(model: nnx.Module, cfg: Any, tokenizer: Any, directory: Path) -> None:
    """A Qwen3-class model (a preset's random base) in the Hugging Face layout, with its own tokenizer."""
    from runs.training import export

    export.export_hf(model, cfg, QWEN3.name, directory, base_dir=None, tokenizer=tokenizer)


def save_final(
    model: nnx.Module,
    cfg: Any,
    tokenizer: Any,
    directory: Path,
    *,
    lora: tuple[int, float] | None,
    base_dir: Path | None,
    family: Family = QWEN3,
    dtype: str = "float32",
) -> None:
    """The trained model in its family's Hugging Face layout (runs.training.export: Tunix's mapping inverted).

    LoRA runs are written merged, and their adapter alone in the PEFT layout under `adapter/`
    (a sub-folder: Tunix's loader reads every *.safetensors at the top of a model folder).
    """
    from runs.training import export

    export.export_hf(model, cfg, family.name, directory, base_dir=base_dir, tokenizer=tokenizer, dtype=dtype, lora=lora)
    if lora is not None:
        rank, alpha = lora
        base_name = base_dir.name if base_dir is not None else "tunix-rt preset"
        export.export_peft_adapter(
            model, cfg, family.name, directory / "adapter", rank=rank, alpha=alpha, base_name=base_name
        )
