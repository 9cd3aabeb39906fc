"""Turning exported training examples into fixed-shape token batches for Tunix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runs.training.templates import as_head, as_tail, render


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
        head_ids = prompt_ids(tok, head)
        # A template whose turn ends in an EOS token (Qwen's <|im_end|>, Gemma's <end_of_turn>) is not doubled.
        ids = head_ids + _completion_ids(tok, tail, eos_ids)
        lengths.append(len(ids))
        if len(ids) > max_len:
            truncated += 1
            ids = ids[:max_len]
        if len(head_ids) >= len(ids):
            dropped += 1
            continue
        rows.append(ids)
        starts.append(len(head_ids))
    tokens = np.full((len(rows), max_len), tok.pad_id(), np.int32)
    mask = np.zeros((len(rows), max_len), np.int32)
    for i, (ids, start) in enumerate(zip(rows, starts, strict=True)):
        tokens[i, : len(ids)] = ids
        mask[i, start : len(ids)] = 1
    return Encoded(tokens, mask, lengths, truncated, dropped)


def _completion_ids(tok: Tokenizer, text: str, eos_ids: set[int]) -> list[int]:
    """A completion's ids ending in an EOS id (not doubled when the template's turn ends in one)."""
    ids = tok.encode(text)
    if not ids or ids[-1] not in eos_ids:
        ids.append(tok.eos_id())
    return ids


def prompt_ids(tok: Tokenizer, head: str) -> list[int]:
    """The same rule as Tunix's Sampler: a BOS id is prepended only when there is one (Qwen has none)."""
    bos = tok.bos_id()
    return [*([bos] if bos else []), *tok.encode(head)]


@dataclass
class EncodedPairs:
    """Preference pairs for Tunix's DPO trainer (its `TrainingInput`, tokenised here).

    Prompts left-padded to max_prompt_length (BOS, then the rendered prompt); the chosen
    and rejected completions right-padded to max_response_length, each ending in an EOS
    id: the same tokens SFT trains on and the sampler generates (Tunix's own string path
    prepends BOS to the answers and adds no EOS).
    """

    prompt_ids: np.ndarray
    chosen_ids: np.ndarray
    rejected_ids: np.ndarray
    prompts: list[str]  # the bare prompts (for samples)
    lengths: list[int]  # prompt + longer answer, before cutting
    truncated: int
    dropped: int
    pad_id: int

    @property
    def count(self) -> int:
        return int(self.prompt_ids.shape[0])

    def mask(self, ids: np.ndarray) -> np.ndarray:
        mask: np.ndarray = (ids != self.pad_id).astype(np.int32)
        return mask

    def real_tokens(self) -> float:
        """Mean tokens per pair the step really processes (prompt twice, both answers)."""
        if not self.count:
            return 0.0
        p = self.mask(self.prompt_ids).sum(axis=1)
        c = self.mask(self.chosen_ids).sum(axis=1)
        r = self.mask(self.rejected_ids).sum(axis=1)
        return float(np.mean(2 * p + c + r))


def encode_pairs(
    pairs: list[dict[str, Any]], tok: Tokenizer, max_prompt: int, max_response: int, template: str
) -> EncodedPairs:
    """Tokenise (prompt, chosen, rejected) lines; cut long prompts at the start and long answers at the end.

    A pair whose chosen and rejected answers are identical after cutting teaches nothing and is dropped.
    """
    eos_ids = set(tok.eos_ids())
    pad = tok.pad_id()
    rows: list[tuple[list[int], list[int], list[int]]] = []
    prompts: list[str] = []
    lengths: list[int] = []
    truncated = dropped = 0
    for pair in pairs:
        head, bare = as_head(template, str(pair["prompt"]))
        p = prompt_ids(tok, head)
        c = _completion_ids(tok, as_tail(template, str(pair["chosen"])), eos_ids)
        r = _completion_ids(tok, as_tail(template, str(pair["rejected"])), eos_ids)
        lengths.append(len(p) + max(len(c), len(r)))
        if len(p) > max_prompt or len(c) > max_response or len(r) > max_response:
            truncated += 1
        if len(p) > max_prompt:
            keep = max_prompt - (1 if tok.bos_id() else 0)
            p = p[:1] + p[len(p) - keep :] if tok.bos_id() else p[len(p) - keep :]
        c, r = c[:max_response], r[:max_response]
        if c == r:
            dropped += 1
            continue
        rows.append((p, c, r))
        prompts.append(bare)
    n = len(rows)
    p_ids = np.full((n, max_prompt), pad, np.int32)
    c_ids = np.full((n, max_response), pad, np.int32)
    r_ids = np.full((n, max_response), pad, np.int32)
    for i, (p, c, r) in enumerate(rows):
        p_ids[i, max_prompt - len(p) :] = p
        c_ids[i, : len(c)] = c
        r_ids[i, : len(r)] = r
    return EncodedPairs(p_ids, c_ids, r_ids, prompts, lengths, truncated, dropped, pad)


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
