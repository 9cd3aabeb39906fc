"""The import_traces and export_traces commands: streaming, bad lines, strict, round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import CommandError, call_command

from traces import formats
from traces.models import Trace
from traces.tests.factories import make_trace, trace_document
from traces.validation import validate_trace

pytestmark = pytest.mark.django_db

DATA = Path("/work/shared/data/tunix-rt")
DEV = DATA / "dev-reasoning-v2.jsonl"
E2E = DATA / "e2e_ingest.jsonl"


def run(*args: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*(str(a) for a in args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def import_(*args: object) -> tuple[str, str]:
    return run("import_traces", "--quiet-progress", *args)


def failed_import(*args: object) -> str:
    """stderr of an import that must fail with a CommandError."""
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_traces", "--quiet-progress", *(str(a) for a in args), stdout=io.StringIO(), stderr=err
        )
    return err.getvalue()


def write(path: Path, *lines: bytes | dict[str, Any]) -> Path:
    path.write_bytes(b"".join((orjson.dumps(x) if isinstance(x, dict) else x) + b"\n" for x in lines))
    return path


def bad_lines(stderr: str) -> dict[int, str]:
    found = {}
    for line in stderr.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1].isdigit():
            found[int(parts[1])] = parts[2].strip()
    return found


needs_data = pytest.mark.skipif(not DEV.exists(), reason="shared data sets not present")


@needs_data
def test_the_predecessor_datasets_import_cleanly():
    out, err = import_(DEV, E2E)

    assert "553 read, 553 created, 0 duplicates, 0 bad" in out
    assert bad_lines(err) == {}
    assert Trace.objects.count() == 553
    assert not Trace.objects.filter(meta__isnull=True).exists()
    first = json.loads(DEV.read_text().splitlines()[0])
    stored = Trace.objects.get(content_hash=validate_trace(first).content_hash)
    assert stored.steps == sorted(first["steps"], key=lambda s: s["i"])
    assert stored.meta == first["meta"]


@needs_data
def test_importing_again_creates_nothing_and_counts_duplicates():
    import_(DEV, E2E)

    out, _ = import_(DEV, E2E)

    assert "553 read, 0 created, 553 duplicates, 0 bad" in out
    assert Trace.objects.count() == 553


@needs_data
def test_small_batches_import_the_same_rows():
    out, _ = import_(DEV, "--batch-size", 7)

    assert "550 read, 550 created" in out
    assert Trace.objects.count() == 550


def test_progress_is_reported(tmp_path):
    path = write(tmp_path / "t.jsonl", *(trace_document(n) for n in range(5)))

    _, err = run("import_traces", path, "--batch-size", 2)

    assert err.count("read,") >= 3


def test_bad_lines_are_reported_with_their_numbers_and_good_ones_imported(tmp_path):
    path = write(
        tmp_path / "mixed.jsonl",
        trace_document(1),
        trace_document(2, prompt=""),
        b"",
        b"{not json",
        trace_document(3, extra=1),
        b'["an", "array"]',
        trace_document(4),
        trace_document(1),
    )

    out, err = import_(path)

    # The blank line 3 is skipped, not counted, yet the lines after it keep their numbers.
    assert "7 read, 2 created, 1 duplicates, 4 bad" in out
    reasons = bad_lines(err)
    assert set(reasons) == {2, 4, 5, 6}
    assert reasons[2] == "prompt: May not be blank."
    assert reasons[4].startswith("Malformed JSON")
    assert reasons[5] == "extra: Unknown field."
    assert "Expected a JSON object" in reasons[6]
    assert sorted(Trace.objects.values_list("prompt", flat=True)) == ["What is 1 + 1?", "What is 4 + 4?"]
    assert f"{path}:2:" in err


def test_a_windows_file_with_a_bom_and_crlf_line_ends_imports(tmp_path):
    path = tmp_path / "windows.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(orjson.dumps(trace_document(n)) + b"\r\n" for n in range(3)))

    out, err = import_(path)

    assert "3 read, 3 created, 0 duplicates, 0 bad" in out
    assert bad_lines(err) == {}


def test_a_lone_surrogate_in_a_json_array_is_a_bad_element(tmp_path):
    text = json.dumps([trace_document(1), trace_document(2, prompt="\ud800 broken"), trace_document(3)])
    path = tmp_path / "surrogate.json"
    path.write_text(text)

    out, err = import_(path)

    assert "3 read, 2 created, 0 duplicates, 1 bad" in out
    assert list(bad_lines(err)) == [1]


def test_an_oversized_line_is_reported_and_the_next_line_still_read(tmp_path, settings):
    settings.TRACE_MAX_BYTES = 1024
    path = write(tmp_path / "big.jsonl", trace_document(1, prompt="x" * 3000), trace_document(2))

    out, err = import_(path)

    assert "TRACE_MAX_BYTES" in bad_lines(err)[1]
    assert "2 read, 1 created" in out
    assert Trace.objects.get().prompt == "What is 2 + 2?"


def test_strict_mode_with_a_bad_line_stores_nothing(tmp_path):
    path = write(tmp_path / "s.jsonl", trace_document(1), trace_document(2), trace_document(3, steps=0))

    with pytest.raises(CommandError, match="Strict import aborted, nothing stored"):
        import_(path, "--strict", "--batch-size", 1)

    assert Trace.objects.count() == 0


def test_strict_mode_fails_on_a_bad_line_in_a_later_file(tmp_path):
    good = write(tmp_path / "good.jsonl", trace_document(1))
    bad = write(tmp_path / "bad.jsonl", trace_document(2), b"{")

    with pytest.raises(CommandError):
        import_(good, bad, "--strict")

    assert Trace.objects.count() == 0


def test_strict_mode_with_good_files_imports_everything(tmp_path):
    path = write(tmp_path / "s.jsonl", trace_document(1), trace_document(2), trace_document(1))

    out, _ = import_(path, "--strict", "--batch-size", 1)

    assert "3 read, 2 created, 1 duplicates, 0 bad" in out
    assert Trace.objects.count() == 2


def test_a_file_of_only_bad_lines_fails(tmp_path):
    path = write(tmp_path / "bad.jsonl", b"{", trace_document(1, prompt=""))

    with pytest.raises(CommandError, match="Nothing was imported"):
        import_(path)

    assert Trace.objects.count() == 0


def test_a_missing_file_fails_naming_it(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        import_(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("args", [("--batch-size", "0"), ("--source", "s" * 129)])
def test_bad_options_fail(tmp_path, args):
    path = write(tmp_path / "t.jsonl", trace_document(1))

    with pytest.raises(CommandError):
        import_(path, *args)

    assert Trace.objects.count() == 0


def test_source_applies_only_to_traces_without_one(tmp_path):
    path = write(
        tmp_path / "t.jsonl",
        trace_document(1, meta={"source": "own"}),
        trace_document(2, meta={"tags": ["x"]}),
        trace_document(3, meta={"source": "  "}),
        trace_document(4, meta={}),
    )

    import_(path, "--source", "imported")

    sources = dict(Trace.objects.values_list("prompt", "source"))
    assert sources == {
        "What is 1 + 1?": "own",
        "What is 2 + 2?": "imported",
        "What is 3 + 3?": "imported",
        "What is 4 + 4?": "imported",
    }


@needs_data
def test_source_does_not_change_the_content_hash():
    import_(E2E, "--source", "e2e")

    out, _ = import_(E2E)

    assert "0 created, 3 duplicates" in out
    assert set(Trace.objects.values_list("source", flat=True)) == {"e2e"}


PRETTY_ARRAY_WITH_BAD_ELEMENT = [trace_document(1), trace_document(2, prompt=""), trace_document(3)]


@pytest.mark.parametrize("chunk", [formats.CHUNK_BYTES, 7, 1])
def test_a_pretty_printed_json_array_is_imported_with_element_line_numbers(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(formats, "CHUNK_BYTES", chunk)
    text = json.dumps(PRETTY_ARRAY_WITH_BAD_ELEMENT, indent=2, ensure_ascii=False)
    path = tmp_path / "pretty.json"
    path.write_text(text)
    second_starts = [n for n, line in enumerate(text.splitlines(), 1) if line == "  {"][1]

    out, err = import_(path)

    assert "3 read, 2 created, 0 duplicates, 1 bad" in out
    assert bad_lines(err) == {second_starts: "prompt: May not be blank."}


@pytest.mark.parametrize("chunk", [formats.CHUNK_BYTES, 7, 3])
def test_a_malformed_array_element_is_reported_on_its_own_line(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(formats, "CHUNK_BYTES", chunk)
    good = [json.dumps(trace_document(n), indent=2, ensure_ascii=False) for n in (1, 2)]
    text = "[\n" + ",\n".join(good) + ',\n{\n  "prompt": "oops",\n  "steps": [,]\n}\n]\n'
    path = tmp_path / "broken.json"
    path.write_text(text)
    broken_line = text.splitlines().index('  "steps": [,]') + 1

    out, err = import_(path)

    assert "2 created" in out
    reasons = bad_lines(err)
    assert list(reasons) == [broken_line]
    assert "Malformed JSON" in reasons[broken_line]
    assert Trace.objects.count() == 2


def test_a_json_array_spanning_many_chunks_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "CHUNK_BYTES", 7)
    docs = [trace_document(n, prompt=f"Prüfung {n}: °F → °C") for n in range(20)]
    path = tmp_path / "many.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(docs, ensure_ascii=False).encode())

    out, _ = import_(path)

    assert "20 read, 20 created" in out
    assert sorted(Trace.objects.values_list("prompt", flat=True)) == sorted(d["prompt"] for d in docs)


@pytest.mark.parametrize(
    ("text", "line", "imported"),
    [
        ('{"not": "an array"}', 1, 0),
        ("[\n" + json.dumps(trace_document(1)) + "\n", 3, 1),
        ("[\n" + json.dumps(trace_document(1)) + "\n" + json.dumps(trace_document(2)) + "]", 3, 1),
    ],
    ids=["object", "unclosed", "missing-comma"],
)
def test_a_broken_json_array_reports_where_it_broke(tmp_path, text, line, imported):
    path = tmp_path / "a.json"
    path.write_text(text)

    err = import_("--format", "json", path)[1] if imported else failed_import("--format", "json", path)

    assert list(bad_lines(err)) == [line]
    assert Trace.objects.count() == imported


def test_the_format_option_overrides_the_file_name(tmp_path):
    path = tmp_path / "traces.txt"
    path.write_text(json.dumps([trace_document(1), trace_document(2)], indent=1))

    out, _ = import_(path, "--format", "json")

    assert "2 read, 2 created" in out


def test_export_writes_every_trace_oldest_first_in_the_capture_format(tmp_path):
    traces = [make_trace(meta={"source": "s", "n": n}) for n in range(3)]
    out_path = tmp_path / "out.jsonl"

    run("export_traces", out_path)

    lines = [orjson.loads(line) for line in out_path.read_bytes().splitlines()]
    assert lines == [t.document() for t in traces]
    assert set(lines[0]) == {"trace_version", "prompt", "steps", "final_answer", "meta"}


def test_export_can_select_one_source(tmp_path):
    make_trace(meta={"source": "a"})
    b = make_trace(meta={"source": "b"})
    out_path = tmp_path / "out.jsonl"

    run("export_traces", out_path, "--source", "b")

    assert [orjson.loads(line) for line in out_path.read_bytes().splitlines()] == [b.document()]


def test_export_to_an_unwritable_path_fails(tmp_path):
    with pytest.raises(CommandError, match="Cannot write"):
        run("export_traces", tmp_path / "missing-dir" / "out.jsonl")


@needs_data
def test_export_then_import_into_an_empty_database_reproduces_every_hash(tmp_path):
    import_(DEV, E2E)
    make_trace(
        prompt="Unicode ✓ \u2028 and \"quotes\"",
        steps=[{"i": 5, "type": "t", "content": "later"}, {"i": 2, "type": "t", "content": "earlier"}],
        meta={"nested": {"b": [1, 2.5, None, True]}, "a": "ü"},
    )
    before = dict(Trace.objects.values_list("content_hash", "prompt"))
    out_path = tmp_path / "all.jsonl"
    run("export_traces", out_path)

    Trace.objects.all().delete()
    out, _ = import_(out_path)

    assert f"{len(before)} read, {len(before)} created, 0 duplicates, 0 bad" in out
    assert dict(Trace.objects.values_list("content_hash", "prompt")) == before
    assert len(before) == 554


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_a_json_array_are_bad_elements_not_silently_stored(tmp_path, constant):
    docs = [json.dumps(trace_document(n)) for n in range(3)]
    docs[1] = docs[1].replace('"meta": {', f'"meta": {{"weight": {constant}, ')
    path = tmp_path / "nan.json"
    path.write_text("[\n" + ",\n".join(docs) + "\n]\n")

    out, err = import_(path)

    assert "3 read, 2 created, 0 duplicates, 1 bad" in out
    assert list(bad_lines(err)) == [3]
    assert "meta" in bad_lines(err)[3]
    assert Trace.objects.count() == 2
