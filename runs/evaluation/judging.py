"""Answer extraction and judging for evaluations (pure functions, no Django)."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

JUDGE_NAME = "exact_or_numeric"
JUDGE_VERSION = "1"
DEFAULT_REL_TOLERANCE = 1e-4

_ANSWER = re.compile(r"answer\s*[:：]\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_TURN_END = ("<end_of_turn>", "<eos>", "</s>")


@dataclass(frozen=True)
class Judgement:
    correct: bool
    method: str  # "exact", "numeric" or "" when wrong


def extract_answer(output: str) -> tuple[str, str]:
    """(answer, how): the `Answer:` convention, else the last non-empty line, else the last number."""
    text = output
    for marker in _TURN_END:
        text = text.split(marker, 1)[0]
    matches = _ANSWER.findall(text)
    if matches:
        answer = matches[-1].strip().splitlines()[0].strip() if matches[-1].strip() else ""
        if answer:
            return answer, "answer_marker"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return lines[-1], "last_line"
    numbers = _NUMBER.findall(output)
    if numbers:
        return numbers[-1], "last_number"
    return "", "none"


def normalize(text: str) -> str:
    """Case-, accent-width-, space- and outer-punctuation-insensitive form for exact matching."""
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = re.sub(r"\s+", " ", text)
    text = text.strip(" .,;:!?\"'`()[]{}")
    return text


def _number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        value = float(found[-1].replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def judge(extracted: str, expected: str, rel_tolerance: float = DEFAULT_REL_TOLERANCE) -> Judgement:
    """Normalised exact match, else a numeric match within a relative tolerance.

    The numeric judge compares the last number of each side, and only when the
    expected answer has exactly one number ("120 km" vs "120"; not "3 and 4").
    """
    if not extracted:
        return Judgement(False, "")
    if normalize(extracted) == normalize(expected):
        return Judgement(True, "exact")
    if len(_NUMBER.findall(expected)) == 1:
        want, got = _number(expected), _number(extracted)
        if want is not None and got is not None and math.isclose(got, want, rel_tol=rel_tolerance, abs_tol=1e-9):
            return Judgement(True, "numeric")
    return Judgement(False, "")
