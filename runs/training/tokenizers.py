"""Offline tokenizers the trainer and the sampler accept (encode/decode/bos/eos/pad ids).

Three kinds: a Hugging Face `tokenizer.json` (read with the `tokenizers`
package, never `transformers`), a SentencePiece `tokenizer.model`, and
tunix-rt's byte tokenizer for the presets. Tunix's Sampler wraps any object
with encode/decode/bos_id/eos_id/pad_id (TokenizerType.NONE), so all three
share that small interface, plus `token_id` (one special token's id) and
`eos_ids` (every id the checkpoint's own files call end-of-sequence).

A checkpoint folder's special tokens come from its own files, in the order
`transformers` reads them: tokenizer_config.json (`bos_token`, `eos_token`,
`pad_token`, as strings or `{"content": …}` dicts, and `add_bos_token`), then
generation_config.json (`eos_token_id`, an int or a list), then config.json.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

BYTE_TOKENIZER_CLASS = "tunixrt.ByteTokenizer"
# Files copied beside an exported model so that it is a base model again.
HF_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
)


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str, **_: Any) -> list[int]: ...
    def decode(self, ids: Any, **_: Any) -> str: ...
    def bos_id(self) -> int | None: ...
    def eos_id(self) -> int: ...
    def pad_id(self) -> int: ...
    def token_id(self, text: str) -> int | None: ...
    def eos_ids(self) -> list[int]: ...
    def save(self, directory: Path) -> None: ...


class ByteTokenizer:
    """UTF-8 bytes: ids 0, 1, 2 are pad, bos, eos; 3..258 the 256 byte values.

    BOS must not be 0: Tunix's Sampler only prepends a truthy bos id.
    """

    PAD, BOS, EOS, OFFSET = 0, 1, 2, 3
    vocab_size = 256 + 3

    def encode(self, text: str, **_: Any) -> list[int]:
        return [b + self.OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: Any, **_: Any) -> str:
        data = bytes(int(i) - self.OFFSET for i in ids if self.OFFSET <= int(i) < self.vocab_size)
        return data.decode("utf-8", errors="replace")

    def bos_id(self) -> int:
        return self.BOS

    def eos_id(self) -> int:
        return self.EOS

    def pad_id(self) -> int:
        return self.PAD

    def token_id(self, text: str) -> int | None:
        return None  # no special tokens beyond pad, bos and eos

    def eos_ids(self) -> list[int]:
        return [self.EOS]

    def save(self, directory: Path) -> None:
        (directory / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": BYTE_TOKENIZER_CLASS,
                    "pad_id": self.PAD,
                    "bos_id": self.BOS,
                    "eos_id": self.EOS,
                    "offset": self.OFFSET,
                    "vocab_size": self.vocab_size,
                },
                indent=2,
            )
        )


class SentencePieceTokenizer:
    """A `tokenizer.model` (SentencePiece); special tokens named in the folder's files win over the model's."""

    def __init__(self, path: Path) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(str(path))
        self.vocab_size = self.sp.GetPieceSize()
        self.path = path
        self.special = SpecialTokens.read(path.parent, self.token_id)

    def encode(self, text: str, **_: Any) -> list[int]:
        return list(self.sp.EncodeAsIds(text))

    def decode(self, ids: Any, **_: Any) -> str:
        return str(self.sp.DecodeIds([int(i) for i in ids]))

    def token_id(self, text: str) -> int | None:
        piece = int(self.sp.PieceToId(text))
        return piece if piece != self.sp.unk_id() or text == self.sp.IdToPiece(piece) else None

    def bos_id(self) -> int | None:
        if self.special.add_bos is False:
            return None
        if self.special.bos is not None:
            return self.special.bos
        bos = int(self.sp.bos_id())
        return bos if bos >= 0 else None

    def eos_id(self) -> int:
        if self.special.eos is not None:
            return self.special.eos
        return int(self.sp.eos_id())

    def pad_id(self) -> int:
        if self.special.pad is not None:
            return self.special.pad
        pad = int(self.sp.pad_id())
        return pad if pad >= 0 else 0

    def eos_ids(self) -> list[int]:
        return _unique([self.eos_id(), *self.special.eos_ids])

    def save(self, directory: Path) -> None:
        copy_tokenizer_files(self.path.parent, directory)


class HFTokenizer:
    """A Hugging Face `tokenizer.json`, read with the `tokenizers` package.

    Added tokens (the chat templates' `<|im_start|>`, `<start_of_turn>`, …) are
    matched before the model's pre-tokenizer runs, so each is one id. The
    tokenizer's own post-processor (e.g. Llama 3's BOS) is not applied: the
    trainer and the sampler add `bos_id()` themselves.
    """

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        self.path = path
        self.tk = _Tokenizer.from_file(str(path))
        self.vocab_size = int(self.tk.get_vocab_size(with_added_tokens=True))
        self.special = SpecialTokens.read(path.parent, self.token_id)
        if self.special.eos is None:
            raise ValueError(f"{path.parent}: no end-of-sequence token (eos_token or eos_token_id).")

    def encode(self, text: str, **_: Any) -> list[int]:
        return list(self.tk.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Any, **_: Any) -> str:
        return str(self.tk.decode([int(i) for i in ids], skip_special_tokens=True))

    def token_id(self, text: str) -> int | None:
        found = self.tk.token_to_id(text)
        return None if found is None else int(found)

    def bos_id(self) -> int | None:
        return None if self.special.add_bos is False else self.special.bos

    def eos_id(self) -> int:
        assert self.special.eos is not None
        return self.special.eos

    def pad_id(self) -> int:
        """The pad token; Llama 3 names none.

        Padding is masked out of attention wherever the id occurs, so the fallback must not
        be a token the chat template writes (Llama's `<|eot_id|>` ends every user turn):
        its fine-tuning pad token when the vocabulary has one, else another EOS id.
        """
        if self.special.pad is not None:
            return self.special.pad
        reserved = self.token_id("<|finetune_right_pad_id|>")
        if reserved is not None:
            return reserved
        others = [i for i in self.eos_ids() if i != self.eos_id()]
        return others[0] if others else self.eos_id()

    def eos_ids(self) -> list[int]:
        return _unique([self.eos_id(), *self.special.eos_ids])

    def save(self, directory: Path) -> None:
        copy_tokenizer_files(self.path.parent, directory)


@dataclass(frozen=True)
class SpecialTokens:
    """bos/eos/pad ids and every end-of-sequence id, from a checkpoint folder's own files."""

    bos: int | None
    eos: int | None
    pad: int | None
    add_bos: bool | None
    eos_ids: list[int]

    @classmethod
    def read(cls, directory: Path, token_id: Callable[[str], int | None]) -> SpecialTokens:
        tok_config = _json_object(directory / "tokenizer_config.json")
        generation = _json_object(directory / "generation_config.json")
        model_config = _json_object(directory / "config.json")
        if isinstance(model_config.get("text_config"), dict):  # multimodal Gemma 3
            model_config = {**model_config["text_config"], **model_config}

        def named(key: str) -> int | None:
            value = tok_config.get(f"{key}_token")
            if isinstance(value, dict):
                value = value.get("content")
            return token_id(value) if isinstance(value, str) and value else None

        generation_eos = token_ids(generation.get("eos_token_id"))
        config_eos = token_ids(model_config.get("eos_token_id"))
        eos = named("eos")
        if eos is None:
            eos = _first(generation_eos + config_eos)
        bos = named("bos")
        if bos is None and "bos_token" not in tok_config:  # an explicit null (Qwen) means none
            bos = _first(token_ids(generation.get("bos_token_id")) + token_ids(model_config.get("bos_token_id")))
        pad = named("pad")
        if pad is None:
            pad = _first(token_ids(generation.get("pad_token_id")) + token_ids(model_config.get("pad_token_id")))
        add_bos = tok_config.get("add_bos_token")
        return cls(bos, eos, pad, add_bos if isinstance(add_bos, bool) else None, generation_eos + config_eos)


def _json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def token_ids(value: Any) -> list[int]:
    """The ids a config file gives for a token: one int, a list of them, or none (bools are not ids)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _first(ids: list[int]) -> int | None:
    return ids[0] if ids else None


def _unique(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


def copy_tokenizer_files(source: Path, directory: Path) -> None:
    """The tokenizer files of a checkpoint folder, copied beside an exported model."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in HF_TOKENIZER_FILES:
        if (source / name).is_file() and source.resolve() != directory.resolve():
            shutil.copyfile(source / name, directory / name)


def stop_ids(tok: Tokenizer, template: str) -> list[int]:
    """What ends a sampled answer: the template's end-of-turn tokens the vocabulary has, and every EOS id."""
    from runs.training import templates

    turn_ends = [tok.token_id(text) for text in templates.get(template).stop]
    return _unique([i for i in turn_ends if i is not None] + tok.eos_ids())


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer stored beside a checkpoint: tokenizer.json, else tokenizer.model, else the byte tokenizer."""
    if (directory / "tokenizer.json").is_file():
        return HFTokenizer(directory / "tokenizer.json")
    if (directory / "tokenizer.model").is_file():
        return SentencePieceTokenizer(directory / "tokenizer.model")
    config = directory / "tokenizer_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if data.get("tokenizer_class") == BYTE_TOKENIZER_CLASS:
            return ByteTokenizer()
    raise FileNotFoundError(
        f"No supported tokenizer in {directory}: expected tokenizer.json, tokenizer.model (SentencePiece) "
        f"or tokenizer_config.json with tokenizer_class {BYTE_TOKENIZER_CLASS!r}."
    )
