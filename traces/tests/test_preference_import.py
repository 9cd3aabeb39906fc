"""The import_preferences command: good lines stored, bad ones reported as FILE:LINE: reason, strict, duplicates."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from traces.models import PreferencePair
from traces.tests.factories import pair_document

pytestmark = pytest.mark.django_db


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def run(*args: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_preferences", "--quiet-progress", *(str(a) for a in args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def failed(*args: object) -> str:
    err = io.StringIO()
    with pytest.raises(CommandError) as exc:
        call_command(
            "import_preferences", "--quiet-progress", *(str(a) for a in args), stdout=io.StringIO(), stderr=err
        )
    return err.getvalue() + str(exc.value)


def test_a_file_of_pairs_is_imported_in_order(tmp_path):
    path = write(tmp_path / "p.jsonl", [pair_document(i) for i in range(5)])
    out, _ = run(path)
    assert "5 read, 5 created, 0 duplicates, 0 bad" in out
    pairs = list(PreferencePair.objects.order_by("id"))
    assert [p.prompt for p in pairs] == [f"What is {i} + {i}?" for i in range(5)]
    assert {p.source for p in pairs} == {"import"}
    assert pairs[0].meta == {"origin": "factory"}


def test_bad_lines_are_reported_as_file_line_reason_and_good_ones_imported(tmp_path):
    path = write(
        tmp_path / "p.jsonl",
        [
            pair_document(1),
            "{not json",
            pair_document(2, rejected=pair_document(2)["chosen"]),
            "",
            {"prompt": "p", "chosen": "a"},
            pair_document(3, meta={"n": 2**70}),
            pair_document(4),
        ],
    )
    out, err = run(path)
    assert "7 read" not in out  # the blank line is no record
    assert "2 created" in out and "4 bad" in out
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:2: ")
    assert lines[1] == f"{path}:3: rejected: Must differ from chosen."
    assert lines[2] == f"{path}:5: rejected: This field is required."
    assert lines[3].startswith(f"{path}:6: meta.n: ")
    assert PreferencePair.objects.count() == 2


def test_importing_again_counts_duplicates_and_creates_nothing(tmp_path):
    path = write(tmp_path / "p.jsonl", [pair_document(1), pair_document(2), pair_document(1)])
    out, _ = run(path)
    assert "2 created, 1 duplicates" in out
    out, _ = run("--batch-size", 1, path)
    assert "0 created, 3 duplicates" in out
    assert PreferencePair.objects.count() == 2


def test_strict_mode_with_a_bad_line_stores_nothing(tmp_path):
    path = write(tmp_path / "p.jsonl", [pair_document(1), {"prompt": "x"}])
    message = failed("--strict", path)
    assert f"{path}:2: chosen: This field is required." in message
    assert "nothing stored" in message
    assert not PreferencePair.objects.exists()


def test_a_file_of_only_bad_lines_fails(tmp_path):
    path = write(tmp_path / "p.jsonl", ["[]"])
    assert "Nothing was imported" in failed(path)


def test_a_missing_file_fails_naming_it(tmp_path):
    assert "nope.jsonl" in failed(tmp_path / "nope.jsonl")


def test_the_owner_is_role_checked(tmp_path, viewer, member):
    path = write(tmp_path / "p.jsonl", [pair_document(1)])
    assert "member" in failed("--user", viewer.username, path)
    run("--user", member.username, path)
    assert PreferencePair.objects.get().created_by == member
