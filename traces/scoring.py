"""Trace scoring criteria. Each returns a 0–100 score and the parts that made it."""

from __future__ import annotations

from typing import Any

BASELINE_STEP_CAP = 10
BASELINE_LENGTH_CAP = 500


def baseline_score(steps: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """The predecessor's structural score.

    Up to 50 points for the number of steps (full marks at 10 steps) plus up to
    50 for the mean step length in characters (full marks at 500).
    """
    count = len(steps)
    mean_chars = sum(len(s.get("content", "")) for s in steps) / count if count else 0.0
    step_points = 50.0 * min(count, BASELINE_STEP_CAP) / BASELINE_STEP_CAP
    length_points = 50.0 * min(mean_chars, BASELINE_LENGTH_CAP) / BASELINE_LENGTH_CAP
    score = round(step_points + length_points, 2)
    return score, {
        "step_count": count,
        "mean_step_chars": round(mean_chars, 2),
        "step_points": round(step_points, 2),
        "length_points": round(length_points, 2),
        "step_cap": BASELINE_STEP_CAP,
        "length_cap": BASELINE_LENGTH_CAP,
    }


CRITERIA = {"baseline": baseline_score}


def score_trace(steps: list[dict[str, Any]], criteria: str) -> tuple[float, dict[str, Any]]:
    try:
        scorer = CRITERIA[criteria]
    except KeyError:
        raise ValueError(f"Unknown criteria {criteria!r}; known: {', '.join(CRITERIA)}.") from None
    return scorer(steps)
