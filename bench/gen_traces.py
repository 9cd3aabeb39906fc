"""Generate synthetic reasoning traces as JSON Lines (deterministic for a seed).

    .venv/bin/python -m bench.gen_traces --count 100000 --out bench/out/traces-100k.jsonl

Each trace has 3–6 steps and is about 0.9 KB of JSON. Numbering starts at
`--start`, and the number is part of the prompt, so files generated with
disjoint ranges hold no duplicates of each other.

The data is shaped for the list benchmarks:

* `meta.source` is one of SOURCES, skewed (gsm8k ≈ 40 %, redteam ≈ 0.1 %);
* the word COMMON_WORD ("number") appears in about a third of the traces and
  RARE_WORD ("zephyrine") in about 1 in 10,000;
* the rest of the text is drawn from a Zipf-weighted vocabulary.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path
from typing import Any

import orjson

SOURCES = ("gsm8k", "math", "synthetic", "arc", "humaneval", "mmlu", "custom-eval", "redteam")
SOURCE_WEIGHTS = (40.0, 20.0, 15.0, 10.0, 8.0, 5.0, 1.9, 0.1)
TAGS = ("arithmetic", "algebra", "geometry", "logic", "code", "reading", "multi-step", "hard", "easy")
STEP_TYPES = ("think", "plan", "compute", "recall", "verify")
MODELS = ("gemma-2b-it", "gemma-7b-it", "qwen2.5-1.5b", "llama-3.2-3b")
COMMON_WORD = "number"
RARE_WORD = "zephyrine"
COMMON_RATE = 0.33
RARE_RATE = 0.0001

_REAL = (
    "add", "subtract", "multiply", "divide", "total", "sum", "difference", "product", "quotient",
    "value", "result", "answer", "first", "second", "third", "then", "next", "finally", "check",
    "carry", "digit", "unit", "tens", "hundreds", "remainder", "equal", "greater", "less", "each",
    "per", "apples", "oranges", "train", "speed", "distance", "time", "hour", "minute", "price",
    "cost", "discount", "percent", "ratio", "fraction", "half", "quarter", "triangle", "angle",
    "side", "length", "area", "perimeter", "circle", "radius", "square", "root", "power",
    "equation", "variable", "solve", "substitute", "simplify", "factor", "prime", "even", "odd",
    "integer", "count", "pattern", "sequence", "term", "rule", "step", "list", "sort", "array",
    "loop", "function", "return", "string", "index", "reason", "because", "therefore", "so",
    "since", "given", "known", "assume", "means", "verify", "again", "correct", "wrong",
    "recompute", "estimate", "round", "compare", "store", "read", "write", "book", "page", "word",
    "letter", "student", "teacher", "class", "school", "market", "shop", "buy", "sell", "paid",
    "change", "coins", "bills", "week", "day", "year",
)
_SYLLABLES = ("ka", "lo", "mi", "ne", "tor", "vel", "an", "is", "ur", "ben", "sar", "dim", "quo", "ral")


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    words = list(_REAL)
    seen = set(words) | {COMMON_WORD, RARE_WORD}
    while len(words) < 3000:
        w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    weights = [1.0 / (rank + 8) for rank in range(len(words))]  # Zipf-ish
    return words, list(itertools.accumulate(weights))


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words, self.cum = _vocabulary(random.Random(1234))
        self.source_cum = list(itertools.accumulate(SOURCE_WEIGHTS))

    def _text(self, lo: int, hi: int) -> str:
        words = self.rng.choices(self.words, cum_weights=self.cum, k=self.rng.randint(lo, hi))
        return " ".join(words)

    def trace(self, n: int) -> dict[str, Any]:
        rng = self.rng
        steps: list[dict[str, Any]] = [
            {"i": i, "type": rng.choice(STEP_TYPES), "content": self._text(10, 17).capitalize() + "."}
            for i in range(rng.randint(3, 6))
        ]
        if rng.random() < COMMON_RATE:
            steps[rng.randrange(len(steps))]["content"] += f" The {COMMON_WORD} is {rng.randint(1, 999)}."
        if rng.random() < RARE_RATE:
            steps[-1]["content"] += f" Like a {RARE_WORD} breeze."
        return {
            "trace_version": "1.0",
            "prompt": f"Problem {n}: {self._text(8, 14)}?",
            "steps": steps,
            "final_answer": f"The answer is {rng.randint(0, 100_000)}.",
            "meta": {
                "source": rng.choices(SOURCES, cum_weights=self.source_cum)[0],
                "tags": rng.sample(TAGS, 2),
                "model": rng.choice(MODELS),
            },
        }


def generate(path: Path, count: int, start: int = 0, seed: int = 42) -> int:
    """Write `count` traces to `path`; returns the bytes written."""
    gen = Generator(seed + start)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as f:
        for n in range(start, start + count):
            line = orjson.dumps(gen.trace(n)) + b"\n"
            f.write(line)
            written += len(line)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--start", type=int, default=0, help="number of the first trace")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not 1 <= args.count <= 10_000_000:
        parser.error("--count must be between 1 and 10,000,000")
    size = generate(args.out, args.count, args.start, args.seed)
    print(f"{args.count:,} traces, {size / args.count:.0f} bytes each on average, {size / 2**20:.1f} MiB "
          f"-> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
