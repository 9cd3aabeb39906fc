"""Turning exported training examples into fixed-shape token batches for Tunix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runs.training.templates import render


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def bos_id(self) -> int | None: ...
    def eos_id(self) -> int: ...
    def pad_id(self) -> int: ...
    def eos_ids(self) -> list[int]: ...


def read_examples(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open("rb") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Encoded:
    """Right-padded tokens [N, L] and the loss mask (1 on the completion, which ends in an EOS id)."""

    tokens: np.ndarray
    mask: np.ndarray
    lengths: list[int]
    truncated: int
    dropped: int

    @property
    def count(self) -> int:
        return int(self.tokens.shape[0])


def encode_examples(examples: list[dict[str, Any]], tok: Tokenizer, max_len: int, template: str) -> Encoded:
    """Tokenize; count examples cut at max_len, drop those with no completion token left."""
    rows: list[list[int]] = []
    starts: list[int] = []
    lengths: list[int] = []
    truncated = dropped = 0
    eos_ids = set(tok.eos_ids())
    for ex in examples:
        head, tail = render(template, ex["prompt"], ex["response"])
        # The same rule as Tunix's Sampler: a BOS id is prepended only when there is one (Qwen has none).
        bos = tok.bos_id()
        prompt_ids = [*([bos] if bos else []), *tok.encode(head)]
        completion = tok.encode(tail)
        # A template whose turn ends in an EOS token (Qwen's <|im_end|>, Gemma's <end_of_turn>) is not doubled.
        if not completion or completion[-1] not in eos_ids:
            completion.append(tok.eos_id())
        ids = prompt_ids + completion
        lengths.append(len(ids))
        if len(ids) > max_len:
            truncated += 1
            ids = ids[:max_len]
        if len(prompt_ids) >= len(ids):
            dropped += 1
            continue
        rows.append(ids)
        starts.append(len(prompt_ids))
    tokens = np.full((len(rows), max_len), tok.pad_id(), np.int32)
    mask = np.zeros((len(rows), max_len), np.int32)
    for i, (ids, start) in enumerate(zip(rows, starts, strict=True)):
        tokens[i, : len(ids)] = ids
        mask[i, start : len(ids)] = 1
    return Encoded(tokens, mask, lengths, truncated, dropped)


def epoch_batches(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless, seeded batches of row indices with a constant shape (so the step compiles once).

    Deterministic: a resumed run re-pulls and skips the batches it already used.
    """
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if n < batch_size:
            perm = np.resize(perm, batch_size)
        for start in range(0, len(perm) - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]
