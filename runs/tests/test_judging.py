"""Answer extraction (`Answer:` convention, then fallbacks) and the exact-or-numeric judge."""

from __future__ import annotations

import pytest

from runs.evaluation.judging import JUDGE_NAME, JUDGE_VERSION, Judgement, extract_answer, judge, normalize


@pytest.mark.parametrize(
    ("output", "answer", "how"),
    [
        ("Reasoning:\n1. 15 + 27 = 42\nAnswer: 42", "42", "answer_marker"),
        ("Reasoning:\n1. think\nAnswer: 42<end_of_turn>\n<start_of_turn>user\nAnswer: 7", "42", "answer_marker"),
        ("Answer: 9<eos>Answer: 8", "9", "answer_marker"),
        ("Answer: 42</s>trailing", "42", "answer_marker"),
        ("Answer: 12 apples\nThat is all.\nMore text", "12 apples", "answer_marker"),
        ("Answer: 5\nwait, no\nAnswer: 7\n", "7", "answer_marker"),
        ("answer : paris", "paris", "answer_marker"),
        ("ANSWER：4", "4", "answer_marker"),
        ("Answer:   \nthe next line", "the next line", "answer_marker"),
        ("The sum is\n\n   42 apples  \n\n", "42 apples", "last_line"),
        ("no marker here", "no marker here", "last_line"),
        ("<end_of_turn>the model said 3 then 4", "4", "last_number"),
        ("", "", "none"),
        ("   \n\t\n", "", "none"),
        ("<end_of_turn>no digits after the turn", "", "none"),
    ],
    ids=[
        "marker",
        "marker-before-turn-end",
        "marker-before-eos",
        "marker-before-eos-s",
        "marker-first-line-only",
        "several-markers-last-wins",
        "marker-any-case-and-spacing",
        "marker-full-width-colon",
        "marker-value-on-next-line",
        "last-line",
        "single-line",
        "last-number-after-an-empty-turn",
        "empty",
        "blank",
        "nothing-in-the-turn",
    ],
)
def test_extract_answer_follows_the_answer_convention_then_falls_back(output, answer, how):
    assert extract_answer(output) == (answer, how)


@pytest.mark.parametrize(
    ("extracted", "expected"),
    [
        ("Paris", "Paris"),
        ("PARIS", "paris"),
        ("  paris.  ", "Paris"),
        ("'Paris!'", "Paris"),
        ("red,   blue,\tyellow", "Red, Blue, Yellow"),
        ("Ｐａｒｉｓ", "paris"),  # full-width letters, NFKC
        ("ﬁve", "five"),  # ligature, NFKC
        ("STRASSE", "straße"),  # casefold, not lower
        ("-5", "-5"),
    ],
)
def test_exact_match_ignores_case_spacing_outer_punctuation_and_unicode_forms(extracted, expected):
    assert judge(extracted, expected) == Judgement(True, "exact")


@pytest.mark.parametrize(
    ("extracted", "expected"),
    [
        ("120", "120 km"),
        ("120 km", "120"),
        ("It goes 120 kilometres", "120 km"),
        ("1,000", "1000"),
        ("1000", "1,000 people"),
        ("12", "$12"),
        ("5.750", "5.75"),
        ("0.30000000000000004", "0.3"),
        ("0.1 + 0.2 = 0.30000000000000004", "0.3"),
        ("1e3", "1000"),
        ("180", "180 degrees"),
        ("12.0001", "12"),  # within the 1e-4 relative tolerance
    ],
)
def test_numeric_match_compares_the_last_numbers_within_a_relative_tolerance(extracted, expected):
    assert judge(extracted, expected) == Judgement(True, "numeric")


@pytest.mark.parametrize(
    ("extracted", "expected"),
    [
        ("12.01", "12"),  # beyond the tolerance
        ("121", "120 km"),
        ("Lyon", "Paris"),
        ("3", "3 and 4"),  # several numbers expected: never numeric
        ("4", "3 and 4"),
        ("0.5", "0.5 or 50%"),
        ("50%", "0.5 or 50%"),
        ("", "0"),  # nothing extracted is never right
        ("", ""),
        ("seven", "7"),
        ("7", "seven"),
    ],
)
def test_wrong_answers_are_wrong(extracted, expected):
    assert judge(extracted, expected) == Judgement(False, "")


def test_the_tolerance_can_be_widened():
    assert not judge("12.01", "12").correct
    assert judge("12.01", "12", rel_tolerance=1e-2) == Judgement(True, "numeric")


def test_exact_wins_before_numeric():
    assert judge("0.5 or 50%", "0.5 OR 50%") == Judgement(True, "exact")


def test_normalize_strips_outer_punctuation_but_keeps_inner():
    assert normalize("  (Hello,   World!)  ") == "hello, world"
    assert normalize("e.g.") == "e.g"


def test_the_judge_is_named_and_versioned():
    assert JUDGE_NAME == "exact_or_numeric"
    assert JUDGE_VERSION == "1"
