"""The upload page: paste JSON (one trace or an array), load the example, upload a file."""

from __future__ import annotations

import html as htmllib
import json
import re

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from traces.models import Trace
from traces.tests.factories import trace_document
from traces.views import EXAMPLE_TRACE

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def paste(page, payload, **kwargs):
    return page.post("/traces/upload/", {"payload": payload}, **kwargs)


def upload(page, name: str, content: bytes, **data):
    return page.post("/traces/upload/file/", {"file": SimpleUploadedFile(name, content), **data})


def jsonl(*docs) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.S)
    assert match, pattern
    return match.group(1)


def counts(text: str) -> tuple[int, int, int]:
    created, duplicates, bad = (
        int(found(rf'<strong class="{name}-count">(\d+)</strong>', text))
        for name in ("created", "duplicate", "bad")
    )
    return created, duplicates, bad


def test_the_upload_page_renders_both_forms(page):
    text = page.get("/traces/upload/").content.decode()

    assert 'id="paste-form"' in text
    assert 'id="file-form"' in text
    assert 'enctype="multipart/form-data"' in text


def test_load_example_fills_the_temperature_example(page):
    text = page.get("/traces/upload/", {"example": "1"}).content.decode()

    textarea = found(r'<textarea name="payload"[^>]*>(.*?)</textarea>', text)
    example = json.loads(htmllib.unescape(textarea))
    assert example["prompt"] == "Convert 68°F to Celsius"
    assert example["final_answer"] == "20°C"
    assert [s["i"] for s in example["steps"]] == [0, 1, 2]


def test_load_example_with_htmx_returns_only_the_field(page):
    text = page.get("/traces/upload/", {"example": "1"}, headers=HTMX).content.decode()

    assert text.lstrip().startswith('<div id="paste-field">')
    assert "<html" not in text
    assert "68°F" in text


def test_the_example_itself_uploads(page):
    response = paste(page, EXAMPLE_TRACE)

    assert response.status_code == 200
    trace = Trace.objects.get()
    assert trace.source == "example"
    assert trace.tags == ["temperature"]


def test_pasting_a_valid_trace_links_to_the_new_trace(page):
    response = paste(page, json.dumps(trace_document(1)))

    assert response.status_code == 200
    trace = Trace.objects.get()
    text = response.content.decode()
    assert f'Created <a href="/traces/{trace.pk}/">trace #{trace.pk}</a>' in text


def test_pasting_a_stored_trace_links_to_the_existing_one(page):
    first = paste(page, json.dumps(trace_document(1)))
    pk = Trace.objects.get().pk

    again = paste(page, json.dumps(trace_document(1)))

    assert first.status_code == again.status_code == 200
    assert f'Already stored as <a href="/traces/{pk}/">trace #{pk}</a>' in again.content.decode()
    assert Trace.objects.count() == 1


def test_pasting_an_array_stores_each_trace(page):
    response = paste(page, json.dumps([trace_document(1), trace_document(2)]))

    assert response.status_code == 200
    assert Trace.objects.count() == 2
    for pk in Trace.objects.values_list("pk", flat=True):
        assert f'href="/traces/{pk}/"' in response.content.decode()


def test_pasting_with_htmx_returns_only_the_result(page):
    text = paste(page, json.dumps(trace_document(1)), headers=HTMX).content.decode()

    assert text.lstrip().startswith('<div id="paste-result"')
    assert "<html" not in text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (trace_document(1, prompt=""), "prompt: May not be blank."),
        (trace_document(1, oops=1), "oops: Unknown field."),
        (
            trace_document(1, steps=[{"i": -1, "type": "t", "content": "c"}]),
            "steps[0].i: Must be an integer &gt;= 0.",
        ),
    ],
)
def test_pasting_an_invalid_trace_names_the_field_and_stores_nothing(page, document, message):
    response = paste(page, json.dumps(document))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert Trace.objects.count() == 0


def test_pasting_an_array_with_one_bad_trace_stores_nothing(page):
    response = paste(page, json.dumps([trace_document(1), trace_document(2, final_answer="")]))

    assert response.status_code == 400
    assert "trace 1: final_answer: May not be blank." in response.content.decode()
    assert Trace.objects.count() == 0


@pytest.mark.parametrize("payload", ["{not json", "[]", "   "])
def test_pasting_malformed_or_empty_input_is_an_error(page, payload):
    response = paste(page, payload)

    assert response.status_code == 400
    assert "errorlist" in response.content.decode()
    assert Trace.objects.count() == 0


def test_pasting_an_invalid_trace_with_htmx_returns_the_error_partial(page):
    response = paste(page, json.dumps(trace_document(1, prompt="")), headers=HTMX)

    assert response.status_code == 400
    text = response.content.decode()
    assert text.lstrip().startswith('<div id="paste-result"')
    assert "prompt: May not be blank." in text


def test_a_jsonl_file_with_one_bad_line_reports_it_and_imports_the_rest(page):
    content = (
        jsonl(trace_document(1))
        + b'{"trace_version": "1.0", "prompt": ""}\n'
        + jsonl(trace_document(2), trace_document(1))
        + b"{broken\n"
    )

    response = upload(page, "traces.jsonl", content)

    assert response.status_code == 200
    text = response.content.decode()
    assert counts(text) == (2, 1, 2)
    assert re.search(r"<td>line 2</td><td>[^<]*prompt: May not be blank\.", text)
    assert re.search(r"<td>line 5</td><td>Malformed JSON", text)
    assert Trace.objects.count() == 2


def test_uploading_the_same_file_again_reports_duplicates(page):
    content = jsonl(trace_document(1), trace_document(2))
    upload(page, "a.jsonl", content)

    response = upload(page, "a.jsonl", content)

    assert counts(response.content.decode()) == (0, 2, 0)
    assert Trace.objects.count() == 2


def test_a_json_array_file_is_imported(page):
    content = json.dumps([trace_document(1), trace_document(2), trace_document(3)], indent=2).encode()

    response = upload(page, "traces.json", content)

    assert response.status_code == 200
    assert counts(response.content.decode()) == (3, 0, 0)
    assert Trace.objects.count() == 3


def test_the_file_source_applies_to_traces_without_one(page):
    content = jsonl(trace_document(1, meta={}), trace_document(2, meta={"source": "own"}))

    upload(page, "t.jsonl", content, source="uploaded")

    assert sorted(Trace.objects.values_list("source", flat=True)) == ["own", "uploaded"]


def test_a_file_upload_with_htmx_returns_only_the_report(page):
    response = page.post(
        "/traces/upload/file/",
        {"file": SimpleUploadedFile("t.jsonl", jsonl(trace_document(1)))},
        headers=HTMX,
    )

    text = response.content.decode()
    assert text.lstrip().startswith('<div id="file-result"')
    assert counts(text) == (1, 0, 0)


def test_a_file_with_the_wrong_extension_is_refused(page):
    response = upload(page, "traces.txt", jsonl(trace_document(1)))

    assert response.status_code == 400
    assert "Choose a .jsonl or .json file." in response.content.decode()
    assert Trace.objects.count() == 0


def test_a_file_over_the_upload_limit_is_refused(page, settings):
    settings.TRACE_UPLOAD_MAX_BYTES = 1024

    response = upload(page, "big.jsonl", jsonl(*(trace_document(n) for n in range(20))))

    assert response.status_code == 400
    assert "larger than 1,024 bytes" in response.content.decode()
    assert Trace.objects.count() == 0


def test_uploading_without_a_file_is_an_error(page):
    response = page.post("/traces/upload/file/", {})

    assert response.status_code == 400
    assert "errorlist" in response.content.decode()


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_a_refused_file_is_named(page, headers):
    # The browser cannot be sent the file back (and, without htmx, the form comes back empty).
    response = page.post(
        "/traces/upload/file/", {"file": SimpleUploadedFile("notes.txt", b"x\n")}, headers=headers
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "<strong>Not imported: notes.txt</strong>" in text
    assert "Choose a .jsonl or .json file." in text
