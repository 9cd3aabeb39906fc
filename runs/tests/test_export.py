"""Exported models reload with Tunix's own loaders and give the same logits; PEFT adapters have PEFT's layout.

Every family is built tiny with random weights (norms and Tunix's zero-initialised MLP kernels included,
so a mis-mapped tensor changes the logits), written with `export_hf`, and read back with the family's
Tunix loader. Shapes are also checked against Hugging Face's conventions: the loader would accept a
wrongly split reshape, `transformers` would not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file
from tunix.models.gemma3 import model as gemma3_model
from tunix.models.gemma3 import params_safetensors as gemma3_params
from tunix.models.llama3 import model as llama3_model
from tunix.models.llama3 import params as llama3_params
from tunix.models.qwen2 import model as qwen2_model
from tunix.models.qwen2 import params as qwen2_params
from tunix.models.qwen3 import model as qwen3_model
from tunix.models.qwen3 import params as qwen3_params

from runs.training.export import export_hf, export_peft_adapter, hf_state_dict
from runs.training.modeling import config_from_hf
from runs.training.tokenizers import ByteTokenizer

SIZES = {"num_layers": 1, "embed_dim": 32, "hidden_dim": 48, "head_dim": 8}
VOCAB = 64
DENSE = ".*q_proj|.*k_proj|.*v_proj|.*o_proj|.*gate_proj|.*up_proj|.*down_proj"
GEMMA = ".*q_einsum|.*kv_einsum|.*qkv_einsum|.*attn_vec_einsum|.*gate_proj|.*up_proj|.*down_proj"


def _config(family: str, *, tied: bool = True, kv_heads: int = 2) -> Any:
    rope = {"rope_theta": 10_000, "norm_eps": 1e-6}
    heads = {"num_heads": 4, "num_kv_heads": kv_heads}
    if family == "qwen3":
        return qwen3_model.ModelConfig(**SIZES, **heads, **rope, vocab_size=VOCAB, use_tied_embedding=tied)
    if family == "qwen2":
        return qwen2_model.ModelConfig(**SIZES, **heads, **rope, vocab_size=VOCAB, use_tied_embedding=tied)
    if family == "llama":
        return llama3_model.ModelConfig(**SIZES, **heads, **rope, vocab_size=VOCAB, weight_tying=tied)
    return gemma3_model.ModelConfig(**SIZES, **heads, num_embed=VOCAB, sliding_window_size=4, param_dtype=jnp.float32)


MODEL = {
    "qwen3": qwen3_model.Qwen3,
    "qwen2": qwen2_model.Qwen2,
    "llama": llama3_model.Llama3,
    "gemma3": gemma3_model.Gemma3,
}
LOADER = {"qwen3": qwen3_params, "qwen2": qwen2_params, "llama": llama3_params, "gemma3": gemma3_params}


def _randomise(model: nnx.Module, seed: int, kind: type = nnx.Param) -> None:
    """Every parameter of `kind` gets a random offset: no zeros or ones left for a wrong mapping to hide behind."""
    key = jax.random.key(seed)
    for _, var in nnx.iter_graph(model):
        if (
            isinstance(var, nnx.Param)
            and isinstance(var, kind)
            and (kind is nnx.LoRAParam or not isinstance(var, nnx.LoRAParam))
        ):
            key, sub = jax.random.split(key)
            var[...] = var[...] + 0.2 * jax.random.normal(sub, var.shape, var.dtype)


def _build(family: str, **kwargs: Any) -> tuple[nnx.Module, Any]:
    cfg = _config(family, **kwargs)
    model = MODEL[family](cfg, rngs=nnx.Rngs(params=0))
    _randomise(model, 1)
    return model, cfg


def _lora(model: nnx.Module, family: str, rank: int = 2, alpha: float = 6.0) -> nnx.Module:
    import qwix

    targets = GEMMA if family == "gemma3" else DENSE + "|lm_head"
    provider = qwix.LoraProvider(module_path=targets, rank=rank, alpha=alpha)
    lora_model: nnx.Module = qwix.apply_lora_to_model(
        model,
        provider,
        rngs=nnx.Rngs(3),
        **model.get_model_input(),  # type: ignore[attr-defined]
    )
    _randomise(lora_model, 2, nnx.LoRAParam)  # qwix starts B at zero: the adapter would change nothing
    return lora_model


TOKENS = jnp.array([[5, 9, 1, 33, 2, 60, 17, 8], [40, 3, 3, 12, 63, 0, 21, 7]], dtype=jnp.int32)


def _logits(model: nnx.Module) -> np.ndarray:
    b, t = TOKENS.shape
    positions = jnp.broadcast_to(jnp.arange(t), (b, t))
    mask = jnp.tril(jnp.ones((b, t, t), dtype=bool))
    out, _ = model(TOKENS, positions, None, mask)
    return np.asarray(out, dtype=np.float32)


def _reload(family: str, cfg: Any, directory: Path) -> nnx.Module:
    model: nnx.Module = LOADER[family].create_model_from_safe_tensors(str(directory), cfg, dtype=jnp.float32)
    return model


def _assert_hf_shapes(weights: dict[str, np.ndarray], cfg: Any) -> None:
    d, q, kv = cfg.embed_dim, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    expected = {
        "self_attn.q_proj.weight": (q, d),
        "self_attn.k_proj.weight": (kv, d),
        "self_attn.v_proj.weight": (kv, d),
        "self_attn.o_proj.weight": (d, q),
        "mlp.gate_proj.weight": (cfg.hidden_dim, d),
        "mlp.up_proj.weight": (cfg.hidden_dim, d),
        "mlp.down_proj.weight": (d, cfg.hidden_dim),
    }
    for layer in range(cfg.num_layers):
        for name, shape in expected.items():
            assert weights[f"model.layers.{layer}.{name}"].shape == shape, name
    assert weights["model.embed_tokens.weight"].shape == (VOCAB, d)


CASES = [
    ("qwen3", {"tied": False}),
    ("qwen3", {"tied": True}),
    ("qwen2", {"tied": True}),
    ("llama", {"tied": False}),
    ("llama", {"tied": True}),
    ("gemma3", {"kv_heads": 2}),  # separate q and fused kv kernels
    ("gemma3", {"kv_heads": 4}),  # one fused qkv kernel
]


@pytest.mark.parametrize(("family", "options"), CASES)
def test_float32_export_reloads_with_identical_logits(family: str, options: dict[str, Any], tmp_path: Path) -> None:
    model, cfg = _build(family, **options)
    export_hf(model, cfg, family, tmp_path, base_dir=None, tokenizer=ByteTokenizer())

    weights = load_file(str(tmp_path / "model.safetensors"))
    _assert_hf_shapes(weights, cfg)
    assert all(w.dtype == np.float32 for w in weights.values())
    # Tied models carry no lm_head (transformers ties it from the config); untied ones do, as [vocab, d].
    tied = options.get("tied", True)
    assert ("lm_head.weight" in weights) is not tied
    if not tied:
        assert weights["lm_head.weight"].shape == (VOCAB, cfg.embed_dim)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied
    assert config["torch_dtype"] == "float32"
    assert config["num_key_value_heads"] == cfg.num_kv_heads
    assert (tmp_path / "tokenizer_config.json").is_file()

    np.testing.assert_allclose(_logits(_reload(family, cfg, tmp_path)), _logits(model), rtol=1e-5, atol=1e-5)


def test_written_qwen3_config_describes_the_model(tmp_path: Path) -> None:
    model, cfg = _build("qwen3", tied=False)
    export_hf(model, cfg, "qwen3", tmp_path, base_dir=None)
    again = config_from_hf(tmp_path)
    for field in ("num_layers", "vocab_size", "embed_dim", "hidden_dim", "num_heads", "head_dim", "num_kv_heads"):
        assert getattr(again, field) == getattr(cfg, field), field
    assert again.use_tied_embedding is False


def test_bfloat16_export_reloads_with_close_logits(tmp_path: Path) -> None:
    model, cfg = _build("llama", tied=False)
    export_hf(model, cfg, "llama", tmp_path, base_dir=None, dtype="bfloat16")

    header = (tmp_path / "model.safetensors").read_bytes()[:4096]
    assert b'"BF16"' in header and b'"F32"' not in header
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    expected, got = _logits(model), _logits(_reload("llama", cfg, tmp_path))
    np.testing.assert_allclose(got, expected, atol=0.05 * float(np.abs(expected).max()))
    assert not np.array_equal(got, expected)  # it really was rounded


def test_export_over_the_shard_threshold_writes_an_index_and_reloads(tmp_path: Path) -> None:
    model, cfg = _build("qwen3", tied=False)
    export_hf(model, cfg, "qwen3", tmp_path, base_dir=None, max_shard_bytes=20_000)

    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(shards) > 2 and "model.safetensors" not in shards
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert set(index["weight_map"]) == set(hf_state_dict(model, cfg, "qwen3"))
    np.testing.assert_allclose(_logits(_reload("qwen3", cfg, tmp_path)), _logits(model), rtol=1e-5, atol=1e-5)

    export_hf(model, cfg, "qwen3", tmp_path, base_dir=None)  # re-export below the threshold: no stale shards
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["model.safetensors"]
    assert not (tmp_path / "model.safetensors.index.json").exists()


def test_export_from_a_base_folder_keeps_its_config_and_tokenizer_files(tmp_path: Path) -> None:
    model, cfg = _build("qwen3", tied=True)
    base = tmp_path / "base"
    export_hf(model, cfg, "qwen3", base, base_dir=None)
    config = json.loads((base / "config.json").read_text()) | {"max_position_embeddings": 4096}
    (base / "config.json").write_text(json.dumps(config))
    (base / "tokenizer.json").write_text('{"model": {}}')
    (base / "generation_config.json").write_text('{"eos_token_id": [2, 7]}')

    out = tmp_path / "out"
    export_hf(model, cfg, "qwen3", out, base_dir=base, dtype="bfloat16")

    written = json.loads((out / "config.json").read_text())
    assert written == config | {"torch_dtype": "bfloat16"}
    assert (out / "tokenizer.json").read_text() == '{"model": {}}'
    assert json.loads((out / "generation_config.json").read_text()) == {"eos_token_id": [2, 7]}


@pytest.mark.parametrize(("family", "options"), [("qwen3", {"tied": False}), ("llama", {}), *CASES[-2:]])
def test_lora_export_is_merged_and_the_peft_adapter_matches_it(
    family: str, options: dict[str, Any], tmp_path: Path
) -> None:
    rank, alpha = 2, 6.0
    base, cfg = _build(family, **options)
    lora_model = _lora(base, family, rank, alpha)
    assert not np.allclose(_logits(lora_model), _logits(base))

    export_hf(lora_model, cfg, family, tmp_path / "merged", base_dir=None, lora=(rank, alpha))
    np.testing.assert_allclose(
        _logits(_reload(family, cfg, tmp_path / "merged")), _logits(lora_model), rtol=1e-4, atol=1e-5
    )

    export_peft_adapter(lora_model, cfg, family, tmp_path / "adapter", rank=rank, alpha=alpha, base_name="org/base")
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    modules = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    if family == "qwen3":
        modules = sorted([*modules, "lm_head"])
    assert adapter_config["target_modules"] == modules
    assert (adapter_config["peft_type"], adapter_config["task_type"], adapter_config["bias"]) == (
        "LORA",
        "CAUSAL_LM",
        "none",
    )
    assert (adapter_config["r"], adapter_config["lora_alpha"], adapter_config["lora_dropout"]) == (rank, alpha, 0.0)
    assert adapter_config["base_model_name_or_path"] == "org/base"

    adapter = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    base_weights = hf_state_dict(base, cfg, family)
    merged = load_file(str(tmp_path / "merged" / "model.safetensors"))
    adapted = {k.removeprefix("base_model.model.").removesuffix(".lora_A.weight") for k in adapter if "lora_A" in k}
    assert len(adapter) == 2 * len(adapted)
    assert adapted == {k.removesuffix(".weight") for k in base_weights if k.rsplit(".", 2)[-2] in modules}
    for module in adapted:
        a = adapter[f"base_model.model.{module}.lora_A.weight"]
        b = adapter[f"base_model.model.{module}.lora_B.weight"]
        out_features, in_features = base_weights[f"{module}.weight"].shape
        assert a.shape == (rank, in_features) and b.shape == (out_features, rank), module
        np.testing.assert_allclose(
            base_weights[f"{module}.weight"] + (alpha / rank) * b @ a, merged[f"{module}.weight"], rtol=1e-5, atol=1e-5
        )
    untouched = [k for k in base_weights if k.removesuffix(".weight") not in adapted]
    assert untouched and all(np.array_equal(base_weights[k], merged[k]) for k in untouched)


def test_a_lora_model_without_its_alpha_is_refused(tmp_path: Path) -> None:
    base, cfg = _build("qwen3", tied=True)
    with pytest.raises(ValueError, match="lora=\\(rank, alpha\\)"):
        export_hf(_lora(base, "qwen3"), cfg, "qwen3", tmp_path, base_dir=None)


def test_an_unknown_family_is_refused(tmp_path: Path) -> None:
    model, cfg = _build("qwen3")
    with pytest.raises(ValueError, match="'mistral' cannot be exported"):
        export_hf(model, cfg, "mistral", tmp_path, base_dir=None)
