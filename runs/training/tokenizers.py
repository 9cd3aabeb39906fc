"""Offline tokenizers the trainer and the sampler accept (encode/decode/bos/eos/pad ids)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BYTE_TOKENIZER_CLASS = "tunixrt.ByteTokenizer"


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
    """A `tokenizer.model` (SentencePiece) with the same small interface."""

    def __init__(self, path: Path) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(str(path))
        self.vocab_size = self.sp.GetPieceSize()
        self.path = path

    def encode(self, text: str, **_: Any) -> list[int]:
        return list(self.sp.EncodeAsIds(text))

    def decode(self, ids: Any, **_: Any) -> str:
        return str(self.sp.DecodeIds([int(i) for i in ids]))

    def bos_id(self) -> int:
        return int(self.sp.bos_id())

    def eos_id(self) -> int:
        return int(self.sp.eos_id())

    def pad_id(self) -> int:
        pad = int(self.sp.pad_id())
        return pad if pad >= 0 else 0

    def save(self, directory: Path) -> None:
        (directory / "tokenizer.model").write_bytes(self.path.read_bytes())


def load_tokenizer(directory: Path) -> ByteTokenizer | SentencePieceTokenizer:
    """The tokenizer stored beside a checkpoint: tokenizer.model or tunix-rt's byte tokenizer."""
    if (directory / "tokenizer.model").is_file():
        return SentencePieceTokenizer(directory / "tokenizer.model")
    config = directory / "tokenizer_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if data.get("tokenizer_class") == BYTE_TOKENIZER_CLASS:
            return ByteTokenizer()
    raise FileNotFoundError(
        f"No supported tokenizer in {directory}: expected tokenizer.model (SentencePiece) "
        f"or tokenizer_config.json with tokenizer_class {BYTE_TOKENIZER_CLASS!r}."
    )
