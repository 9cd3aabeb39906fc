"""The base-model catalog: every folder under MODELS_DIR in Hugging Face layout, inspected without loading weights.

The web process lists it on each launch form, so it imports neither JAX nor
`safetensors`: a safetensors file starts with an 8-byte little-endian header
length and a JSON header naming each tensor's dtype and shape, which is all
the catalog needs. Results are cached per folder, keyed by the names, sizes
and mtimes of its entries, so a page costs one directory scan per folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.training import templates
from runs.training.tokenizers import BYTE_TOKENIZER_CLASS, token_ids

LOCAL_PREFIX = "local:"
INDEX_FILE = "model.safetensors.index.json"
# A header is a few hundred bytes per tensor; anything this large is not a safetensors header.
MAX_HEADER_BYTES = 100 * 1024 * 1024
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

FAMILIES = {
    "gemma3": "Gemma 3",
    "gemma3_text": "Gemma 3",
    "qwen3": "Qwen3",
    "qwen2": "Qwen2.5",
    "llama": "Llama 3",
}
# What runs/training/modeling.py builds (one Tunix loader per family) and what
# `load_tokenizer` reads (tokenizer.json, a SentencePiece tokenizer.model, the byte tokenizer).
TRAINABLE_FAMILIES = set(FAMILIES)
TRAINABLE_TOKENIZERS = {"hf-json", "sentencepiece", "both", "byte"}
# Where Tunix 0.1.7's loaders look for the language model's tensors: its Gemma 3 loader also
# reads the older multimodal layout; none reads transformers' newer `model.language_model.`.
LOADER_PREFIXES = {"gemma3": ("model.", "language_model.model."), "gemma3_text": ("model.", "language_model.model.")}

DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


class Unusable(Exception):
    """A folder that cannot be a base model; the message is the reason shown to people."""


@dataclass(frozen=True)
class BaseModel:
    """One folder under MODELS_DIR as the catalog sees it."""

    name: str
    path: str
    family: str = ""  # config.json's model_type
    parameters: int | None = None
    dtype: str = ""
    size_bytes: int = 0
    context_length: int | None = None
    tokenizer: str = ""  # hf-json, sentencepiece, both or byte
    chat_template: bool = False
    trained_template: str = ""  # the template a tunix-rt run fine-tuned it with (its tunixrt.json)
    special_tokens: dict[str, str | None] = field(default_factory=dict)
    eos_token_ids: list[int] = field(default_factory=list)
    usable: bool = False
    trainable: bool = False
    reason: str = ""  # why it is not usable, or, usable, why it cannot be trained yet

    @property
    def key(self) -> str:
        return f"{LOCAL_PREFIX}{self.name}"

    @property
    def family_label(self) -> str:
        return FAMILIES.get(self.family, self.family)

    @property
    def default_chat_template(self) -> str:
        """The template a run on this model gets unless it names one (runs.validation.default_template).

        A tunix-rt run's final model keeps the template it was fine-tuned with; a byte-tokenizer
        model descends from a preset (Gemma turns); any other checkpoint gets its family's.
        """
        if self.trained_template:
            return self.trained_template
        if self.tokenizer == "byte":
            return templates.DEFAULT
        return templates.for_family(self.family) if self.family in FAMILIES else ""

    @property
    def parameters_label(self) -> str:
        return human_count(self.parameters)

    @property
    def status(self) -> str:
        if not self.usable:
            return self.reason
        return "usable" if self.trainable else f"usable; {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "family": self.family,
            "family_label": self.family_label,
            "parameters": self.parameters,
            "parameters_label": self.parameters_label,
            "dtype": self.dtype,
            "size_bytes": self.size_bytes,
            "context_length": self.context_length,
            "tokenizer": self.tokenizer,
            "chat_template": self.chat_template,
            "default_chat_template": self.default_chat_template,
            "special_tokens": self.special_tokens,
            "eos_token_ids": self.eos_token_ids,
            "usable": self.usable,
            "trainable": self.trainable,
            "reason": self.reason,
        }


def human_count(n: int | None) -> str:
    """A parameter count as people say it: 270 M, 0.6 B, 1.7 B, 12 K."""
    if n is None:
        return ""
    for scale, unit, floor in ((10**9, "B", 5 * 10**8), (10**6, "M", 10**6), (10**3, "K", 10**3)):
        if n >= floor:
            value = n / scale
            text = f"{value:.2g}" if unit == "B" and value < 10 else f"{value:.3g}"
            return f"{text if 'e' not in text else f'{value:.0f}'} {unit}"
    return str(n)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Unusable(f"{path.name} is not readable JSON: {exc}") from None


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors (name → {dtype, shape, data_offsets}) of a safetensors file, from its header alone."""
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise Unusable(f"{path.name} is not a safetensors file (shorter than the 8-byte header length).")
            length = int.from_bytes(raw, "little")
            total = os.fstat(f.fileno()).st_size
            if length > min(MAX_HEADER_BYTES, total - 8):
                raise Unusable(f"{path.name} is not a safetensors file (header length {length} exceeds the file).")
            header = json.loads(f.read(length).decode("utf-8"))
    except OSError as exc:
        raise Unusable(f"{path.name} is not readable: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise Unusable(f"{path.name} has an unreadable safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise Unusable(f"{path.name} has an unreadable safetensors header: not a JSON object.")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, info in tensors.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise Unusable(f"{path.name} has an unreadable safetensors header: tensor {name} has no valid shape.")
        if not isinstance(info.get("dtype"), str):
            raise Unusable(f"{path.name} has an unreadable safetensors header: tensor {name} has no dtype.")
    return tensors


def _weight_files(folder: Path) -> list[Path]:
    index = folder / INDEX_FILE
    if index.is_file():
        data = _read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise Unusable(f"{INDEX_FILE} has no weight_map.")
        shards = sorted({str(v) for v in weight_map.values()})
        for shard in shards:
            if "/" in shard or "\\" in shard or shard.startswith("."):
                raise Unusable(f"{INDEX_FILE} names a shard outside the folder: {shard!r}.")
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise Unusable(f"Missing shard {', '.join(missing)} (named in {INDEX_FILE}).")
        return [folder / s for s in shards]
    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if not files:
        raise Unusable("No *.safetensors weights.")
    return files


def _read_tensors(folder: Path) -> dict[str, tuple[str, list[int]]]:
    files = _weight_files(folder)
    tensors: dict[str, tuple[str, list[int]]] = {}
    for path in files:
        for name, info in read_safetensors_header(path).items():
            tensors[name] = (DTYPES.get(info["dtype"], info["dtype"].lower()), list(info["shape"]))
    index = folder / INDEX_FILE
    if index.is_file():
        absent = sorted(set(_read_json(index)["weight_map"]) - set(tensors))
        if absent:
            more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
            raise Unusable(f"Tensor {absent[0]}{more} named in {INDEX_FILE} is in no shard.")
    if not tensors:
        raise Unusable("The safetensors files hold no tensors.")
    return tensors


def _dtype_label(tensors: Mapping[str, tuple[str, list[int]]]) -> str:
    """Dtypes by the number of elements they hold, largest first (mixed checkpoints name each)."""
    totals: dict[str, int] = {}
    for dtype, shape in tensors.values():
        totals[dtype] = totals.get(dtype, 0) + math.prod(shape)
    return ", ".join(sorted(totals, key=lambda d: -totals[d]))


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    # The multimodal Gemma 3 config keeps the language model's dimensions under text_config.
    text = config.get("text_config")
    return text if config.get("model_type") == "gemma3" and isinstance(text, dict) else config


def _int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        raise Unusable(f"config.json lacks {key}.")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Unusable(f"config.json: {key} must be a positive whole number, not {value!r}.")
    return value


def _check_shapes(family: str, config: Mapping[str, Any], tensors: Mapping[str, tuple[str, list[int]]]) -> str:
    """Compare the key tensors of each family with the dimensions config.json declares; return the tensor prefix."""
    cfg = _text_config(config)
    vocab = _int(cfg, "vocab_size", 262_208 if family.startswith("gemma3") else None)
    hidden = _int(cfg, "hidden_size")
    layers = _int(cfg, "num_hidden_layers")
    heads = _int(cfg, "num_attention_heads")
    kv_heads = _int(cfg, "num_key_value_heads", heads)
    head_dim = _int(cfg, "head_dim", hidden // heads if hidden % heads == 0 else None)
    inter = _int(cfg, "intermediate_size")

    prefixes = ("model.", "language_model.model.", "model.language_model.")
    prefix = next((p for p in prefixes if f"{p}embed_tokens.weight" in tensors), None)
    if prefix is None:
        raise Unusable("No embedding tensor (model.embed_tokens.weight) in the safetensors files.")
    layer = f"{prefix}layers.0."
    expected = {
        f"{prefix}embed_tokens.weight": ([vocab, hidden], "vocab_size, hidden_size"),
        f"{layer}self_attn.q_proj.weight": ([heads * head_dim, hidden], "num_attention_heads × head_dim, hidden_size"),
        f"{layer}self_attn.k_proj.weight": (
            [kv_heads * head_dim, hidden],
            "num_key_value_heads × head_dim, hidden_size",
        ),
        f"{layer}self_attn.v_proj.weight": (
            [kv_heads * head_dim, hidden],
            "num_key_value_heads × head_dim, hidden_size",
        ),
        f"{layer}self_attn.o_proj.weight": ([hidden, heads * head_dim], "hidden_size, num_attention_heads × head_dim"),
        f"{layer}mlp.gate_proj.weight": ([inter, hidden], "intermediate_size, hidden_size"),
        f"{layer}mlp.up_proj.weight": ([inter, hidden], "intermediate_size, hidden_size"),
        f"{layer}mlp.down_proj.weight": ([hidden, inter], "hidden_size, intermediate_size"),
    }
    if "lm_head.weight" in tensors:
        expected["lm_head.weight"] = ([vocab, hidden], "vocab_size, hidden_size")
    elif cfg.get("tie_word_embeddings") is False and not family.startswith("gemma3"):
        # Untied weights need their own output projection; Gemma always ties (its loader ignores lm_head).
        raise Unusable("config.json says tie_word_embeddings=false but there is no lm_head.weight.")
    for name, (shape, meaning) in expected.items():
        if name not in tensors:
            raise Unusable(f"No tensor {name} in the safetensors files.")
        actual = tensors[name][1]
        if actual != shape:
            raise Unusable(f"{name} has shape {actual}; config.json implies {shape} ({meaning}).")
    found = {int(m.group(1)) for n in tensors if (m := re.match(re.escape(prefix) + r"layers\.(\d+)\.", n))}
    if len(found) != layers or (found and max(found) != layers - 1):
        raise Unusable(f"config.json says num_hidden_layers={layers}; the weights hold {len(found)} layers.")
    if family == "qwen2":
        for which, size in (("q", heads * head_dim), ("k", kv_heads * head_dim), ("v", kv_heads * head_dim)):
            name = f"{layer}self_attn.{which}_proj.bias"
            if name not in tensors:
                raise Unusable(f"No tensor {name} in the safetensors files (Qwen2 attention has q/k/v biases).")
            if tensors[name][1] != [size]:
                raise Unusable(f"{name} has shape {tensors[name][1]}; config.json implies [{size}].")
    if family.startswith("gemma3"):
        scalar = cfg.get("query_pre_attn_scalar", head_dim)
        if scalar not in (head_dim, hidden // heads):
            raise Unusable(
                f"config.json: query_pre_attn_scalar {scalar!r} is neither head_dim ({head_dim}) "
                f"nor hidden_size / num_attention_heads ({hidden // heads}); Tunix's Gemma 3 supports only those."
            )
    return prefix


def _token(value: Any) -> str | None:
    # tokenizer_config.json writes a special token as a string or as an AddedToken dict.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


@dataclass
class _Tokenizer:
    kind: str = ""
    chat_template: bool = False
    special_tokens: dict[str, str | None] = field(default_factory=dict)
    eos_token_ids: list[int] = field(default_factory=list)
    vocab_size: int | None = None  # tokenizer.json's, added tokens included


def _check_tokenizer_json(path: Path) -> int:
    """Load tokenizer.json as the trainer will (the `tokenizers` package); its vocabulary size."""
    from tokenizers import Tokenizer

    try:
        return int(Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True))
    except Exception as exc:  # noqa: BLE001  (the Rust parser raises plain Exceptions)
        raise Unusable(f"tokenizer.json is not readable by the tokenizers package: {exc}") from None


def _inspect_tokenizer(folder: Path) -> _Tokenizer:
    found = _Tokenizer()
    config: Any = {}
    if (folder / "tokenizer_config.json").is_file():
        config = _read_json(folder / "tokenizer_config.json")
        if not isinstance(config, dict):
            raise Unusable("tokenizer_config.json is not a JSON object.")
    has_json = (folder / "tokenizer.json").is_file()
    if has_json:
        data = _read_json(folder / "tokenizer.json")
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise Unusable("tokenizer.json is not a tokenizer (no model section).")
        found.vocab_size = _check_tokenizer_json(folder / "tokenizer.json")
    sp = folder / "tokenizer.model"
    has_sp = sp.is_file()
    if has_sp and sp.stat().st_size == 0:
        raise Unusable("tokenizer.model is empty.")
    if has_json and has_sp:
        found.kind = "both"
    elif has_json:
        found.kind = "hf-json"
    elif has_sp:
        found.kind = "sentencepiece"
    elif config.get("tokenizer_class") == BYTE_TOKENIZER_CLASS:
        found.kind = "byte"
    else:
        raise Unusable(
            "No tokenizer: expected tokenizer.json, tokenizer.model "
            f"or a tokenizer_config.json with tokenizer_class {BYTE_TOKENIZER_CLASS!r}."
        )
    template = config.get("chat_template")
    found.chat_template = bool(template) or (folder / "chat_template.jinja").is_file()
    found.special_tokens = {name: _token(config.get(f"{name}_token")) for name in ("bos", "eos", "pad")}
    if (folder / "generation_config.json").is_file():
        generation = _read_json(folder / "generation_config.json")
        if isinstance(generation, dict):
            found.eos_token_ids = token_ids(generation.get("eos_token_id"))
    if found.kind != "byte" and not found.special_tokens["eos"] and not found.eos_token_ids:
        model_config = _read_json(folder / "config.json")
        text_eos = token_ids(_text_config(model_config).get("eos_token_id"))
        if not text_eos and not token_ids(model_config.get("eos_token_id")):
            raise Unusable(
                "No end-of-sequence token: tokenizer_config.json has no eos_token and neither "
                "generation_config.json nor config.json has an eos_token_id."
            )
    return found


def _trained_template(folder: Path) -> str:
    """The chat template of the run that wrote this folder (its tunixrt.json), if any."""
    try:
        data = json.loads((folder / "tunixrt.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return ""
    name = data.get("chat_template") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name in templates.TEMPLATES else ""


def _folder_size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while we walk
                total += (Path(root) / name).stat().st_size
    return total


def _training_support(family: str, tokenizer: str, prefix: str) -> str:
    """Empty when today's trainer can train this folder, else why not (it is otherwise valid)."""
    if family not in TRAINABLE_FAMILIES:
        return f"Detected {FAMILIES[family]}; training this family is not supported yet."
    if tokenizer not in TRAINABLE_TOKENIZERS:
        return f"Detected {FAMILIES[family]} with a {tokenizer} tokenizer, which training cannot read."
    prefixes = LOADER_PREFIXES.get(family, ("model.",))
    if prefix not in prefixes:
        return (
            f"Detected {FAMILIES[family]} with tensors under {prefix!r}; Tunix's loader reads "
            f"{' or '.join(repr(p) for p in prefixes)} only."
        )
    return ""


def inspect_folder(folder: Path, name: str | None = None) -> BaseModel:
    """What the catalog says about one folder: its details and, when unusable, the first reason."""
    entry = BaseModel(name=name or folder.name, path=str(folder), size_bytes=_folder_size(folder))
    try:
        if not (folder / "config.json").is_file():
            raise Unusable("No config.json.")
        config = _read_json(folder / "config.json")
        if not isinstance(config, dict):
            raise Unusable("config.json is not a JSON object.")
        family = config.get("model_type")
        if not family:
            raise Unusable("config.json has no model_type.")
        if family not in FAMILIES:
            known = ", ".join(FAMILIES)
            raise Unusable(f"Unknown model_type {family!r} in config.json (known: {known}).")
        cfg = _text_config(config)
        context = cfg.get("max_position_embeddings")
        entry = replace(
            entry, family=str(family), context_length=context if isinstance(context, int) and context > 0 else None
        )
        tensors = _read_tensors(folder)
        entry = replace(
            entry, parameters=sum(math.prod(shape) for _, shape in tensors.values()), dtype=_dtype_label(tensors)
        )
        prefix = _check_shapes(family, config, tensors)
        tok = _inspect_tokenizer(folder)
        entry = replace(entry, trained_template=_trained_template(folder))
        vocab = _text_config(config).get("vocab_size", 262_208 if family.startswith("gemma3") else None)
        if tok.vocab_size is not None and isinstance(vocab, int) and tok.vocab_size > vocab:
            raise Unusable(
                f"tokenizer.json has {tok.vocab_size} tokens but config.json's vocab_size is {vocab}: "
                "token ids past the embedding table."
            )
        entry = replace(
            entry,
            tokenizer=tok.kind,
            chat_template=tok.chat_template,
            special_tokens=tok.special_tokens,
            eos_token_ids=tok.eos_token_ids,
        )
    except Unusable as exc:
        return replace(entry, reason=str(exc))
    reason = _training_support(entry.family, entry.tokenizer, prefix)
    return replace(entry, usable=True, trainable=not reason, reason=reason)


_cache: dict[str, tuple[tuple[Any, ...], BaseModel]] = {}
_cache_lock = threading.Lock()


def _signature(folder: Path) -> tuple[Any, ...]:
    # Names, sizes and mtimes of the top-level entries: a copied, replaced or removed file
    # (or a change inside a subfolder, which touches that subfolder's mtime) is a new key.
    entries = []
    with os.scandir(folder) as it:
        for e in it:
            try:
                st = e.stat()
            except OSError:
                continue
            entries.append((e.name, st.st_mtime_ns, st.st_size))
    return (os.path.realpath(folder), tuple(sorted(entries)))


def catalog() -> list[BaseModel]:
    """Every folder under MODELS_DIR, by name (hidden folders, e.g. a copy in progress, are skipped)."""
    root = Path(settings.MODELS_DIR)
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            key = _signature(folder)
        except OSError:
            continue
        cached = _cache.get(str(folder))
        if cached is not None and cached[0] == key:
            entries.append(cached[1])
            continue
        entry = inspect_folder(folder)
        with _cache_lock:
            _cache[str(folder)] = (key, entry)
        entries.append(entry)
    return entries


def trainable_models() -> list[BaseModel]:
    return [m for m in catalog() if m.trainable]


def find_base_model(key: str) -> BaseModel | None:
    """The catalog entry for `local:<name>`, usable or not (None when there is no such folder)."""
    if not key.startswith(LOCAL_PREFIX):
        return None
    return next((m for m in catalog() if m.key == key), None)


def check_name(name: str) -> str:
    """A folder name under MODELS_DIR that is also a safe `local:<name>` key."""
    if not NAME_PATTERN.fullmatch(name) or name.endswith("."):
        raise ValueError(
            f"Invalid name {name!r}: use letters, digits, '.', '_' and '-' (at most 100), "
            "starting with a letter or digit."
        )
    return name


def add_base_model(source: Path, name: str | None = None, *, link: bool = False) -> BaseModel:
    """Validate a Hugging Face folder and register it under MODELS_DIR (copied, or symlinked with link=True).

    Raises ValueError with the reason when the folder is not usable or the name is taken.
    """
    source = source.expanduser()
    if not source.is_dir():
        raise ValueError(f"{source} is not a folder.")
    name = check_name(name or source.resolve().name)
    checked = inspect_folder(source, name)
    if not checked.usable:
        raise ValueError(f"{source} is not a usable base model: {checked.reason}")
    root = Path(settings.MODELS_DIR)
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if target.exists() or target.is_symlink():
        raise ValueError(f"A base model named {name!r} already exists ({target}); choose another --name.")
    if link:
        target.symlink_to(source.resolve(), target_is_directory=True)
    else:
        # Copy under a hidden name first (the catalog skips it), then rename: a page never
        # lists a half-copied folder, and a failed copy leaves nothing behind.
        partial = root / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            shutil.copytree(source, partial, symlinks=False)
            partial.rename(target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return inspect_folder(target)


def describe(models: Iterable[BaseModel]) -> list[dict[str, Any]]:
    return [m.as_dict() for m in models]
